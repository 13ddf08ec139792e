"""Key references, states and the serialised forms kept in manifests."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from andromede.core import errors
from andromede.core.keys import (
    KeyState,
    KeyVersion,
    KmsKey,
    check_usable,
    deletion_date,
    key_arn,
    parse_key_reference,
)

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
KEY_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


def _key(state: KeyState = KeyState.ENABLED) -> KmsKey:
    return KmsKey(KEY_ID, "acme", "builtin", state, T0, (KeyVersion(1, "h1", T0),))


def test_key_references_accept_ids_arns_and_the_default_alias() -> None:
    assert parse_key_reference(KEY_ID) == KEY_ID
    assert parse_key_reference(key_arn("eu-west-3", "acme", KEY_ID)) == KEY_ID
    assert parse_key_reference("alias/default") == "default"
    assert parse_key_reference("alias/aws/s3") == "default"
    for bad in ("", "../../etc/passwd", "arn:aws:kms:x:y:key/nope", KEY_ID.upper() + "x"):
        with pytest.raises(errors.KmsNotFound):
            parse_key_reference(bad)


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (KeyState.DISABLED, errors.KmsDisabled),
        (KeyState.PENDING_DELETION, errors.KmsInvalidState),
        (KeyState.DESTROYED, errors.KmsInvalidState),
    ],
)
def test_only_enabled_keys_are_usable(state: KeyState, error: type[Exception]) -> None:
    check_usable(_key())
    with pytest.raises(error):
        check_usable(_key(state))


def test_deletion_window_is_seven_to_thirty_days() -> None:
    assert deletion_date(T0, 7) == T0 + dt.timedelta(days=7)
    for days in (6, 31, 0, -1):
        with pytest.raises(errors.InvalidArgument):
            deletion_date(T0, days)


def test_versions_and_unknown_version() -> None:
    key = dataclasses.replace(_key(), versions=(*_key().versions, KeyVersion(2, "h2", T0)))
    assert key.current.number == 2
    assert key.version(1).handle == "h1"
    with pytest.raises(errors.KmsInvalidState):
        key.version(3)
