"""A data dir seen from outside, as someone holding the disks, the database and the master key
would see it: the sealed blobs the database describes, their wrapped DEKs, the KEKs that the
built-in keystore's files unseal to, blobs opened with the DEKs recovered, and a byte scan of
every file. The database is only ever opened read-only.

The built-in keystore's formats are re-implemented here from its module docstring
(``andromede.kms.builtin``) rather than called, so that an attacker's procedure does not lean
on the code it attacks; :func:`keystore_unwrap` goes through the keystore itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from andromede.cli.client import AdminClient
from andromede.core import envelope
from andromede.core.envelope import context_digest, dek_aad
from andromede.crypto.envelope import AesGcmEnvelope
from andromede.dataplane.local import HEADER_SIZE as SITE_HEADER_SIZE
from andromede.kms.builtin import BuiltinKeystore
from support.server import Server

SSE_C_KEY_ID = "sse-c"  # what an SSE-C DEK's associated data names as its KEK
_KEK_HEADER = b"AKEK\x01"
_KEK_FILE_LEN = len(_KEK_HEADER) + 12 + 32 + 16
_WRAP_VERSION = b"\x01"


# --- the database ---------------------------------------------------------------------------
def query(data_dir: Path, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    """Rows of a read-only query on ``metadata.db``."""
    conn = sqlite3.connect(f"file:{data_dir / 'metadata.db'}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, tuple(params)))
    finally:
        conn.close()


@dataclass(frozen=True)
class SealedBlob:
    """One blob as the database describes it: an object's segment, or an upload's part."""

    tenant: str
    bucket: str
    key: str
    site: str
    blob_id: str
    size: int  # plaintext bytes
    offset: int  # where the blob's bytes start in the object (0 for an upload's part)
    sealing: dict[str, Any] | None  # the manifest's ``z``; None: stored in plaintext
    upload_id: str | None = None  # set for a part of an upload not completed
    part_number: int | None = None

    @property
    def key_id(self) -> str | None:
        """The KEK's id (None for SSE-C or plaintext)."""
        return None if self.sealing is None else self.sealing.get("k")

    @property
    def version(self) -> int | None:
        """The KEK version that wraps the DEK."""
        return None if self.sealing is None or "kv" not in self.sealing else int(self.sealing["kv"])

    @property
    def context(self) -> str:
        """The blob context bound into the chunks and the wrapped DEK."""
        assert self.sealing is not None
        return str(self.sealing["ctx"])

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes per chunk."""
        assert self.sealing is not None
        return int(self.sealing["cs"])

    @property
    def wrapped(self) -> bytes:
        """The wrapped DEK."""
        assert self.sealing is not None
        return base64.b64decode(self.sealing["w"])

    def aad(self, key_id: str | None = None, version: int | None = None) -> bytes:
        """What the wrapped DEK is bound to (by default the KEK and version the manifest names;
        SSE-C: the customer's key, version 0)."""
        if key_id is None:
            key_id = self.key_id or SSE_C_KEY_ID
            version = self.version or 0
        return dek_aad(self.tenant, key_id, version or 0, self.context)


def sealed_blobs(data_dir: Path) -> list[SealedBlob]:
    """Every blob of every object version (current or not), then every part of uploads in
    progress."""
    found: list[SealedBlob] = []
    rows = query(
        data_dir,
        "SELECT o.bucket, o.key, o.manifest, b.tenant FROM objects o "
        "JOIN buckets b ON b.name = o.bucket "
        "UNION ALL SELECT v.bucket, v.key, v.manifest, b.tenant FROM object_versions v "
        "JOIN buckets b ON b.name = v.bucket",
    )
    for row in rows:
        offset = 0
        for segment in json.loads(row["manifest"])["segments"]:
            found.append(
                SealedBlob(
                    row["tenant"],
                    row["bucket"],
                    row["key"],
                    segment["s"],
                    segment["b"],
                    int(segment["n"]),
                    offset,
                    segment.get("z"),
                    part_number=segment.get("p"),
                )
            )
            offset += int(segment["n"])
    parts = query(
        data_dir,
        "SELECT p.upload_id, p.part_number, p.size, p.site, p.blob_id, p.sealing, u.bucket, "
        "u.key, b.tenant FROM parts p JOIN uploads u ON u.upload_id = p.upload_id "
        "JOIN buckets b ON b.name = u.bucket",
    )
    for row in parts:
        found.append(
            SealedBlob(
                row["tenant"],
                row["bucket"],
                row["key"],
                row["site"],
                row["blob_id"],
                int(row["size"]),
                0,
                None if row["sealing"] is None else json.loads(row["sealing"]),
                row["upload_id"],
                row["part_number"],
            )
        )
    return found


def blobs_of(data_dir: Path, bucket: str, key: str) -> list[SealedBlob]:
    """The blobs of one current object, in order."""
    return [
        b
        for b in sealed_blobs(data_dir)
        if (b.bucket, b.key) == (bucket, key) and b.upload_id is None
    ]


@dataclass(frozen=True)
class KeyRow:
    """A ``kms_keys`` row: the key's tenant, manager, state and version handles."""

    key_id: str
    tenant: str
    manager: str
    state: str
    handles: dict[int, str]  # version number -> key manager handle


def kms_keys(data_dir: Path) -> dict[str, KeyRow]:
    """Every key the database knows, by id."""
    out = {}
    for row in query(data_dir, "SELECT key_id, tenant, manager, state, versions FROM kms_keys"):
        handles = {int(v["n"]): str(v["h"]) for v in json.loads(row["versions"])}
        out[row["key_id"]] = KeyRow(
            row["key_id"], row["tenant"], row["manager"], row["state"], handles
        )
    return out


# --- files ------------------------------------------------------------------------------------
def blob_file(data_dir: Path, blob: SealedBlob) -> Path:
    """Where a blob of the local site lives."""
    assert blob.site == "local", blob.site
    return data_dir / "sites" / "local" / "blobs" / blob.blob_id[:2] / blob.blob_id


def chunk_offset(index: int, chunk_size: int = envelope.DEFAULT_CHUNK_SIZE) -> int:
    """File offset of sealed chunk ``index`` in a local blob file (site header, seal header,
    then chunks of ``chunk_size`` + 16 bytes)."""
    return SITE_HEADER_SIZE + envelope.HEADER_SIZE + index * (chunk_size + envelope.TAG_SIZE)


def file_hashes(paths: Iterable[Path]) -> dict[Path, str]:
    """SHA-256 of each file."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def every_file(*roots: Path) -> list[Path]:
    """Every regular file under each root (a root that is a file counts as itself); sockets
    and other special files are left out."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for directory, _, names in os.walk(root):
            found.extend(p for p in (Path(directory) / n for n in names) if p.is_file())
    return sorted(found)


def scan(roots: Iterable[Path], needles: Mapping[str, bytes]) -> dict[str, list[str]]:
    """Which files hold which needle: ``{needle name: [file, ...]}`` for needles found.

    Files that vanish while being scanned (a running server's temporary files) are skipped.
    """
    hits: dict[str, list[str]] = {}
    for path in every_file(*roots):
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        for name, needle in needles.items():
            if needle in data:
                hits.setdefault(name, []).append(str(path))
    return hits


# --- the built-in keystore, by hand ------------------------------------------------------------
def master_key(keystore: Path) -> bytes:
    """The keystore's master key, raw (key-file mode)."""
    return (keystore / "master.key").read_bytes()


def unseal_kek(master: bytes, sealed_file: bytes, handle: str) -> bytes | None:
    """The KEK a ``keys/<handle>.kek`` file holds, or None when it does not open as ``handle``:
    ``b"AKEK" | 0x01 | nonce (12) | AES-256-GCM(master, nonce, kek, aad=b"AKEK" | 0x01 | handle)``.
    """
    if len(sealed_file) != _KEK_FILE_LEN or not sealed_file.startswith(_KEK_HEADER):
        return None
    nonce = sealed_file[len(_KEK_HEADER) : len(_KEK_HEADER) + 12]
    try:
        return AESGCM(master).decrypt(
            nonce, sealed_file[len(_KEK_HEADER) + 12 :], _KEK_HEADER + handle.encode()
        )
    except InvalidTag:
        return None


def recover_keks(keystore: Path, handles: Iterable[str]) -> dict[str, bytes]:
    """Every KEK that any file under ``keystore/keys`` unseals to with the master key, trying
    each file under each handle given and under its own name: ``{handle: kek}``."""
    master = master_key(keystore)
    files = every_file(keystore / "keys")
    recovered: dict[str, bytes] = {}
    for path in files:
        data = path.read_bytes()
        names = {*handles, path.name.split(".")[0]}
        for handle in names:
            kek = unseal_kek(master, data, handle)
            if kek is not None:
                recovered[handle] = kek
    return recovered


def unwrap_dek(kek: bytes, wrapped: bytes, aad: bytes) -> bytes | None:
    """A DEK the built-in keystore wrapped (``0x01 | nonce | AES-256-GCM(kek, nonce, dek,
    aad=0x01 | aad)``), or None when it does not open."""
    if len(wrapped) < 1 + 12 + 16 or wrapped[:1] != _WRAP_VERSION:
        return None
    try:
        return AESGCM(kek).decrypt(wrapped[1:13], wrapped[13:], _WRAP_VERSION + aad)
    except InvalidTag:
        return None


def keystore_unwrap(data_dir: Path, blob: SealedBlob) -> bytes:
    """A built-in keystore blob's DEK, through ``BuiltinKeystore`` and the handle of the KEK
    version its manifest names."""
    assert blob.key_id is not None
    assert blob.version is not None
    handle = kms_keys(data_dir)[blob.key_id].handles[blob.version]
    keystore = BuiltinKeystore(data_dir / "keystore")
    return asyncio.run(keystore.unwrap(handle, blob.wrapped, blob.aad()))


def sse_c_unwrap(blob: SealedBlob, customer_key: bytes) -> bytes:
    """An SSE-C blob's DEK, unwrapped with the customer's key."""
    return AesGcmEnvelope().unwrap(customer_key, blob.wrapped, blob.aad())


def open_blob(data_dir: Path, blob: SealedBlob, dek: bytes) -> bytes:
    """The plaintext of a sealed blob file, opened with ``dek`` (DecryptionFailed if not)."""
    sealed = blob_file(data_dir, blob).read_bytes()[SITE_HEADER_SIZE + envelope.HEADER_SIZE :]
    digest = context_digest(blob.tenant, blob.bucket, blob.key, blob.context, blob.chunk_size)

    async def source() -> AsyncIterator[bytes]:
        yield sealed

    async def run() -> bytes:
        stream = AesGcmEnvelope().open_stream(
            source(), dek, digest, blob.chunk_size, blob.size, 0, blob.size
        )
        return b"".join([bytes(piece) async for piece in stream])

    return asyncio.run(run())


# --- test data and tenants --------------------------------------------------------------------
def marker() -> bytes:
    """A random marker string, 41 bytes: prime to the chunk size, so repeats straddle chunks."""
    return b"MARKER-" + secrets.token_hex(17).encode()


def marked(mark: bytes, size: int) -> bytes:
    """``size`` bytes of ``mark`` repeated (at least one whole copy)."""
    count = -(-max(size, len(mark)) // len(mark))
    return (mark * count)[: max(size, len(mark))]


def operator(server: Server) -> AdminClient:
    """The admin API with the operator's credentials."""
    return AdminClient(server.endpoint, server.access_key, server.secret_key)


@dataclass(frozen=True)
class Tenant:
    """A tenant made through the admin API, with an access key of its own."""

    name: str
    access: str
    secret: str

    def admin(self, server: Server) -> AdminClient:
        """The admin API as this tenant."""
        return AdminClient(server.endpoint, self.access, self.secret)

    def s3(self, server: Server) -> Any:
        """A boto3 S3 client as this tenant."""
        return server.client(self.access, self.secret)


def new_tenant(server: Server, name: str | None = None) -> Tenant:
    """A tenant and an access key, made by the operator through the admin API."""
    admin = operator(server)
    tenant = name or "t-" + secrets.token_hex(5)
    admin.request("POST", "/v1/tenants", {"name": tenant})
    key = admin.request("POST", "/v1/keys", {"tenant": tenant})
    return Tenant(tenant, key["access_key_id"], key["secret_key"])


def root_tenant(server: Server) -> str:
    """The tenant of the operator's own key."""
    return str(operator(server).request("GET", "/v1/whoami")["tenant"])


# --- writes -------------------------------------------------------------------------------------
def sse_kms(key_id: str) -> dict[str, str]:
    """boto3 parameters for SSE-KMS under ``key_id``."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}


def put_multipart(
    s3: Any,
    bucket: str,
    key: str,
    parts: list[bytes],
    sse: Mapping[str, str],
    *,
    complete: bool = True,
) -> str:
    """A multipart upload of ``parts`` (left open unless ``complete``); its upload id."""
    upload = str(s3.create_multipart_upload(Bucket=bucket, Key=key, **sse)["UploadId"])
    etags = [
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=p)["ETag"]
        for n, p in enumerate(parts, 1)
    ]
    if complete:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
            },
        )
    return upload
