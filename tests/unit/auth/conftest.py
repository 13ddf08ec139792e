from __future__ import annotations

import pytest

from support.botocore_signing import freeze_botocore_clock


@pytest.fixture(autouse=True)
def _frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch)
