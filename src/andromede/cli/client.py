"""A small signed HTTP client for the admin API (SigV4, as S3 clients sign).

httpx and botocore are imported by the calls that use them: every command imports this module,
and ``andromede serve``, which talks to no server, would otherwise pay ~0.3 s of CPU for them
before it starts the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andromede.localfiles import read_credentials, read_server_endpoint

if TYPE_CHECKING:
    import httpx

ADMIN_PREFIX = "/_andromede/admin"
DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
# A stream may pause while the server scans for the next matching records.
STREAM_CONNECT_S, STREAM_READ_S = 30.0, 600.0


class AdminError(Exception):
    """A failed admin call, with the server's code and message."""


def resolve_target(endpoint: str | None, data_dir: Path | None) -> tuple[str, str, str]:
    """Endpoint and credentials from flags, ``ANDROMEDE_*`` env vars, or the data dir."""
    access = os.environ.get("ANDROMEDE_ACCESS_KEY")
    secret = os.environ.get("ANDROMEDE_SECRET_KEY")
    if data_dir is not None:
        creds = read_credentials(data_dir)
        if creds is None:
            raise AdminError(f"no server credentials in {data_dir}")
        access, secret = access or creds.access_key_id, secret or creds.secret_key
        endpoint = endpoint or read_server_endpoint(data_dir)
    if not access or not secret:
        raise AdminError(
            "credentials needed: set ANDROMEDE_ACCESS_KEY and ANDROMEDE_SECRET_KEY, "
            "or pass --data-dir on the server's machine"
        )
    return (endpoint or DEFAULT_ENDPOINT).rstrip("/"), access, secret


class AdminClient:
    """Signs and sends admin API requests."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"
    ) -> None:
        self.endpoint = endpoint
        self._access_key, self._secret_key = access_key, secret_key
        self._region = region

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Send a signed request; returns the decoded JSON (None for 204)."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        data = json.dumps(body).encode() if body is not None else b""
        url, headers = self._signed(method, path, data, body is not None, params)
        try:
            response = httpx.request(method, url, content=data, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.endpoint}: {exc}") from exc
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = {"code": str(response.status_code), "message": response.text[:200]}
        if response.status_code >= 400:
            raise _error(response.status_code, payload)
        return payload

    @contextlib.contextmanager
    def stream(self, path: str, params: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """A signed GET whose body is read as it arrives (``iter_bytes``, ``iter_lines``)."""
        import httpx  # noqa: PLC0415 - see the module's docstring

        url, headers = self._signed("GET", path, b"", False, params)
        timeout = httpx.Timeout(STREAM_CONNECT_S, read=STREAM_READ_S)
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        payload = response.json()
                    except ValueError:
                        payload = {"message": response.text[:200]}
                    raise _error(response.status_code, payload)
                yield response
        except httpx.HTTPError as exc:
            raise AdminError(f"transfer from {self.endpoint} failed: {exc}") from exc

    def _signed(
        self, method: str, path: str, data: bytes, is_json: bool, params: dict[str, str] | None
    ) -> tuple[str, dict[str, str]]:
        import httpx  # noqa: PLC0415 - see the module's docstring
        from botocore.auth import S3SigV4Auth  # noqa: PLC0415
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415
        from botocore.credentials import Credentials  # noqa: PLC0415

        url = self.endpoint + ADMIN_PREFIX + path
        if params:
            url += "?" + httpx.QueryParams(params).__str__()
        headers = {"content-type": "application/json"} if is_json else {}
        aws_request = AWSRequest(method=method, url=url, data=data, headers=headers)
        creds = Credentials(self._access_key, self._secret_key)
        S3SigV4Auth(creds, "s3", self._region).add_auth(aws_request)
        return url, dict(aws_request.headers.items())


def _error(status: int, payload: object) -> AdminError:
    # Domain errors carry code and message; FastAPI's own (422) carry only detail.
    if not isinstance(payload, dict):
        payload = {}
    code = payload.get("code", status)
    return AdminError(f"{code}: {payload.get('message') or payload.get('detail')}")
