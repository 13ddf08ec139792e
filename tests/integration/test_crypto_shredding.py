"""Crypto-shredding with the built-in keystore: once a key is destroyed, none of its objects'
bytes can be recovered, even by someone holding the data dir, the database and the master key.

A tenant (made through the admin API) creates a key, writes objects under it (a single PUT,
a multipart upload, one more after a rotation, so under two key versions) and one object
under its default key. The operator schedules the key's deletion and destroys it through
the CLI. The server then refuses those objects and still serves the other one.

With the server stopped, the test plays the attacker: it unseals every file left in
``keystore/keys`` under every handle the database names, with ``master.key``, and tries every
KEK so recovered on every wrapped DEK of the destroyed key's objects. None opens. The same
procedure, run on the surviving object, recovers its DEK and decrypts its blob file back to
the plaintext: the procedure works, so its failure on the destroyed key means something.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.encryption import (
    SealedBlob,
    Tenant,
    blob_file,
    kms_keys,
    marked,
    marker,
    master_key,
    new_tenant,
    open_blob,
    recover_keks,
    scan,
    sealed_blobs,
    unseal_kek,
    unwrap_dek,
)
from support.s3objects import MiB, read
from support.server import running_server
from support.workers import refusals_after

PART = 5 * MiB
# Another gateway process may serve a key's cached state this long (kms_cache_seconds + 1 s).
STALENESS_S = 3.0


@dataclass
class Shredded:
    """What the test wrote, what it learned before the destruction, and the data dir after."""

    data_dir: Path
    tenant: Tenant
    bucket: str
    key_id: str
    default_key_id: str
    objects: dict[str, bytes]  # under the destroyed key
    survivor: tuple[str, bytes]  # under the tenant's default key
    handles: dict[int, str]  # the destroyed key's versions
    keks_before: dict[str, bytes]  # the destroyed key's KEKs, unsealed before the destruction
    sealed_before: dict[str, bytes]  # its sealed key files, as they were
    deks_before: dict[str, bytes]  # blob id -> DEK of the destroyed key's objects
    reads_after: dict[
        str, set[tuple[int, str | None]]
    ]  # what GETs answered, once stale caches expired
    survivor_after: bytes
    older: bytes  # the first version of "single", noncurrent
    old_version_after: tuple[int, str]  # what a GET of a noncurrent version answered
    destroyed: dict[str, Any]


def _write(s3: Any, bucket: str, key_id: str) -> dict[str, bytes]:
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    objects = {"single": marked(marker(), 300_000)}
    s3.put_object(Bucket=bucket, Key="single", Body=objects["single"], **sse)
    parts = [marked(marker(), PART), marked(marker(), 200_000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multipart", **sse)["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="multipart", UploadId=upload, PartNumber=n, Body=p)[
            "ETag"
        ]
        for n, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="multipart",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    objects["multipart"] = b"".join(parts)
    return objects


def _shred(tmp: Path) -> Shredded:
    data_dir = tmp / "data"
    with running_server(data_dir, workers=2) as server:
        tenant = new_tenant(server)
        s3 = tenant.s3(server)
        bucket = "shred-" + secrets.token_hex(5)
        s3.create_bucket(Bucket=bucket)
        key_id = tenant.admin(server).request("POST", "/v1/kms/keys", {})["key_id"]
        # A versioned bucket: "single" is written twice, and its first version, noncurrent,
        # must be shredded with the rest.
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        older = marked(marker(), 120_000)
        old_version = s3.put_object(
            Bucket=bucket, Key="single", Body=older, ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_id,
        )["VersionId"]  # fmt: skip
        objects = _write(s3, bucket, key_id)
        assert read(s3.get_object(Bucket=bucket, Key="single", VersionId=old_version)) == older
        # A second version, with an object under it.
        assert (
            tenant.admin(server).request("POST", f"/v1/kms/keys/{key_id}/rotate")["current_version"]
            == 2
        )
        time.sleep(STALENESS_S)  # every worker wraps under version 2 by now
        objects["after-rotation"] = marked(marker(), 100_000)
        s3.put_object(
            Bucket=bucket,
            Key="after-rotation",
            Body=objects["after-rotation"],
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_id,
        )
        survivor = marked(marker(), 250_000)
        s3.put_object(Bucket=bucket, Key="survivor", Body=survivor)
        for name, data in objects.items():
            assert read(s3.get_object(Bucket=bucket, Key=name)) == data

        # What an attacker with the master key could get today, to look for it afterwards.
        rows = kms_keys(data_dir)
        default_key_id = next(k for k, r in rows.items() if r.tenant == tenant.name and k != key_id)
        handles = rows[key_id].handles
        assert sorted(handles) == [1, 2]
        keystore = data_dir / "keystore"
        sealed_before = {h: (keystore / "keys" / f"{h}.kek").read_bytes() for h in handles.values()}
        mine = set(handles.values())
        keks_before = {h: k for h, k in recover_keks(keystore, mine).items() if h in mine}
        assert set(keks_before) == mine
        deks_before = {}
        for blob in _blobs(data_dir, bucket, key_id):
            assert blob.version is not None
            dek = unwrap_dek(keks_before[handles[blob.version]], blob.wrapped, blob.aad())
            assert dek is not None
            deks_before[blob.blob_id] = dek

        out = server.cli(
            "admin", "kms", "schedule-deletion", key_id, "--days", "7", "--json"
        ).stdout
        assert json.loads(out)["state"] == "PendingDeletion"
        destroyed = json.loads(
            server.cli("admin", "kms", "destroy", key_id, "--yes", "--json").stdout
        )

        destroyed_at = time.monotonic()
        paths = {f"/{bucket}/{name}": name for name in objects}
        answers = refusals_after(
            server, tenant.access, tenant.secret, paths, destroyed_at, STALENESS_S
        )
        reads_after = {paths[path]: answer for path, answer in answers.items()}
        survivor_after = read(s3.get_object(Bucket=bucket, Key="survivor"))
        with pytest.raises(ClientError) as old_read:
            s3.get_object(Bucket=bucket, Key="single", VersionId=old_version)
        old_version_after = (
            old_read.value.response["ResponseMetadata"]["HTTPStatusCode"],
            old_read.value.response["Error"]["Code"],
        )

    return Shredded(
        data_dir,
        tenant,
        bucket,
        key_id,
        default_key_id,
        objects,
        ("survivor", survivor),
        handles,
        keks_before,
        sealed_before,
        deks_before,
        reads_after,
        survivor_after,
        older,
        old_version_after,
        destroyed,
    )


def _blobs(data_dir: Path, bucket: str, key_id: str) -> list[SealedBlob]:
    return [b for b in sealed_blobs(data_dir) if b.bucket == bucket and b.key_id == key_id]


@pytest.fixture(scope="module")
def shredded(tmp_path_factory: pytest.TempPathFactory) -> Shredded:
    return _shred(tmp_path_factory.mktemp("shred"))


def test_the_server_refuses_the_destroyed_key_s_objects(shredded: Shredded) -> None:
    assert shredded.destroyed["state"] == "Destroyed"
    refused = (400, "KMS.KMSInvalidStateException")
    assert shredded.reads_after == {name: {refused} for name in shredded.objects}
    assert shredded.survivor_after == shredded.survivor[1]
    assert shredded.old_version_after == refused  # noncurrent versions too


def test_the_destroyed_key_s_files_are_gone(shredded: Shredded) -> None:
    keys_dir = shredded.data_dir / "keystore" / "keys"
    for handle in shredded.handles.values():
        assert not (keys_dir / f"{handle}.kek").exists()
    # Neither its KEKs nor their sealed files nor the DEKs they wrapped are left in any file.
    needles = {f"KEK {h}": k for h, k in shredded.keks_before.items()}
    needles.update({f"sealed KEK file {h}": s for h, s in shredded.sealed_before.items()})
    needles.update({f"DEK of {b}": d for b, d in shredded.deks_before.items()})
    assert scan([shredded.data_dir], needles) == {}


def test_the_attacker_recovers_nothing_of_the_destroyed_key(shredded: Shredded) -> None:
    data_dir = shredded.data_dir
    rows = kms_keys(data_dir)
    assert rows[shredded.key_id].state == "Destroyed"
    # Every handle the database names, and the destroyed ones remembered from before.
    handles = {h for row in rows.values() for h in row.handles.values()}
    handles |= set(shredded.handles.values())
    keks = recover_keks(data_dir / "keystore", handles)
    assert not set(shredded.handles.values()) & set(keks)
    assert not set(shredded.keks_before.values()) & set(keks.values())

    blobs = _blobs(data_dir, shredded.bucket, shredded.key_id)
    # The single PUT and its older version, two parts, and the object written after the
    # rotation.
    assert len(blobs) == 5
    assert {b.version for b in blobs} == {1, 2}
    for blob in blobs:
        for kek in keks.values():
            for version in (1, 2):
                aad = blob.aad(shredded.key_id, version)
                assert unwrap_dek(kek, blob.wrapped, aad) is None, blob.key
        # And the blob file is there, but only the DEK opens it.
        assert blob_file(data_dir, blob).exists()


def test_the_same_procedure_recovers_a_surviving_object(shredded: Shredded) -> None:
    """The positive control: from the same files, the object under a live key comes back."""
    data_dir = shredded.data_dir
    handles = {h for row in kms_keys(data_dir).values() for h in row.handles.values()}
    keks = recover_keks(data_dir / "keystore", handles)
    name, plaintext = shredded.survivor
    (blob,) = [b for b in sealed_blobs(data_dir) if (b.bucket, b.key) == (shredded.bucket, name)]
    assert blob.key_id == shredded.default_key_id
    deks = [d for k in keks.values() if (d := unwrap_dek(k, blob.wrapped, blob.aad())) is not None]
    assert len(deks) == 1
    assert open_blob(data_dir, blob, deks[0]) == plaintext


def test_the_destroyed_kek_did_open_its_objects_before(shredded: Shredded) -> None:
    """What was destroyed was the real thing: before the destruction, the KEKs from the
    sealed files opened the objects' DEKs, and those decrypt the blob files."""
    master = master_key(shredded.data_dir / "keystore")
    for handle, sealed in shredded.sealed_before.items():
        assert unseal_kek(master, sealed, handle) == shredded.keks_before[handle]
    blobs = _blobs(shredded.data_dir, shredded.bucket, shredded.key_id)
    pieces: dict[str, list[tuple[int, bytes]]] = {}
    for blob in blobs:
        plain = open_blob(shredded.data_dir, blob, shredded.deks_before[blob.blob_id])
        pieces.setdefault(blob.key, []).append((blob.offset, plain))
    # "single" has two versions of one blob each.
    both = sorted(plain for _, plain in pieces.pop("single"))
    assert both == sorted([shredded.objects["single"], shredded.older])
    opened = {key: b"".join(p for _, p in sorted(found)) for key, found in pieces.items()}
    assert opened == {k: v for k, v in shredded.objects.items() if k != "single"}
