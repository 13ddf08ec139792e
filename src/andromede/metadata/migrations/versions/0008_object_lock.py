"""Object lock: a bucket's lock configuration, and each version's retention and legal hold.

Revision ID: 0008
Revises: 0007

- ``buckets.object_lock``: NULL (never enabled) or a JSON object, ``{}`` when enabled without
  a default retention, ``{"m": mode, "d": days}`` or ``{"m": mode, "y": years}`` with one.
- ``objects`` and ``object_versions``: ``lock_mode`` (NULL, ``GOVERNANCE``, ``COMPLIANCE``),
  ``lock_until`` (the retain-until date, UTC) and ``legal_hold``.
- ``uploads``: the same three, for what CreateMultipartUpload asked (the completed version
  gets them).

Nullable columns and defaults: rows written before read as unlocked, and code at 0007 runs on
this schema (it cannot enable object lock, and ignores the columns), so ``schema_compat``
stays at 0007.

A frozen snapshot: column types are spelled out, ``schema.py`` is not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("objects", "object_versions", "uploads")


def upgrade() -> None:
    op.add_column("buckets", sa.Column("object_lock", sa.Text(), nullable=True))
    for table in TABLES:
        op.add_column(table, sa.Column("lock_mode", sa.Text(), nullable=True))
        op.add_column(table, sa.Column("lock_until", sa.DateTime(timezone=True), nullable=True))
        op.add_column(
            table,
            sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("legal_hold")
            batch.drop_column("lock_until")
            batch.drop_column("lock_mode")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("object_lock")
