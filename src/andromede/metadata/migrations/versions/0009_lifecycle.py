"""Lifecycle: a bucket's lifecycle configuration.

Revision ID: 0009
Revises: 0008

``buckets.lifecycle``: NULL (none) or its rules as JSON (``metadata/lifecycle_records.py``).
A nullable column: code at 0008 runs on this schema (it does not apply the rules), so
``schema_compat`` stays where it is.

A frozen snapshot: column types are spelled out, ``schema.py`` is not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("buckets", sa.Column("lifecycle", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("lifecycle")
