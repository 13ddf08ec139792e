"""Store a first object in a server started by the README's quick start, as a newcomer would.

Standard library only, so it runs under a stock Debian /usr/bin/python3 with nothing installed:
the point is to check what the quick start gives a new user, not what our venv has. It waits
for the server (its health endpoint), takes the operator credentials the server printed at first
start, and with them creates a bucket, PUTs an object, and reads it back, SigV4-signed as any S3
client signs.

    python3 .ci/first_object.py DATA_DIR SERVER_LOG SERVER_PID [TIMEOUT_S]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

HEALTH_PATH = "/_andromede/health"
BUCKET = "quickstart"
KEY = "first-object.txt"
BODY = b"stored by the README's quick start\n"
REGION = "us-east-1"


def wait_for_server(data_dir: Path, pid: int, timeout_s: float) -> str:
    """The endpoint, once the server answers its health check; fails if the quick start's
    commands exit first (an install that failed, say) or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            sys.exit("the quick start's commands exited before the server answered")
        info = data_dir / "server.json"
        if info.exists():
            endpoint = str(json.loads(info.read_text(encoding="utf-8"))["endpoint"])
            try:
                with urllib.request.urlopen(endpoint + HEALTH_PATH, timeout=5) as resp:
                    if resp.status == 200:
                        return endpoint
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(1)
    sys.exit(f"the server did not answer {HEALTH_PATH} within {timeout_s:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def printed_credentials(server_log: Path) -> tuple[str, str]:
    """The access key and secret the server printed at first start."""
    text = server_log.read_text(encoding="utf-8", errors="replace")
    access = re.search(r"^\s*access key: (\S+)$", text, re.MULTILINE)
    secret = re.search(r"^\s*secret key: (\S+)$", text, re.MULTILINE)
    if access is None or secret is None:
        sys.exit("the server did not print operator credentials at first start")
    return access.group(1), secret.group(1)


def signed(method: str, url: str, body: bytes, access: str, secret: str) -> urllib.request.Request:
    """A request signed with AWS Signature Version 4 (header form, path-style URL)."""
    parts = urlsplit(url)
    now = dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now:%Y%m%d}/{REGION}/s3/aws4_request"
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            "",  # no query string
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            names,
            payload_hash,
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for part in (f"{now:%Y%m%d}", REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={names}, "
        f"Signature={signature}"
    )
    return urllib.request.Request(url, data=body or None, method=method, headers=headers)


def call(method: str, url: str, body: bytes, access: str, secret: str) -> bytes:
    """One signed request; any status but 200 stops the check with the server's answer."""
    try:
        with urllib.request.urlopen(signed(method, url, body, access, secret), timeout=60) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as exc:
        sys.exit(f"{method} {url}: {exc.code} {exc.read().decode(errors='replace')}")


def main() -> None:
    data_dir, server_log, pid = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 900.0
    endpoint = wait_for_server(data_dir, pid, timeout_s)
    access, secret = printed_credentials(server_log)
    call("PUT", f"{endpoint}/{BUCKET}", b"", access, secret)
    call("PUT", f"{endpoint}/{BUCKET}/{KEY}", BODY, access, secret)
    got = call("GET", f"{endpoint}/{BUCKET}/{KEY}", b"", access, secret)
    if got != BODY:
        sys.exit(f"read back {got!r}, stored {BODY!r}")
    print(f"first object stored and read back: s3://{BUCKET}/{KEY} at {endpoint}")


if __name__ == "__main__":
    main()
