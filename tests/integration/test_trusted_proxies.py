"""Who the audit trail says a request came from: the peer, unless the peer is a load balancer
named in ``ANDROMEDE_TRUSTED_PROXIES``, whose X-Forwarded-For then names the client. A client
talking to a gateway directly cannot choose the address recorded."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.server import Server, running_server


def source_of(server: Server, marker: str) -> str:
    """The recorded source of the (anonymous, refused) request for bucket ``marker``."""
    request = urllib.request.Request(
        f"{server.endpoint}/{marker}", headers={"X-Forwarded-For": "203.0.113.7"}
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=10)
    page = json.loads(server.cli("admin", "audit", "query", "--bucket", marker, "--json").stdout)
    (record,) = page["records"]
    return str(record["source"])


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    with running_server(tmp_path / "direct") as direct:
        assert source_of(direct, "direct-bucket") == "127.0.0.1"
    with running_server(tmp_path / "behind", ANDROMEDE_TRUSTED_PROXIES="127.0.0.1") as behind:
        assert source_of(behind, "behind-bucket") == "203.0.113.7"
