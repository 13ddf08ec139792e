"""The first schema: tenants, access keys, buckets, objects, uploads, parts, blob garbage.

Revision ID: 0001
Revises:

A migration is a frozen snapshot: it spells its column types out instead of importing
``andromede.metadata.schema``, which will keep changing after this file must not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _name() -> sa.types.TypeEngine[str]:
    # Byte-order comparison: COLLATE "C" on PostgreSQL; SQLite's default BINARY already is.
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", _name(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tenants"),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", _name(), nullable=False),
        sa.Column("secret_key", sa.Text(), nullable=False),
        sa.Column("tenant", _name(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_access_keys_tenant_tenants"),
    )
    op.create_index("ix_access_keys_tenant", "access_keys", ["tenant"])
    op.create_table(
        "buckets",
        sa.Column("name", _name(), nullable=False),
        sa.Column("tenant", _name(), nullable=False),
        sa.Column("created", _time(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_buckets"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_buckets_tenant_tenants"),
    )
    op.create_index("ix_buckets_tenant_name", "buckets", ["tenant", "name"])
    op.create_table(
        "objects",
        sa.Column("bucket", _name(), nullable=False),
        sa.Column("key", _name(), nullable=False),
        sa.Column("version_id", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("last_modified", _time(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("system_meta", sa.Text(), nullable=False),
        sa.Column("user_meta", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("storage_class", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key", name="pk_objects"),
        sa.ForeignKeyConstraint(["bucket"], ["buckets.name"], name="fk_objects_bucket_buckets"),
    )
    op.create_table(
        "object_blobs",
        sa.Column("site", _name(), nullable=False),
        sa.Column("blob_id", _name(), nullable=False),
        sa.Column("bucket", _name(), nullable=False),
        sa.Column("key", _name(), nullable=False),
        sa.PrimaryKeyConstraint("site", "blob_id", "bucket", "key", name="pk_object_blobs"),
        sa.ForeignKeyConstraint(
            ["bucket", "key"],
            ["objects.bucket", "objects.key"],
            name="fk_object_blobs_bucket_key_objects",
        ),
    )
    op.create_index("ix_object_blobs_bucket_key", "object_blobs", ["bucket", "key"])
    op.create_table(
        "uploads",
        sa.Column("upload_id", _name(), nullable=False),
        sa.Column("bucket", _name(), nullable=False),
        sa.Column("key", _name(), nullable=False),
        sa.Column("initiated", _time(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("system_meta", sa.Text(), nullable=False),
        sa.Column("user_meta", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("checksum_algorithm", sa.Text(), nullable=True),
        sa.Column("checksum_type", sa.Text(), nullable=True),
        sa.Column("storage_class", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name="pk_uploads"),
        sa.ForeignKeyConstraint(["bucket"], ["buckets.name"], name="fk_uploads_bucket_buckets"),
    )
    op.create_index("ix_uploads_listing", "uploads", ["bucket", "key", "initiated", "upload_id"])
    op.create_table(
        "parts",
        sa.Column("upload_id", _name(), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("last_modified", _time(), nullable=False),
        sa.Column("site", _name(), nullable=False),
        sa.Column("blob_id", _name(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_parts"),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["uploads.upload_id"], name="fk_parts_upload_id_uploads"
        ),
    )
    op.create_index("ix_parts_site_blob_id", "parts", ["site", "blob_id"])
    op.create_table(
        "garbage",
        sa.Column("site", _name(), nullable=False),
        sa.Column("blob_id", _name(), nullable=False),
        sa.Column("due", _time(), nullable=False),
        sa.PrimaryKeyConstraint("site", "blob_id", name="pk_garbage"),
    )
    op.create_index("ix_garbage_due", "garbage", ["due"])


def downgrade() -> None:
    for index, table in (
        ("ix_garbage_due", "garbage"),
        ("ix_parts_site_blob_id", "parts"),
        ("ix_uploads_listing", "uploads"),
        ("ix_object_blobs_bucket_key", "object_blobs"),
        ("ix_buckets_tenant_name", "buckets"),
        ("ix_access_keys_tenant", "access_keys"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "garbage",
        "parts",
        "uploads",
        "object_blobs",
        "objects",
        "buckets",
        "access_keys",
        "tenants",
    ):
        op.drop_table(table)
