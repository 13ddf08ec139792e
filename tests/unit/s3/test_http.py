"""Splitting bucket and key from path-style and virtual-host-style requests."""

from __future__ import annotations

from typing import Any

import pytest

from andromede.core import errors
from andromede.s3.http import build_request


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope(path: bytes, host: str = "127.0.0.1:9000", query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "headers": [(b"host", host.encode()), (b"x-a", b"1"), (b"X-A", b"2")],
        "client": ("127.0.0.1", 5000),
    }


@pytest.mark.parametrize(
    ("path", "bucket", "key"),
    [
        (b"/", None, None),
        (b"/b", "b", None),
        (b"/b/", "b", None),
        (b"/b/k", "b", "k"),
        (b"/b/a/../../etc/passwd", "b", "a/../../etc/passwd"),
        (b"/b//double", "b", "/double"),
        (b"/b/sp%20ace/%E2%82%AC", "b", "sp ace/\u20ac"),
        (b"/b/100%25", "b", "100%"),
    ],
)
def test_path_style(path: bytes, bucket: str | None, key: str | None) -> None:
    req = build_request(_scope(path), _receive, "rid", None)
    assert (req.bucket, req.key) == (bucket, key)


def test_virtual_host_style() -> None:
    req = build_request(
        _scope(b"/a/b", host="reports.s3.example.eu:443"), _receive, "r", "s3.example.eu"
    )
    assert (req.bucket, req.key) == ("reports", "a/b")
    # The bare domain is path style.
    req = build_request(_scope(b"/reports/a", host="s3.example.eu"), _receive, "r", "s3.example.eu")
    assert (req.bucket, req.key) == ("reports", "a")


def test_repeated_headers_are_joined_and_names_lowercased() -> None:
    req = build_request(_scope(b"/b", query=b"list-type=2&prefix=a%2Fb"), _receive, "r", None)
    assert req.header("x-a") == "1,2"
    assert req.query == {"list-type": "2", "prefix": "a/b"}


def test_invalid_utf8_path() -> None:
    with pytest.raises(errors.InvalidArgument):
        build_request(_scope(b"/b/%FF%FE"), _receive, "r", None)
