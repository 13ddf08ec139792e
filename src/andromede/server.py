"""``andromede serve``: prepare the data dir, start the audit writer and the workers."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

from andromede.audit_process import AuditWriterProcess, writer_socket
from andromede.localfiles import RootCredentials, prepare_data_dir, write_server_info
from andromede.settings import Settings, load_settings, warn_unknown_env

# uvicorn's supervisor pings each worker every half second and kills one that does not answer
# within this many seconds. Its default, 5 s, is shorter than a worker's start on a busy
# machine (interpreter, imports, opening the store: over a second of CPU, so 5 s of wall time
# or more when the cores are shared): on a loaded 2-core machine it killed workers still
# importing in 10 of 30 restarts, each kill starting that work over, and a restart after a
# crash took 24 s (median, up to 53 s). Killing a slow starter never helps; the ping only
# needs to catch a process that is truly hung (its answer comes from a thread of its own, so
# a blocked event loop still answers). 30 s is ample margin for a slow start and still
# replaces a hung worker well within a service manager's stop timeout (the supervisor also
# handles signals only between pings, so a hung worker delays a shutdown by at most this much).
WORKER_HEALTHCHECK_S = 30


def _snippet(creds: RootCredentials, endpoint: str, region: str) -> str:
    return f"""
Andromède: first start. Operator credentials (stored with mode 0600 in the data dir;
shown only this once):

  access key: {creds.access_key_id}
  secret key: {creds.secret_key}

aws CLI:
  aws configure set aws_access_key_id {creds.access_key_id}
  aws configure set aws_secret_access_key {creds.secret_key}
  aws configure set region {region}
  aws --endpoint-url {endpoint} s3 mb s3://my-first-bucket

rclone (~/.config/rclone/rclone.conf):
  [andromede]
  type = s3
  provider = Other
  access_key_id = {creds.access_key_id}
  secret_access_key = {creds.secret_key}
  endpoint = {endpoint}
  region = {region}
"""


def run(data_dir: Path | None, address: str | None, workers: int | None) -> None:
    """Start the server in the foreground until interrupted.

    This process loads no more than the settings and uvicorn: the workers load the server
    (about a second of CPU each), and on a single host the first of them sweeps what a crash
    left behind before any of them serves (``workers/lease.py``).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Everything the server creates (metadata with credentials, blobs) is for its user only.
    os.umask(0o077)
    # Once, here: the workers inherit the same environment.
    warn_unknown_env()
    settings = load_settings(data_dir=data_dir, address=address, workers=workers)
    # Workers are separate processes: hand them the resolved settings through the environment.
    os.environ["ANDROMEDE_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["ANDROMEDE_ADDRESS"] = settings.address
    os.environ["ANDROMEDE_WORKERS"] = str(settings.workers)
    if settings.embedded:
        os.environ["ANDROMEDE_START_TOKEN"] = secrets.token_hex(16)
    writer = None
    if settings.audit_sink == "trail" and settings.audit_writer_process:
        # Started, not waited for: it is ready before the workers need it (see launch()).
        writer = AuditWriterProcess(writer_socket(settings))
        os.environ["ANDROMEDE_AUDIT_WRITER_SOCKET"] = str(writer.socket_path)
        writer.launch()
    try:
        creds, created = prepare_data_dir(settings.data_dir)
        endpoint = f"http://{settings.address}"
        if created:
            sys.stdout.write(_snippet(creds, endpoint, settings.region))
            sys.stdout.flush()
        write_server_info(settings.data_dir, endpoint)
        _serve(settings)
    finally:
        if writer is not None:
            writer.stop()


def _serve(settings: Settings) -> None:
    import uvicorn  # noqa: PLC0415 - loaded while the audit writer starts

    proxies = settings.proxies

    uvicorn.run(
        "andromede.gateway:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_keep_alive=30,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        server_header=False,
        date_header=False,
        # The audit trail records the peer's address: a client must not choose it through
        # X-Forwarded-For (uvicorn trusts it from 127.0.0.1 by default). Only the load
        # balancers named in trusted_proxies may say who the client is.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
