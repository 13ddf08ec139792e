"""What a test does when a real part it needs (PostgreSQL, Ceph) is not installed here."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(what: str, why: object) -> NoReturn:
    """Skip, except under CI (``CI=true``), where every real part must be there: fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI: {why}")
    pytest.skip(f"{what} not available: {why}")
