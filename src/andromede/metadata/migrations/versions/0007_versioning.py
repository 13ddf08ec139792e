"""Versioning: a bucket's versioning state, delete markers, and the noncurrent versions.

Revision ID: 0007
Revises: 0006

``objects`` keeps exactly one row per key, the current version, so that the hot paths (GET,
HEAD, listing) read what they read before. It gains:

- ``delete_marker``: the current version is a delete marker (GET answers 404, listings skip it);
- ``null_version``: the version's S3 id is ``null`` (written while versioning was never enabled
  or was suspended); every row written before this revision is one;
- ``seq``: the version's place among its key's versions (the next one gets ``seq + 1``).

``object_versions`` holds the noncurrent versions, with the same columns plus
``noncurrent_since`` (when a newer version replaced it, for lifecycle rules). A key has
noncurrent versions only while it has a current row (deleting the current version promotes the
newest noncurrent one), so their blobs are indexed in ``object_blobs`` under the same
(bucket, key), and every "is this blob live" question sees them without change.

``buckets.versioning``: NULL (never enabled), ``Enabled`` or ``Suspended``.

Code at 0006 does not know delete markers: writing over one it would leave the flag set and
hide the object. This revision raises ``schema_compat`` to itself: gateways of the previous
release refuse to start on it (those already running must be upgraded before any bucket turns
versioning on; ``docs/deploy.md``).

A frozen snapshot: column types are spelled out, ``schema.py`` is not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("buckets", sa.Column("versioning", sa.Text(), nullable=True))
    false, true = sa.false(), sa.true()
    op.add_column(
        "objects", sa.Column("delete_marker", sa.Boolean(), nullable=False, server_default=false)
    )
    op.add_column(
        "objects", sa.Column("null_version", sa.Boolean(), nullable=False, server_default=true)
    )
    op.add_column("objects", sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "object_versions",
        sa.Column("bucket", NAME, nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("version_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("last_modified", TIME, nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("system_meta", sa.Text(), nullable=False),
        sa.Column("user_meta", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("storage_class", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("delete_marker", sa.Boolean(), nullable=False),
        sa.Column("null_version", sa.Boolean(), nullable=False),
        sa.Column("noncurrent_since", TIME, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key", "seq", name="pk_object_versions"),
        sa.ForeignKeyConstraint(
            ["bucket", "key"],
            ["objects.bucket", "objects.key"],
            name="fk_object_versions_bucket_key_objects",
        ),
        sa.UniqueConstraint("bucket", "key", "version_id", name="uq_object_versions_version"),
    )
    op.execute("UPDATE schema_compat SET oldest_code_revision = '0007' WHERE id = 1")


def downgrade() -> None:
    op.execute("UPDATE schema_compat SET oldest_code_revision = '0005' WHERE id = 1")
    op.drop_table("object_versions")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("seq")
        batch.drop_column("null_version")
        batch.drop_column("delete_marker")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("versioning")
