"""The residency report's signed form, shared by the server that signs it and the verifier."""

from __future__ import annotations

import json
from collections.abc import Mapping

REPORT_KIND = "andromede-residency-report"
REPORT_FORMAT = 1


def canonical(document: Mapping[str, object]) -> bytes:
    """The bytes that are signed: the document without ``signature``, as canonical JSON
    (sorted keys, no spaces, UTF-8)."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
