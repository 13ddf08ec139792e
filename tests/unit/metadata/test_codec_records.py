"""The stored forms of the repair jobs' records and of key-encryption keys: round trips, and
the exact text older versions wrote (rows already in a database must read back the same)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from andromede.core.keys import (
    BucketEncryption,
    EncryptionMode,
    KekRef,
    KeyState,
    KeyVersion,
    KmsKey,
    ObjectEncryption,
    RewrapProgress,
    Sealing,
)
from andromede.core.models import Versioning
from andromede.core.repair import (
    DrainProgress,
    DrainState,
    OutcomeCounts,
    RepairTotals,
    ScrubState,
)
from andromede.metadata import codec, records

T0 = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)
KEY_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


def test_drain_progress_keeps_the_stored_text() -> None:
    queued = DrainProgress.queued()
    assert records.dump_drain_progress(queued) == '{"state": "queued", "moved": 0, "blocked": []}'
    running = DrainProgress(DrainState.BLOCKED, 3, ("bk1", "bk2"), 1, 2, T0)
    text = (
        '{"state": "blocked", "moved": 3, "failed": 1, "blocked": ["bk1", "bk2"], '
        '"remaining": 2, "updated": "2026-03-04T05:06:07.123456+00:00"}'
    )
    assert records.dump_drain_progress(running) == text
    assert records.load_drain_progress(text) == running
    assert records.load_drain_progress(records.dump_drain_progress(queued)) == queued


def test_scrub_state_leaves_out_what_was_never_counted() -> None:
    fresh = ScrubState(blob_id="b1", bytes_checked=10, checked=1)
    text = '{"blob_id": "b1", "bytes_checked": 10, "checked": 1}'
    assert records.dump_scrub_state(fresh) == text
    assert records.load_scrub_state(text) == fresh
    # Older versions also wrote the last blob's layout text; the id alone resumes a pass.
    assert records.load_scrub_state('{"blob_id": "b1", "site": "r3:a,b,c"}').blob_id == "b1"
    full = ScrubState("", 2, T0, 9, 3, 4096, OutcomeCounts(repaired=2, lost=1))
    assert records.load_scrub_state(records.dump_scrub_state(full)) == full


def test_repair_totals_keep_every_counter() -> None:
    totals = RepairTotals(100, OutcomeCounts(moved=2, lost=1), T0)
    text = records.dump_repair_totals(totals)
    assert text == (
        '{"blocked": 0, "bytes_rebuilt": 100, "healthy": 0, "lost": 1, "moved": 2, '
        '"repaired": 0, "unavailable": 0, "updated": "2026-03-04T05:06:07.123456+00:00", '
        '"vanished": 0}'
    )
    assert records.load_repair_totals(text) == totals


@pytest.mark.parametrize(
    "text",
    ['["state"]', '{"state": "queued", "moved": "3", "blocked": []}', '{"moved": 0}'],
)
def test_a_malformed_record_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="stored record"):
        records.load_drain_progress(text)


def test_kms_key_round_trips_through_its_columns() -> None:
    t0 = dt.datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=dt.UTC)  # the store keeps ms
    key = KmsKey(
        KEY_ID,
        "acme",
        "builtin",
        KeyState.ENABLED,
        t0,
        (KeyVersion(1, "h1", t0), KeyVersion(2, "h2", t0)),
        rewrap=RewrapProgress(2, 10, 4, done=True, started=t0, finished=t0),
    )
    values = codec.kms_key_values(key)
    assert values["versions"] == (
        '[{"c":"2026-03-04T05:06:07.123000+00:00","h":"h1","n":1},'
        '{"c":"2026-03-04T05:06:07.123000+00:00","h":"h2","n":2}]'
    )
    assert codec.kms_key(SimpleNamespace(**values)) == key  # type: ignore[arg-type]


def test_bucket_encryption_round_trips() -> None:
    config = BucketEncryption(EncryptionMode.SSE_KMS, KEY_ID, bucket_key_enabled=True)
    values = SimpleNamespace(
        name="b",
        tenant="acme",
        created=T0,
        location="",
        encryption=None,
        tags=None,
        versioning=None,
        object_lock=None,
        lifecycle=None,
    )
    values.encryption = codec.dump_bucket_encryption(config)
    assert values.encryption == f'{{"bk":true,"k":"{KEY_ID}","m":"aws:kms"}}'
    assert codec.bucket(values).encryption == config  # type: ignore[arg-type]


def test_bucket_tags_round_trip_and_none_is_null() -> None:
    tags = {"team": "data", "cost-centre": ""}
    assert codec.dump_bucket_tags({}) is None
    stored = codec.dump_bucket_tags(tags)
    assert stored == '{"cost-centre":"","team":"data"}'
    values = SimpleNamespace(
        name="b",
        tenant="acme",
        created=T0,
        location="",
        encryption=None,
        tags=stored,
        versioning="Suspended",
        object_lock=None,
        lifecycle=None,
    )
    assert codec.bucket(values).tags == tags  # type: ignore[arg-type]
    assert codec.bucket(values).versioning is Versioning.SUSPENDED  # type: ignore[arg-type]
    values.tags = None
    assert codec.bucket(values).tags == {}  # type: ignore[arg-type]


def test_sealings_and_object_encryption_round_trip() -> None:
    sealing = Sealing(1, 65536, "v1", b"\x00wrapped", KekRef(KEY_ID, 2))
    assert codec.sealing_from_json(codec.sealing_json(sealing)) == sealing
    customer = Sealing(1, 65536, "u/3", b"w")
    assert codec.sealing_from_json(codec.sealing_json(customer)) == customer
    enc = ObjectEncryption(EncryptionMode.SSE_C, None, b"h" * 32, b"s" * 16)
    assert codec.encryption_from_json(codec.encryption_json(enc)) == enc
    kms = ObjectEncryption(EncryptionMode.SSE_KMS, KEY_ID)
    assert codec.encryption_from_json(codec.encryption_json(kms)) == kms
