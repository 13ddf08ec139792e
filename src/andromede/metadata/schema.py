"""Tables of the metadata store, in SQLAlchemy Core.

Queries are written against these tables; the Alembic migrations (``migrations/``), not
``MetaData.create_all``, create them, and a contract test checks that both agree.

Two storage rules hold on every backend:

* names and keys compare in UTF-8 byte order. SQLite's default ``BINARY`` collation already
  does; on PostgreSQL the columns carry ``COLLATE "C"`` so the database locale never reorders
  a listing (``en_US`` would sort ``a-b`` after ``ab``, ``A`` after ``a``).
* timestamps are UTC, millisecond precision, and come back timezone-aware.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def name_type() -> TypeEngine[str]:
    """Text that sorts in byte order: ``COLLATE "C"`` on PostgreSQL, SQLite's BINARY elsewhere."""
    return Text().with_variant(Text(collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC timestamp truncated to milliseconds.

    PostgreSQL stores ``timestamptz``; SQLite stores the naive UTC wall time as ISO text, which
    sorts chronologically. Naive datetimes are refused: their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        value = to_millis(value.astimezone(dt.UTC))
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def to_millis(value: dt.datetime) -> dt.datetime:
    """Truncate to the millisecond, the precision the store keeps."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

tenants = Table(
    "tenants",
    metadata,
    Column("name", name_type(), primary_key=True),
    Column("created", UtcDateTime(), nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", name_type(), primary_key=True),
    # Stored as given for now; issue 3 seals secrets under the keystore's master key.
    Column("secret_key", Text(), nullable=False),
    Column("tenant", name_type(), ForeignKey("tenants.name"), nullable=False, index=True),
    Column("created", UtcDateTime(), nullable=False),
    Column("is_operator", Boolean(), nullable=False),
    Column("description", Text(), nullable=False),
)

buckets = Table(
    "buckets",
    metadata,
    Column("name", name_type(), primary_key=True),
    Column("tenant", name_type(), ForeignKey("tenants.name"), nullable=False),
    Column("created", UtcDateTime(), nullable=False),
    Column("location", Text(), nullable=False),
    Column("encryption", Text(), nullable=True),  # BucketEncryption JSON; NULL: none set
    Column("tags", Text(), nullable=True),  # tag set JSON (revision 0004); NULL: none set
    # NULL: never enabled; "Enabled" or "Suspended" (revision 0007)
    Column("versioning", Text(), nullable=True),
    # NULL: object lock never enabled; JSON of its default retention (revision 0008)
    Column("object_lock", Text(), nullable=True),
    # NULL: no lifecycle configuration; its rules as JSON (revision 0009)
    Column("lifecycle", Text(), nullable=True),
    Index("ix_buckets_tenant_name", "tenant", "name"),
)


# The current version of each key. JSON columns hold ``json.dumps`` text (not a JSON type) so
# both backends store byte-identical values.
def _version_columns() -> list[Column[object]]:
    """What a version holds, current (``objects``) or not (``object_versions``)."""
    return [
        Column("version_id", Text(), nullable=False),
        Column("size", BigInteger(), nullable=False),
        Column("etag", Text(), nullable=False),
        Column("last_modified", UtcDateTime(), nullable=False),
        Column("content_type", Text(), nullable=False),
        Column("system_meta", Text(), nullable=False),
        Column("user_meta", Text(), nullable=False),
        Column("tags", Text(), nullable=False),
        Column("checksum", Text(), nullable=True),
        Column("storage_class", Text(), nullable=False),
        Column("owner", Text(), nullable=False),
        Column("manifest", Text(), nullable=False),
        *_lock_columns(),
    ]


def _lock_columns() -> list[Column[object]]:
    """A version's object lock (revision 0008): retention mode and date, legal hold."""
    return [
        Column("lock_mode", Text(), nullable=True),
        Column("lock_until", UtcDateTime(), nullable=True),
        Column("legal_hold", Boolean(), nullable=False, server_default=false()),
    ]


# One row per key: its current version (revision 0007: possibly a delete marker).
objects = Table(
    "objects",
    metadata,
    Column("bucket", name_type(), ForeignKey("buckets.name"), nullable=False),
    Column("key", name_type(), nullable=False),
    *_version_columns(),
    Column("delete_marker", Boolean(), nullable=False, server_default=false()),
    Column("null_version", Boolean(), nullable=False, server_default=true()),
    Column("seq", BigInteger(), nullable=False, server_default="0"),
    PrimaryKeyConstraint("bucket", "key"),
)

# The noncurrent versions of keys that have a current row (revision 0007).
object_versions = Table(
    "object_versions",
    metadata,
    Column("bucket", name_type(), nullable=False),
    Column("key", name_type(), nullable=False),
    Column("seq", BigInteger(), nullable=False),
    *_version_columns(),
    Column("delete_marker", Boolean(), nullable=False),
    Column("null_version", Boolean(), nullable=False),
    Column("noncurrent_since", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("bucket", "key", "seq"),
    ForeignKeyConstraint(["bucket", "key"], ["objects.bucket", "objects.key"]),
    UniqueConstraint("bucket", "key", "version_id", name="uq_object_versions_version"),
)

# Which blobs the current versions' manifests name: kept in the same transactions as
# ``objects`` so the sweeper can ask "is this blob referenced?" through an index instead of
# parsing every manifest.
object_blobs = Table(
    "object_blobs",
    metadata,
    Column("site", name_type(), nullable=False),
    Column("blob_id", name_type(), nullable=False),
    Column("bucket", name_type(), nullable=False),
    Column("key", name_type(), nullable=False),
    PrimaryKeyConstraint("site", "blob_id", "bucket", "key"),
    ForeignKeyConstraint(["bucket", "key"], ["objects.bucket", "objects.key"]),
    Index("ix_object_blobs_bucket_key", "bucket", "key"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("upload_id", name_type(), primary_key=True),
    Column("bucket", name_type(), ForeignKey("buckets.name"), nullable=False),
    Column("key", name_type(), nullable=False),
    Column("initiated", UtcDateTime(), nullable=False),
    Column("owner", Text(), nullable=False),
    Column("content_type", Text(), nullable=False),
    Column("system_meta", Text(), nullable=False),
    Column("user_meta", Text(), nullable=False),
    Column("tags", Text(), nullable=False),
    Column("checksum_algorithm", Text(), nullable=True),
    Column("checksum_type", Text(), nullable=True),
    Column("storage_class", Text(), nullable=False),
    Column("encryption", Text(), nullable=True),  # ObjectEncryption JSON
    *_lock_columns(),
    Index("ix_uploads_listing", "bucket", "key", "initiated", "upload_id"),
)

parts = Table(
    "parts",
    metadata,
    Column("upload_id", name_type(), ForeignKey("uploads.upload_id"), nullable=False),
    Column("part_number", Integer(), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("etag", Text(), nullable=False),
    Column("last_modified", UtcDateTime(), nullable=False),
    Column("site", name_type(), nullable=False),
    Column("blob_id", name_type(), nullable=False),
    Column("checksum", Text(), nullable=True),
    Column("sealing", Text(), nullable=True),  # Sealing JSON; NULL: stored in plaintext
    PrimaryKeyConstraint("upload_id", "part_number"),
    Index("ix_parts_site_blob_id", "site", "blob_id"),
)

# Blobs no longer referenced, deleted by the sweeper once ``due`` has passed. The grace period
# lets in-flight reads of a replaced version finish.
garbage = Table(
    "garbage",
    metadata,
    Column("site", name_type(), nullable=False),
    Column("blob_id", name_type(), nullable=False),
    Column("due", UtcDateTime(), nullable=False, index=True),
    PrimaryKeyConstraint("site", "blob_id"),
)

# Key-encryption keys' life cycle; their material stays in the key manager (``manager``).
# NULL aliases never collide: both backends treat NULLs as distinct in a unique constraint.
kms_keys = Table(
    "kms_keys",
    metadata,
    Column("key_id", name_type(), primary_key=True),
    Column("tenant", name_type(), ForeignKey("tenants.name"), nullable=False),
    Column("alias", name_type(), nullable=True),
    Column("manager", Text(), nullable=False),
    Column("state", Text(), nullable=False),
    Column("created", UtcDateTime(), nullable=False),
    Column("description", Text(), nullable=False),
    Column("deletion_date", UtcDateTime(), nullable=True),
    Column("versions", Text(), nullable=False),  # JSON list, see codec.kms_key_values
    Column("rewrap", Text(), nullable=True),  # RewrapProgress JSON
    UniqueConstraint("tenant", "alias"),
    Index("ix_kms_keys_listing", "tenant", "created", "key_id"),
)

# --- placement (revision 0003) -------------------------------------------------------------
# Sites data can live on, as the operator registered them. ``progress``: the drain job's
# progress (JSON) while the site is draining.
sites = Table(
    "sites",
    metadata,
    Column("name", name_type(), primary_key=True),
    Column("jurisdiction", Text(), nullable=False),
    Column("failure_domain", Text(), nullable=False),
    Column("provider", Text(), nullable=False),
    Column("path", Text(), nullable=False, unique=True),
    Column("state", Text(), nullable=False),
    Column("created", UtcDateTime(), nullable=False),
    Column("progress", Text(), nullable=True),
)

# Residency policies; a bucket's ``location`` names one.
regions = Table(
    "regions",
    metadata,
    Column("name", name_type(), primary_key=True),
    Column("jurisdictions", Text(), nullable=False),  # comma-separated, sorted; "*": any
    Column("redundancy", Text(), nullable=False),  # replicas:N | ec:K+M
    Column("min_failure_domains", Integer(), nullable=False),
    Column("created", UtcDateTime(), nullable=False),
)

# Blobs a read found degraded (a shard missing or corrupt), for the repair job.
repairs = Table(
    "repairs",
    metadata,
    Column("site", name_type(), nullable=False),
    Column("blob_id", name_type(), nullable=False),
    Column("queued", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("site", "blob_id"),
)

# Small named JSON documents of the background jobs (scrub and repair progress), readable by
# every gateway.
job_state = Table(
    "job_state",
    metadata,
    Column("name", name_type(), primary_key=True),
    Column("value", Text(), nullable=False),
)

# Who runs each background job (core/leases.py): one holder at a time, fenced by the epoch.
job_leases = Table(
    "job_leases",
    metadata,
    Column("job", name_type(), primary_key=True),
    Column("holder", Text(), nullable=False),
    Column("epoch", BigInteger(), nullable=False),
    Column("acquired", UtcDateTime(), nullable=False),
    Column("expires", UtcDateTime(), nullable=False),
)

# The oldest code revision that still runs on this schema (migration 0006): a gateway of an
# older release refuses to start on a schema a newer one migrated unless it is at least that.
schema_compat = Table(
    "schema_compat",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("oldest_code_revision", Text(), nullable=False),
    CheckConstraint("id = 1", name="ck_schema_compat_one_row"),
)

# A shard file on a site is named by its blob id alone: the sweeper asks which layouts name a
# blob id.
Index("ix_object_blobs_blob_id", object_blobs.c.blob_id)
Index("ix_parts_blob_id", parts.c.blob_id)
Index("ix_garbage_blob_id", garbage.c.blob_id)
