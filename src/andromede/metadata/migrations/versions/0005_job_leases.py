"""Job leases: which gateway process runs each background job.

Revision ID: 0005
Revises: 0004

A new table, nothing existing changes. Before this revision one process per data dir ran every
job under a ``flock``; from it, each job runs under its own lease in the database, so that
gateways on different hosts share the jobs (``core/leases.py``).

A frozen snapshot, like 0001 to 0004: column types are spelled out, ``schema.py`` is not
imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    time = sa.DateTime(timezone=True)
    op.create_table(
        "job_leases",
        sa.Column(
            "job", sa.Text().with_variant(sa.Text(collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired", time, nullable=False),
        sa.Column("expires", time, nullable=False),
        sa.PrimaryKeyConstraint("job", name="pk_job_leases"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
