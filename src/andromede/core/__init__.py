"""Domain types and rules with no I/O: nothing here reads the clock, the disk or the network."""
