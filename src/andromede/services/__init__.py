"""Use cases: one function per operation, the only place that orchestrates ports."""
