"""Tampering with sealed blob files under a running server: what the client sees.

Each test writes fresh objects, edits their blob files on disk (located through the manifest:
site header, then the 16-byte seal header, then chunks of the default chunk size plus a
16-byte tag), and reads them back through boto3. A chunk that fails authentication is never
handed out: the client gets ``500 InternalError`` when it is the first chunk of the response,
a short body when it comes later; a Range GET that does not cover a damaged chunk still
succeeds; and each authentication failure is an audit event ``kms:DecryptionFailed`` naming
the object.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from andromede.cli.client import AdminClient
from andromede.core.envelope import DEFAULT_CHUNK_SIZE, TAG_SIZE
from support.encryption import blob_file, blobs_of, chunk_offset
from support.s3errors import error_of
from support.s3objects import MiB, read
from support.server import Server, running_server
from support.waiting import wait_until

CHUNK = DEFAULT_CHUNK_SIZE
SEALED_CHUNK = CHUNK + TAG_SIZE
SIZE = 4 * CHUNK + CHUNK * 11 // 16  # five chunks: four whole, and a shorter last one
EVENT_WAIT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("tamper") / "data", workers=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(server: Server) -> Any:
    return server.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = "tamper-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    return name


def put(server: Server, s3: Any, bucket: str, key: str, size: int = SIZE) -> tuple[bytes, Path]:
    """A fresh object of random bytes, and its (single) blob file."""
    data = random.Random(f"{bucket}/{key}").randbytes(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    (blob,) = blobs_of(server.data_dir, bucket, key)
    assert blob.sealing is not None
    assert blob.chunk_size == CHUNK
    return data, blob_file(server.data_dir, blob)


def flip_bit(path: Path, offset: int) -> None:
    """Flip the lowest bit of the byte at ``offset``."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def swap_chunks(path: Path, a: int, b: int) -> None:
    """Exchange two whole sealed chunks (both full-size)."""
    raw = bytearray(path.read_bytes())
    pa, pb = chunk_offset(a), chunk_offset(b)
    chunk_a, chunk_b = raw[pa : pa + SEALED_CHUNK], raw[pb : pb + SEALED_CHUNK]
    raw[pa : pa + SEALED_CHUNK], raw[pb : pb + SEALED_CHUNK] = chunk_b, chunk_a
    path.write_bytes(bytes(raw))


def fails_with_500(s3: Any, bucket: str, key: str, **extra: Any) -> None:
    """The GET is refused with 500 InternalError before any byte of the body."""
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, **extra)
    assert error_of(exc) == ("InternalError", 500)


