"""Bucket tagging: a bucket's tag set.

Revision ID: 0004
Revises: 0003

One nullable JSON text column on ``buckets``, like its ``encryption``: rows written before this
revision stay valid as they are, NULL reading as "no tag set" (GetBucketTagging answers
NoSuchTagSet). The tags live in the bucket's row, so deleting the bucket deletes them.

A frozen snapshot, like 0001 to 0003: column types are spelled out, ``schema.py`` is not
imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("buckets", sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column, so Alembic rebuilds the table.
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("tags")
