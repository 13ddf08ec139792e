"""Settings: a misspelt key in the file stops the start, an unknown variable is named."""

from __future__ import annotations

import logging
import os

import pytest
from pydantic import ValidationError

from andromede.settings import (
    OTHER_ENV_VARS,
    Settings,
    SettingsError,
    check_file_keys,
    load_settings,
    unknown_env_vars,
    warn_unknown_env,
)


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no settings file, no ANDROMEDE_* variables of the caller's."""
    for name in list(os.environ):
        if name.upper().startswith("ANDROMEDE_"):
            monkeypatch.delenv(name)


def test_file_keys_that_are_settings_pass() -> None:
    check_file_keys({"address": "0.0.0.0:9000", "audit_sink": "trail", "key_managers": {}}, "f")


def test_misspelt_file_key_is_an_error_that_names_it_and_the_likely_one() -> None:
    with pytest.raises(SettingsError) as info:
        check_file_keys({"adress": "0.0.0.0:9000", "region": "eu-west-3"}, "/etc/andromede.toml")
    message = str(info.value)
    assert "/etc/andromede.toml" in message
    assert "'adress'" in message
    assert "did you mean address?" in message
    assert "region" not in message


def test_every_unknown_file_key_is_named() -> None:
    with pytest.raises(SettingsError, match=r"'colour'.*'workerz' \(did you mean workers\?\)"):
        check_file_keys({"workerz": 4, "colour": "blue"}, "f")


def test_unknown_env_var_is_found_and_settings_are_not() -> None:
    environ = {
        "ANDROMEDE_ADRESS": "0.0.0.0:9000",
        "ANDROMEDE_ADDRESS": "127.0.0.1:9000",
        "ANDROMEDE_DATA_DIR": "/srv/andromede",
        "andromede_regoin": "eu-west-3",  # read without regard to case, so checked so too
        "HOME": "/root",
        "AWS_ACCESS_KEY_ID": "AK",
    }
    assert unknown_env_vars(environ) == ["ANDROMEDE_ADRESS", "andromede_regoin"]


def test_variables_read_outside_settings_are_known() -> None:
    # The CLI's, bootstrap's root credentials, the scripts' and tests' own.
    assert unknown_env_vars(dict.fromkeys(OTHER_ENV_VARS, "x")) == []
    for name in ("ANDROMEDE_ROOT_SECRET_KEY_FILE", "ANDROMEDE_ENDPOINT", "ANDROMEDE_ACCESS_KEY"):
        assert name in OTHER_ENV_VARS


def test_variables_serve_sets_for_its_workers_are_known() -> None:
    set_by_serve = {
        "ANDROMEDE_DATA_DIR": "/d",
        "ANDROMEDE_ADDRESS": "127.0.0.1:9000",
        "ANDROMEDE_WORKERS": "2",
        "ANDROMEDE_AUDIT_WRITER_SOCKET": "/d/audit.sock",
        "ANDROMEDE_CONFIG_FILE": "/etc/andromede.toml",
    }
    assert unknown_env_vars(set_by_serve) == []


def test_unknown_env_var_is_a_logged_warning_that_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="andromede.settings"):
        found = warn_unknown_env({"ANDROMEDE_WORKER": "4", "ANDROMEDE_REGION": "eu-west-3"})
    assert found == ["ANDROMEDE_WORKER"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage() == (
        "unknown environment variable ANDROMEDE_WORKER is ignored (did you mean ANDROMEDE_WORKERS?)"
    )


def test_no_warning_when_every_variable_is_known(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="andromede.settings"):
        assert warn_unknown_env({"ANDROMEDE_REGION": "eu-west-3", "PATH": "/usr/bin"}) == []
    assert caplog.records == []


def test_unknown_env_var_does_not_stop_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDROMEDE_REGOIN", "eu-west-3")
    monkeypatch.setenv("ANDROMEDE_REGION", "eu-central-1")
    assert load_settings().region == "eu-central-1"


@pytest.mark.parametrize("sink", ["trail", "discard"])
def test_audit_sink_takes_its_two_values(monkeypatch: pytest.MonkeyPatch, sink: str) -> None:
    monkeypatch.setenv("ANDROMEDE_AUDIT_SINK", sink)
    assert load_settings().audit_sink == sink


def test_audit_sink_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDROMEDE_AUDIT_SINK", "none")
    with pytest.raises(ValidationError, match="audit_sink"):
        load_settings()
    monkeypatch.delenv("ANDROMEDE_AUDIT_SINK")
    assert Settings().audit_sink == "trail"
