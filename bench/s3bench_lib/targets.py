"""What is measured: an endpoint given on the command line, andromede started here, or a peer.

Also the bucket's life around a measurement: created, filled and emptied through botocore.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session

from .client import S3Raw
from .common import REGION, REPO, BenchError
from .figures import Figure, Plan, Result
from .measure import bench_endpoint, run_async

# --------------------------------------------------------------------------------------------
# Targets: an endpoint given on the command line, andromede started here, or a peer.


@dataclasses.dataclass
class Target:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path | None = None
    stop: Callable[[], None] | None = None
    info: dict[str, str] = dataclasses.field(default_factory=dict)
    pid: int | None = None  # the server's main process, when started here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def start_andromede(
    workdir: Path,
    extra_args: list[str],
    log: Callable[[str], None],
    *,
    name: str = "andromede",
    env: dict[str, str] | None = None,
) -> Target:
    """`andromede serve` on WORKDIR/NAME-data (log WORKDIR/NAME.log), `env` added to ours."""
    exe = shutil.which("andromede")
    cmd = [exe] if exe else [sys.executable, "-c", "from andromede.cli.main import main; main()"]
    port = _free_port()
    data = workdir / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    ak = "BENCH" + secrets.token_hex(8).upper()
    sk = secrets.token_urlsafe(30)
    penv = dict(os.environ, **(env or {}))
    penv.update(ANDROMEDE_ROOT_ACCESS_KEY=ak, ANDROMEDE_ROOT_SECRET_KEY=sk)
    argv = [*cmd, "serve", "--data-dir", str(data), "--address", f"127.0.0.1:{port}"]
    argv += extra_args
    logfile = workdir / f"{name}.log"
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    log(f"starting: {shown + ' ' if shown else ''}{' '.join(argv)}  (log {logfile})")
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=penv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    deadline = time.monotonic() + 90
    while not _listening("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            tail = logfile.read_text(errors="replace")[-3000:]
            raise BenchError(f"andromede did not start (exit {proc.returncode}):\n{tail}")
        time.sleep(0.2)
    return Target(name, f"http://127.0.0.1:{port}", ak, sk, data, stop, dict(env or {}), proc.pid)


def peers_dir() -> Path:
    env = os.environ.get("ANDROMEDE_PEERS_DIR")
    default = [REPO.parent / "shared" / "peers", Path("/work/shared/peers")]
    for cand in [Path(env)] if env else default:
        if (cand / "README.md").exists() or (cand / "ceph").is_dir():
            return cand
    raise BenchError("peers not found: set ANDROMEDE_PEERS_DIR (a copy of shared/peers)")


PEER_PORTS = {"swift": ("SWIFT_PROXY_PORT", 18080), "ceph": ("CEPH_RGW_PORT", 17480)}


def start_peer(name: str, log: Callable[[str], None]) -> Target:
    if name not in PEER_PORTS:
        raise BenchError(f"unknown peer {name!r} (swift, ceph)")
    pdir = peers_dir() / name
    env_port, default_port = PEER_PORTS[name]
    was_running = _listening("127.0.0.1", int(os.environ.get(env_port, default_port)))
    log(f"starting peer: bash {pdir / 'start.sh'}" + (" (already running)" if was_running else ""))
    proc = subprocess.run(
        ["bash", str(pdir / "start.sh")],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"{pdir / 'start.sh'} failed with exit status {proc.returncode}")
    info: dict[str, str] = {
        m[1]: m[2] for m in re.finditer(r"^([A-Z0-9_]+)=(\S*)", proc.stdout, flags=re.MULTILINE)
    }
    missing = {"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"} - set(info)
    if missing:
        raise BenchError(f"{name}/start.sh printed no {', '.join(sorted(missing))}")
    data: Path | None = None
    if "SWIFT_WORK" in info:
        data = Path(info["SWIFT_WORK"])
    elif "CEPH_CONF" in info:
        data = Path(info["CEPH_CONF"]).parent

    def stop() -> None:
        if not was_running:
            log(f"stopping peer: bash {pdir / 'stop.sh'}")
            subprocess.run(["bash", str(pdir / "stop.sh")], stdin=subprocess.DEVNULL, check=False)

    return Target(
        name, info["S3_ENDPOINT"], info["S3_ACCESS_KEY"], info["S3_SECRET_KEY"], data, stop, info
    )


# --------------------------------------------------------------------------------------------
# Bucket setup and cleanup through botocore.


def botocore_client(t: Target) -> Any:
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=8,
    )
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=t.endpoint,
        aws_access_key_id=t.access_key,
        aws_secret_access_key=t.secret_key,
        region_name=REGION,
        config=cfg,
    )

    def add_md5(params: dict[str, Any], **_: Any) -> None:
        # Swift 2.30's s3api wants Content-MD5 on DeleteObjects (see shared/peers/README.md).
        body = params["body"]
        if isinstance(body, bytes | bytearray):
            params["headers"]["Content-MD5"] = base64.b64encode(
                hashlib.md5(body, usedforsecurity=False).digest()
            ).decode()

    client.meta.events.register("before-call.s3.DeleteObjects", add_md5)
    return client


def wait_ready(client: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"endpoint not ready: {exc}") from exc
            time.sleep(0.5)


def empty_and_delete(client: Any, bucket: str, log: Callable[[str], None]) -> None:
    t0 = time.perf_counter()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    batches = [
        [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for page in pages
        if page.get("Contents")
    ]

    def delete(objs: list[dict[str, str]]) -> None:
        out = client.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
        if out.get("Errors"):
            raise BenchError(f"DeleteObjects: {out['Errors'][:3]}")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(delete, batches))
    client.delete_bucket(Bucket=bucket)
    n = sum(len(b) for b in batches)
    log(f"  cleanup: deleted {n} objects and the bucket in {time.perf_counter() - t0:.1f} s")


@contextlib.contextmanager
def bench_bucket(
    t: Target, log: Callable[[str], None], *, cleanup: bool = True, location: str | None = None
) -> Iterator[S3Raw]:
    """A fresh bucket on `t` (with LocationConstraint `location`, if given) and a raw client
    for it; emptied and deleted after if `cleanup`."""
    client = botocore_client(t)
    wait_ready(client)
    bucket = "s3bench-" + secrets.token_hex(6)
    if location is None:
        client.create_bucket(Bucket=bucket)
    else:
        conf = {"LocationConstraint": location}
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration=conf)
    try:
        yield S3Raw(t.endpoint, t.access_key, t.secret_key, bucket)
    finally:
        if cleanup:
            empty_and_delete(client, bucket, log)


def bench_target(
    t: Target, plan: Plan, figs: list[Figure], log: Callable[[str], None]
) -> dict[str, Result]:
    with bench_bucket(t, log) as raw:
        return run_async(bench_endpoint(raw, plan, "b", figs, log))
