"""Encryption at rest: bucket defaults, upload and part sealing, key-encryption keys.

Revision ID: 0002
Revises: 0001

Every new column is nullable, so rows written before this revision stay valid as they are:
NULL reads as "no default encryption" for a bucket, "plaintext" for an upload or a part. An
object's encryption lives inside its manifest JSON (format 2), so ``objects`` is unchanged.

A frozen snapshot, like 0001: column types are spelled out, ``schema.py`` is not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# (table, column) of the JSON text columns added to existing tables.
_NEW_COLUMNS = (("buckets", "encryption"), ("uploads", "encryption"), ("parts", "sealing"))


def _name() -> sa.types.TypeEngine[str]:
    # Byte-order comparison: COLLATE "C" on PostgreSQL; SQLite's default BINARY already is.
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    for table, column in _NEW_COLUMNS:
        op.add_column(table, sa.Column(column, sa.Text(), nullable=True))
    op.create_table(
        "kms_keys",
        sa.Column("key_id", _name(), nullable=False),
        sa.Column("tenant", _name(), nullable=False),
        sa.Column("alias", _name(), nullable=True),
        sa.Column("manager", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("deletion_date", _time(), nullable=True),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("rewrap", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_kms_keys"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_kms_keys_tenant_tenants"),
        # NULL aliases are distinct on both backends: a tenant may hold many unaliased keys.
        sa.UniqueConstraint("tenant", "alias", name="uq_kms_keys_tenant_alias"),
    )
    op.create_index("ix_kms_keys_listing", "kms_keys", ["tenant", "created", "key_id"])


def downgrade() -> None:
    op.drop_index("ix_kms_keys_listing", table_name="kms_keys")
    op.drop_table("kms_keys")
    for table, column in reversed(_NEW_COLUMNS):
        # Batch mode: SQLite before 3.35 cannot drop a column, so Alembic rebuilds the table.
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
