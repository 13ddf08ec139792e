"""Schema compatibility: the oldest release whose code still runs on this schema.

Revision ID: 0006
Revises: 0005

Gateways are upgraded one at a time, so for a while a gateway of the previous release runs on
a schema a newer one migrated. That works only if every migration leaves the schema usable by
the previous release (new tables and nullable columns; a drop or a rename waits until no
release that needs it remains). ``schema_compat`` says it in the database: the oldest code
revision that still runs on it. A gateway whose packaged migrations end before the stored
revision starts if it knows ``oldest_code_revision`` (its code is at least that new), and
refuses with a clear error otherwise (``metadata/migrate.py``). A migration that breaks the
previous release's code raises the row to its own revision.

This revision only adds the table: code at 0005 runs on it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    table = op.create_table(
        "schema_compat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("oldest_code_revision", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schema_compat"),
        sa.CheckConstraint("id = 1", name="ck_schema_compat_one_row"),
    )
    op.bulk_insert(table, [{"id": 1, "oldest_code_revision": "0005"}])


def downgrade() -> None:
    op.drop_table("schema_compat")