def read_what_arrives(s3: Any, bucket: str, key: str) -> tuple[bytes, Exception | None]:
    """What the client receives of a GET: the body bytes up to the first error, and that
    error (None when the body arrived whole)."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return b"", exc
    received = bytearray()
    body = response["Body"]
    try:
        while piece := body.read(64 * 1024):
            received += piece
    except (BotoCoreError, OSError) as exc:
        return bytes(received), exc
    finally:
        body.close()
    return bytes(received), None


def ranged(s3: Any, bucket: str, key: str, first: int, last: int) -> bytes:
    """A Range GET of plaintext bytes ``first..last`` (inclusive)."""
    response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
    return read(response)


def decryption_failures(server: Server, bucket: str, key: str) -> list[dict[str, Any]]:
    """The trail's ``kms:DecryptionFailed`` events about ``bucket``/``key``, waiting for them
    to be written (the admin API's audit query; the CLI over it is tested elsewhere)."""
    admin = AdminClient(server.endpoint, server.access_key, server.secret_key)

    def found() -> list[dict[str, Any]]:
        page = admin.request(
            "GET",
            "/v1/audit/records",
            params={"operation": "kms:DecryptionFailed", "limit": "1000"},
        )
        return [
            r
            for r in page["records"]
            if (r.get("details") or {}).get("bucket") == bucket
            and (r.get("details") or {}).get("key") == key
        ]

    return wait_until(found, EVENT_WAIT_S, 0.1, f"a kms:DecryptionFailed event for {bucket}/{key}")


def assert_failure_recorded(server: Server, bucket: str, key: str, blob: Path) -> None:
    events = decryption_failures(server, bucket, key)
    assert events, f"no kms:DecryptionFailed event for {bucket}/{key}"
    for event in events:
        assert (event["type"], event["face"]) == ("event", "kms")
        assert event["details"]["blob"] == blob.name
        assert event["details"]["site"] == "local"


# --- one chunk changed ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["ciphertext", "tag"])
def test_a_bit_flipped_in_the_first_chunk(server: Server, s3: Any, bucket: str, where: str) -> None:
    data, path = put(server, s3, bucket, "k")
    offset = chunk_offset(0) + (100 if where == "ciphertext" else CHUNK + 5)
    flip_bit(path, offset)

    fails_with_500(s3, bucket, "k")
    assert_failure_recorded(server, bucket, "k", path)
    # Only the chunks a range covers are read: the others still serve.
    assert ranged(s3, bucket, "k", 2 * CHUNK, 3 * CHUNK - 1) == data[2 * CHUNK : 3 * CHUNK]
    assert ranged(s3, bucket, "k", 4 * CHUNK, SIZE - 1) == data[4 * CHUNK :]
    fails_with_500(s3, bucket, "k", Range=f"bytes=10-{CHUNK + 10}")


def test_a_bit_flipped_in_a_later_chunk(server: Server, s3: Any, bucket: str) -> None:
    data, path = put(server, s3, bucket, "k")
    flip_bit(path, chunk_offset(3) + 1234)

    received, error = read_what_arrives(s3, bucket, "k")
    assert error is not None, "the whole altered object was served"
    assert len(received) < len(data)
    assert data.startswith(received)
    assert_failure_recorded(server, bucket, "k", path)
    assert ranged(s3, bucket, "k", 0, 3 * CHUNK - 1) == data[: 3 * CHUNK]
    assert ranged(s3, bucket, "k", 4 * CHUNK, SIZE - 1) == data[4 * CHUNK :]
    fails_with_500(s3, bucket, "k", Range=f"bytes={3 * CHUNK}-{3 * CHUNK + 9}")


def test_a_bit_flipped_after_the_response_started_ends_it_short(
    server: Server, s3: Any, bucket: str
) -> None:
    """Deep in a large object, the client has had good bytes already: it sees a short body,
    never the altered chunk."""
    size = max(4 * MiB, 6 * CHUNK)
    data, path = put(server, s3, bucket, "big", size)
    damaged = size // CHUNK - 2  # near the end: the response has started by then
    flip_bit(path, chunk_offset(damaged) + 77)

    received, error = read_what_arrives(s3, bucket, "big")
    assert error is not None, "the whole altered object was served"
    assert 0 < len(received) <= damaged * CHUNK  # the response had started: a short body
    assert data.startswith(received)
    assert_failure_recorded(server, bucket, "big", path)
    first, last = (damaged + 1) * CHUNK, (damaged + 2) * CHUNK - 1
    assert ranged(s3, bucket, "big", first, last) == data[first : last + 1]


# --- chunks moved --------------------------------------------------------------------------
def test_two_chunks_swapped(server: Server, s3: Any, bucket: str) -> None:
    data, path = put(server, s3, bucket, "k")
    swap_chunks(path, 1, 2)

    received, error = read_what_arrives(s3, bucket, "k")
    assert error is not None
    assert data.startswith(received)
    assert len(received) <= CHUNK
    assert_failure_recorded(server, bucket, "k", path)
    # Each moved chunk fails where it now stands; the ones in place still read.
    for index in (1, 2):
        fails_with_500(s3, bucket, "k", Range=f"bytes={index * CHUNK}-{index * CHUNK + 9}")
    assert ranged(s3, bucket, "k", 0, CHUNK - 1) == data[:CHUNK]
    assert ranged(s3, bucket, "k", 3 * CHUNK, SIZE - 1) == data[3 * CHUNK :]


def test_the_last_chunk_cut_off(server: Server, s3: Any, bucket: str) -> None:
    data, path = put(server, s3, bucket, "k")
    raw = path.read_bytes()
    path.write_bytes(raw[: chunk_offset(4)])  # the file ends after chunk 3

    received, error = read_what_arrives(s3, bucket, "k")
    assert error is not None
    assert data.startswith(received)
    assert len(received) <= 4 * CHUNK
    fails_with_500(s3, bucket, "k", Range=f"bytes={4 * CHUNK}-{SIZE - 1}")
    assert ranged(s3, bucket, "k", 0, 2 * CHUNK - 1) == data[: 2 * CHUNK]


def test_the_last_chunk_shortened(server: Server, s3: Any, bucket: str) -> None:
    data, path = put(server, s3, bucket, "k")
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])

    fails_with_500(s3, bucket, "k", Range=f"bytes={4 * CHUNK}-{SIZE - 1}")
    received, error = read_what_arrives(s3, bucket, "k")
    assert error is not None
    assert data.startswith(received)
    assert len(received) <= 4 * CHUNK
    assert ranged(s3, bucket, "k", CHUNK, 2 * CHUNK - 1) == data[CHUNK : 2 * CHUNK]


def test_two_objects_files_swapped(server: Server, s3: Any, bucket: str) -> None:
    one, path_one = put(server, s3, bucket, "one")
    two, path_two = put(server, s3, bucket, "two")
    assert path_one.stat().st_size == path_two.stat().st_size
    raw_one, raw_two = path_one.read_bytes(), path_two.read_bytes()
    path_one.write_bytes(raw_two)
    path_two.write_bytes(raw_one)

    for key, path in (("one", path_one), ("two", path_two)):
        fails_with_500(s3, bucket, key)
        fails_with_500(s3, bucket, key, Range=f"bytes={2 * CHUNK}-{2 * CHUNK + 9}")
        assert_failure_recorded(server, bucket, key, path)
    # Put back, both read again: nothing else was wrong.
    path_one.write_bytes(raw_one)
    path_two.write_bytes(raw_two)
    assert read(s3.get_object(Bucket=bucket, Key="one")) == one
    assert read(s3.get_object(Bucket=bucket, Key="two")) == two


def test_the_header_s_chunk_size_edited_is_ignored(server: Server, s3: Any, bucket: str) -> None:
    data, path = put(server, s3, bucket, "k")
    raw = bytearray(path.read_bytes())
    header = chunk_offset(0) - 16
    assert raw[header : header + 8] == b"ANDRSEAL"
    raw[header + 12 : header + 16] = (16 * 1024).to_bytes(4, "big")
    path.write_bytes(bytes(raw))

    assert read(s3.get_object(Bucket=bucket, Key="k")) == data
