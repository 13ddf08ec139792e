"""The audit trail: hash-chained, signed segment files (see docs/audit.md)."""
