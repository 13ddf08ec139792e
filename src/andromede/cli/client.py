"""A small signed HTTP client for the admin API (SigV4, as S3 clients sign)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from andromede.localfiles import read_credentials, read_server_endpoint

ADMIN_PREFIX = "/_andromede/admin"
DEFAULT_ENDPOINT = "http://127.0.0.1:9000"


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
        self._creds = Credentials(access_key, secret_key)
        self._region = region

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Send a signed request; returns the decoded JSON (None for 204)."""
        url = self.endpoint + ADMIN_PREFIX + path
        if params:
            url += "?" + httpx.QueryParams(params).__str__()
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"content-type": "application/json"} if body is not None else {}
        aws_request = AWSRequest(method=method, url=url, data=data, headers=headers)
        S3SigV4Auth(self._creds, "s3", self._region).add_auth(aws_request)
        try:
            response = httpx.request(
                method, url, content=data, headers=dict(aws_request.headers.items()), timeout=30
            )
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.endpoint}: {exc}") from exc
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = {"code": str(response.status_code), "message": response.text[:200]}
        if response.status_code >= 400:
            # Domain errors carry code and message; FastAPI's own (422) carry only detail.
            code = payload.get("code", response.status_code)
            raise AdminError(f"{code}: {payload.get('message') or payload.get('detail')}")
        return payload
