"""A private SoftHSM2 token for the PKCS#11 key manager's tests.

:func:`init_token` writes a ``softhsm2.conf`` whose token directory is inside the given
directory, initialises a token labelled ``andromede-test`` there and returns the mapping that
``Pkcs11KeyManager.from_config`` reads. SoftHSM2 reads ``SOFTHSM2_CONF`` when the library is
initialised, which python-pkcs11 does once per process: the session fixture ``softhsm_token``
sets it for the whole session (restored afterwards), so every test shares the one token.
Import the fixture into one test module only, or into a ``conftest.py``: pytest runs a
session fixture once per place it is imported, and a second token would be invisible to a
library already initialised on the first one's configuration.
Where SoftHSM2 is missing the fixture skips, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

TOKEN_LABEL = "andromede-test"
SO_PIN = "1234"
USER_PIN = "5678"
_LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/*/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


class SoftHsmUnavailable(Exception):
    """SoftHSM2 (``softhsm2-util`` and its library) is not installed."""


def find_library() -> str:
    """The path of ``libsofthsm2.so``: common places first, then the Debian package's list."""
    for pattern in _LIBRARY_CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            return path
    if shutil.which("dpkg"):
        listing = subprocess.run(
            ["dpkg", "-L", "softhsm2"], capture_output=True, text=True, check=False
        )
        for line in listing.stdout.splitlines():
            if line.endswith("/libsofthsm2.so"):
                return line
    # softhsm2-util without its library is a broken install: fail rather than skip.
    raise RuntimeError("softhsm2-util is installed but libsofthsm2.so was not found")


def write_config(directory: Path) -> Path:
    """A softhsm2.conf keeping tokens under ``directory/tokens`` as files."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    return conf


def init_token(directory: Path, conf: Path) -> dict[str, str]:
    """Initialise the test token under ``conf`` and write its PIN to a 0600 file; returns the
    key manager's configuration."""
    util = shutil.which("softhsm2-util")
    if util is None:
        raise SoftHsmUnavailable("softhsm2-util not found")
    library = find_library()
    pins = ("--so-pin", SO_PIN, "--pin", USER_PIN)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL, *pins],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    pin_file = directory / "pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(USER_PIN + "\n")
    return {
        "type": "pkcs11",
        "library": library,
        "token_label": TOKEN_LABEL,
        "pin_file": str(pin_file),
    }


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh SoftHSM2 token for the session, ``SOFTHSM2_CONF`` pointing at it; yields the
    ``Pkcs11KeyManager.from_config`` mapping (type, library, token_label, pin_file)."""
    directory = tmp_path_factory.mktemp("softhsm")
    conf = write_config(directory)
    try:
        config = init_token(directory, conf)
    except SoftHsmUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"SoftHSM2 is required under CI: {exc}")
        pytest.skip(f"SoftHSM2 not available: {exc}")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        yield config
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
