"""Placement: sites, regions, the repair queue, job state; blob-id indexes for the sweeper.

Revision ID: 0003
Revises: 0002

Nothing existing changes meaning: a blob's ``site`` column may now hold a layout text
(``r3:a,b,c``, ``ec4+2:...``) as well as a plain site name, and a plain name still means one
whole copy on that site. Buckets keep their ``location``; an empty one is the default region.

A frozen snapshot, like 0001 and 0002: column types are spelled out, ``schema.py`` is not
imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_BLOB_ID_INDEXES = (
    ("ix_object_blobs_blob_id", "object_blobs"),
    ("ix_parts_blob_id", "parts"),
    ("ix_garbage_blob_id", "garbage"),
)


def _name() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("name", _name(), nullable=False),
        sa.Column("jurisdiction", sa.Text(), nullable=False),
        sa.Column("failure_domain", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_sites"),
        sa.UniqueConstraint("path", name="uq_sites_path"),
    )
    op.create_table(
        "regions",
        sa.Column("name", _name(), nullable=False),
        sa.Column("jurisdictions", sa.Text(), nullable=False),
        sa.Column("redundancy", sa.Text(), nullable=False),
        sa.Column("min_failure_domains", sa.Integer(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_regions"),
    )
    op.create_table(
        "repairs",
        sa.Column("site", _name(), nullable=False),
        sa.Column("blob_id", _name(), nullable=False),
        sa.Column("queued", _time(), nullable=False),
        sa.PrimaryKeyConstraint("site", "blob_id", name="pk_repairs"),
    )
    op.create_table(
        "job_state",
        sa.Column("name", _name(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_job_state"),
    )
    for index, table in _BLOB_ID_INDEXES:
        op.create_index(index, table, ["blob_id"])


def downgrade() -> None:
    for index, table in _BLOB_ID_INDEXES:
        op.drop_index(index, table_name=table)
    for table in ("job_state", "repairs", "regions", "sites"):
        op.drop_table(table)
