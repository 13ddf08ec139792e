"""Encryption at rest against the real server: no byte of object content, no data key and no
SSE-C key is ever written anywhere in clear.

One server takes objects through every write path (small and streamed PUTs, multipart,
CopyObject to each mode, UploadPartCopy, SSE-C, SSE-KMS, a bucket's default encryption, an
upload left in progress), each body made of a random marker repeated across chunk boundaries.
Every file under the data dir (sites, temporary files, database and its WAL, keystore, audit
trail) and the server's log are then scanned, while the server runs and again after it
stopped, for each marker, each data key (recovered by unwrapping the database's wrapped keys
with the keystore, and proved right by opening each blob file with it), each KEK, and each
SSE-C key in every form a client sends it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.encryption import (
    SealedBlob,
    keystore_unwrap,
    kms_keys,
    marked,
    marker,
    open_blob,
    operator,
    recover_keks,
    root_tenant,
    scan,
    sealed_blobs,
    sse_c_unwrap,
)
from support.s3objects import MiB, read
from support.server import Server, running_server
from support.sigv4 import Signer
from support.waiting import wait_until

SMALL = 200_000  # under the streaming threshold
LARGE = 3 * MiB + 17  # streamed (over 1 MiB)
PART = 5 * MiB


@dataclass
class Scenario:
    """What was written, what the data dir holds, and what the scans found."""

    data_dir: Path
    log: Path
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    customer_keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    parts: dict[tuple[str, int], bytes] = field(default_factory=dict)  # uploads in progress
    markers: dict[str, bytes] = field(default_factory=dict)
    read_back: dict[tuple[str, str], bytes] = field(default_factory=dict)
    blobs: list[SealedBlob] = field(default_factory=list)
    deks: dict[str, bytes] = field(default_factory=dict)  # blob id -> DEK
    opened: dict[str, bytes] = field(default_factory=dict)  # blob id -> plaintext
    keks: dict[str, bytes] = field(default_factory=dict)  # handle -> KEK
    mid_upload: dict[str, Any] = field(default_factory=dict)
    running: dict[str, list[str]] = field(default_factory=dict)
    stopped: dict[str, list[str]] = field(default_factory=dict)

    def needles(self) -> dict[str, bytes]:
        """Every secret the scans look for, by name."""
        found = {f"marker {name}": m for name, m in self.markers.items()}
        found.update({f"DEK of blob {blob_id}": dek for blob_id, dek in self.deks.items()})
        found.update({f"KEK {handle}": kek for handle, kek in self.keks.items()})
        for (bucket, key), ck in self.customer_keys.items():
            md5 = hashlib.md5(ck, usedforsecurity=False).digest()
            name = f"SSE-C key of {bucket}/{key}"
            found[name] = ck
            found[name + " (base64)"] = base64.b64encode(ck)
            found[name + " (hex)"] = ck.hex().encode()
            found[name + " MD5"] = md5
            found[name + " MD5 (base64)"] = base64.b64encode(md5)
        return found


def _sse_c(key: bytes, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def _write_everything(server: Server, s3: Any, sc: Scenario) -> None:
    """Objects through every write path; records their plaintext and keys in ``sc``."""
    tenant = root_tenant(server)
    kms = operator(server).request("POST", "/v1/kms/keys", {"tenant": tenant})["key_id"]
    plain, dflt = "at-rest-" + secrets.token_hex(4), "at-rest-d-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=plain)
    s3.create_bucket(Bucket=dflt)
    s3.put_bucket_encryption(
        Bucket=dflt,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": kms,
                    }
                }
            ]
        },
    )

    def body(name: str, size: int) -> bytes:
        sc.markers[name] = marker()
        return marked(sc.markers[name], size)

    def put(bucket: str, key: str, data: bytes, **extra: Any) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        sc.objects[bucket, key] = data

    put(plain, "tiny", body("tiny", 41))
    assert len(sc.objects[plain, "tiny"]) < 64
    put(plain, "small", body("small", SMALL))
    put(plain, "large", body("large", LARGE))
    put(plain, "sse-kms", body("sse-kms", SMALL), ServerSideEncryption="aws:kms", SSEKMSKeyId=kms)
    put(plain, "sse-s3", body("sse-s3", SMALL), ServerSideEncryption="AES256")
    customer = secrets.token_bytes(32)
    put(plain, "sse-c", body("sse-c", LARGE), **_sse_c(customer))
    sc.customer_keys[plain, "sse-c"] = customer
    put(dflt, "bucket-default", body("bucket-default", SMALL))

    # Multipart: three parts, each its own marker.
    upload = s3.create_multipart_upload(Bucket=plain, Key="multipart")["UploadId"]
    parts = [body("part 1", PART), body("part 2", PART), body("part 3", 300_000)]
    etags = [
        s3.upload_part(Bucket=plain, Key="multipart", UploadId=upload, PartNumber=n, Body=p)["ETag"]
        for n, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=plain,
        Key="multipart",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    sc.objects[plain, "multipart"] = b"".join(parts)

    # Copies: to the default, to SSE-KMS, to SSE-C.
    put(plain, "copy-source", body("copy source", SMALL))
    source = {"Bucket": plain, "Key": "copy-source"}
    s3.copy_object(Bucket=plain, Key="copy-plain", CopySource=source)
    s3.copy_object(
        Bucket=plain,
        Key="copy-kms",
        CopySource=source,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms,
    )
    copy_key = secrets.token_bytes(32)
    s3.copy_object(
        Bucket=plain,
        Key="copy-sse-c",
        CopySource={"Bucket": plain, "Key": "large"},
        **_sse_c(copy_key),
    )
    sc.customer_keys[plain, "copy-sse-c"] = copy_key
    for key in ("copy-plain", "copy-kms"):
        sc.objects[plain, key] = sc.objects[plain, "copy-source"]
    sc.objects[plain, "copy-sse-c"] = sc.objects[plain, "large"]

    # UploadPartCopy: a range of the multipart object, then a whole SSE-C object.
    upload = s3.create_multipart_upload(Bucket=plain, Key="part-copy")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=plain,
        Key="part-copy",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": plain, "Key": "multipart"},
        CopySourceRange=f"bytes=0-{PART - 1}",
    )["CopyPartResult"]["ETag"]
    second = s3.upload_part_copy(
        Bucket=plain,
        Key="part-copy",
        UploadId=upload,
        PartNumber=2,
        CopySource={"Bucket": plain, "Key": "sse-c"},
        **_sse_c(customer, "CopySource"),
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket=plain,
        Key="part-copy",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
        },
    )
    sc.objects[plain, "part-copy"] = (
        sc.objects[plain, "multipart"][:PART] + sc.objects[plain, "sse-c"]
    )

    # An upload left in progress: its part is sealed too.
    pending = s3.create_multipart_upload(Bucket=plain, Key="pending")["UploadId"]
    data = body("pending part", SMALL)
    s3.upload_part(Bucket=plain, Key="pending", UploadId=pending, PartNumber=1, Body=data)
    sc.parts[pending, 1] = data

    _put_while_watching_tmp(server, plain, body("streamed", 12 * MiB), sc)


def _put_while_watching_tmp(server: Server, bucket: str, data: bytes, sc: Scenario) -> None:
    """A PUT sent in two halves: between them, the temporary file the server is writing is
    read; it must hold sealed bytes already, and no marker."""
    signed = Signer(server, server.access_key, server.secret_key).sign(
        "PUT",
        f"/{bucket}/streamed",
        headers={"content-length": str(len(data))},
        payload="UNSIGNED-PAYLOAD",
    )
    tmp = sc.data_dir / "sites" / "local" / "tmp"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("PUT", signed.target, skip_host=True, skip_accept_encoding=True)
        for name, value in signed.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        half = len(data) // 2
        conn.send(data[:half])

        def two_mib_written() -> dict[str, bytes]:
            seen = {p.name: p.read_bytes() for p in tmp.glob("*.part")}
            return seen if any(len(v) >= 2 * MiB for v in seen.values()) else {}

        seen = wait_until(two_mib_written, 10, 0.05, "2 MiB of the PUT in a temporary file")
        sc.mid_upload = {
            "sizes": {k: len(v) for k, v in seen.items()},
            "marker found": [k for k, v in seen.items() if sc.markers["streamed"] in v],
        }
        conn.send(data[half:])
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        conn.close()
    sc.objects[bucket, "streamed"] = data


def _read_everything(s3: Any, sc: Scenario) -> None:
    for (bucket, key), _ in sc.objects.items():
        extra = _sse_c(sc.customer_keys[bucket, key]) if (bucket, key) in sc.customer_keys else {}
        sc.read_back[bucket, key] = read(s3.get_object(Bucket=bucket, Key=key, **extra))


def _recover_deks(sc: Scenario) -> None:
    """Each blob's DEK, unwrapped from the database's manifest; each blob opened with it."""
    ours = {bucket for bucket, _ in sc.objects}
    sc.blobs = [b for b in sealed_blobs(sc.data_dir) if b.bucket in ours]
    for blob in sc.blobs:
        if blob.sealing is None:
            continue
        if blob.key_id is None:
            dek = sse_c_unwrap(blob, sc.customer_keys[blob.bucket, blob.key])
        else:
            dek = keystore_unwrap(sc.data_dir, blob)
        sc.deks[blob.blob_id] = dek
        sc.opened[blob.blob_id] = open_blob(sc.data_dir, blob, dek)
    handles = [h for row in kms_keys(sc.data_dir).values() for h in row.handles.values()]
    sc.keks = recover_keks(sc.data_dir / "keystore", handles)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    data_dir = tmp_path_factory.mktemp("at-rest") / "data"
    with running_server(data_dir, workers=2) as server:
        assert server.log_path is not None
        sc = Scenario(data_dir, server.log_path)
        s3 = server.client()
        _write_everything(server, s3, sc)
        _read_everything(s3, sc)
        _recover_deks(sc)
        roots = [data_dir, server.log_path]
        sc.running = scan(roots, sc.needles())
        assert (data_dir / "metadata.db-wal").exists()  # the WAL was scanned too
    sc.stopped = scan(roots, sc.needles())
    return sc


def test_every_object_reads_back(scenario: Scenario) -> None:
    assert set(scenario.read_back) == set(scenario.objects)
    for name, data in scenario.objects.items():
        assert scenario.read_back[name] == data, name


def test_every_blob_is_sealed(scenario: Scenario) -> None:
    plaintext = [b.blob_id for b in scenario.blobs if b.sealing is None]
    assert plaintext == []
    assert {(b.bucket, b.key) for b in scenario.blobs if b.upload_id is None} == set(
        scenario.objects
    )
    assert {(b.upload_id, b.part_number) for b in scenario.blobs if b.upload_id} == set(
        scenario.parts
    )
    # One fresh DEK per blob.
    assert len(set(scenario.deks.values())) == len(scenario.blobs)


def test_the_recovered_deks_are_the_real_ones(scenario: Scenario) -> None:
    """The scans look for the right bytes: each DEK opens its blob file to the plaintext."""
    for blob in scenario.blobs:
        if blob.upload_id is not None:
            assert blob.part_number is not None
            expected = scenario.parts[blob.upload_id, blob.part_number]
        else:
            expected = scenario.objects[blob.bucket, blob.key][
                blob.offset : blob.offset + blob.size
            ]
        assert scenario.opened[blob.blob_id] == expected, (blob.bucket, blob.key)


def test_temporary_file_of_a_streamed_put_holds_no_plaintext(scenario: Scenario) -> None:
    sizes = scenario.mid_upload["sizes"]
    assert any(size >= 2 * MiB for size in sizes.values()), sizes  # it was caught mid-write
    assert scenario.mid_upload["marker found"] == []


@pytest.mark.parametrize("when", ["running", "stopped"])
def test_nothing_in_clear_anywhere(scenario: Scenario, when: str) -> None:
    needles = scenario.needles()
    assert len([n for n in needles if n.startswith("marker")]) == len(scenario.markers) == 13
    assert len([n for n in needles if n.startswith("DEK")]) == len(scenario.blobs)
    assert len([n for n in needles if n.startswith("KEK")]) >= 2
    hits = scenario.running if when == "running" else scenario.stopped
    assert hits == {}


def test_the_scan_finds_what_is_there(scenario: Scenario) -> None:
    """The scan itself works: a file holding a marker is found."""
    probe = scenario.data_dir / "sites" / "local" / "tmp" / "probe"
    probe.write_bytes(b"..." + scenario.markers["tiny"] + b"...")
    try:
        found = scan([scenario.data_dir], {"tiny": scenario.markers["tiny"]})
    finally:
        probe.unlink()
    assert found == {"tiny": [str(probe)]}
