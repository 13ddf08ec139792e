"""A throwaway KMIP server for tests: PyKMIP's reference server, spoken to over mutual TLS.

``start_kmip_server(directory)`` writes into ``directory`` a fresh CA, a server certificate
(``localhost`` and ``127.0.0.1``), a client certificate, the server's configuration, an empty
policy directory and its SQLite database path, then starts the server as a subprocess on a free
port and waits until it completes a TLS handshake. It returns the process and the mapping that
``KmipKeyManager.from_config`` reads. ``kmip_server`` is a session fixture built on it.

The server runs under the interpreter named by ``ANDROMEDE_KMIP_PYTHON`` (a virtualenv with its
own pinned PyKMIP, should ours ever stop running it), by default this one: PyKMIP 0.11 runs on
SQLAlchemy 2.x and current ``cryptography``, with deprecation warnings that the server's own
output absorbs (``-W ignore``: its warnings are not ours to fix).

Only TLS 1.2 with ECDHE-ECDSA AES-GCM suites is offered: PyKMIP's "TLS1.2" authentication
suite pins the protocol version, and an EC server key lets it pick an AEAD suite that every
current OpenSSL enables by default.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

START_TIMEOUT = 20.0
STOP_TIMEOUT = 0.5
CLIENT_IDENTITY = "andromede-test"
_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
)
_LAUNCHER = "import sys; from kmip.services.server.server import main; sys.exit(main())"


class KmipUnavailable(RuntimeError):
    """PyKMIP's server is not installed for the interpreter that would run it."""


def server_python() -> str:
    """The interpreter that runs the server (``ANDROMEDE_KMIP_PYTHON`` or this one)."""
    chosen = os.environ.get("ANDROMEDE_KMIP_PYTHON")
    if chosen:
        return chosen
    if importlib.util.find_spec("kmip") is None:
        raise KmipUnavailable("PyKMIP is not installed (pip install pykmip)")
    return sys.executable


def write_certificates(directory: Path) -> dict[str, Path]:
    """A CA (its key kept for :func:`issue_client_certificate`), a server certificate for
    localhost/127.0.0.1 and a client certificate, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Andromede test KMIP CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca_file": directory / "ca.pem", "ca_key": directory / "ca.key"}
    paths["ca_file"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["ca_key"], ca_key)
    server_names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    paths["server_cert"], paths["server_key"] = _issue(
        directory, "server", "localhost", ExtendedKeyUsageOID.SERVER_AUTH, server_names
    )
    paths["client_cert"], paths["client_key"] = _issue(
        directory, "client", CLIENT_IDENTITY, ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    return paths


def issue_client_certificate(certs_dir: Path, common_name: str) -> dict[str, str]:
    """Another client certificate from the CA in ``certs_dir``: another KMIP client identity
    (PyKMIP's server gives each identity its own objects). Returns ``cert_file``/``key_file``."""
    cert, key = _issue(certs_dir, common_name, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return {"cert_file": str(cert), "key_file": str(key)}


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> tuple[Path, Path]:
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(
        builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )
    _write_key(key_path, key)
    return cert_path, key_path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePublicKey,
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def start_kmip_server(
    directory: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start a KMIP server with its files in ``directory``; wait until it accepts TLS.

    Returns the server process (stop it with :func:`stop_kmip_server`) and the configuration
    for ``KmipKeyManager.from_config``: ``host``, ``port``, ``cert_file``, ``key_file``,
    ``ca_file``. Starting again in the same ``directory`` (with the same ``port``) restarts
    the same server: same certificates, same database, so the same keys. Raises
    :class:`KmipUnavailable` when PyKMIP is missing and RuntimeError, with the server's log,
    when it does not come up within :data:`START_TIMEOUT` seconds.
    """
    python = server_python()
    certs = directory / "certs"
    if (certs / "client.key").exists():
        paths = {
            "ca_file": certs / "ca.pem",
            "server_cert": certs / "server.pem",
            "server_key": certs / "server.key",
            "client_cert": certs / "client.pem",
            "client_key": certs / "client.key",
        }
    else:
        paths = write_certificates(certs)
    (directory / "policies").mkdir(exist_ok=True)
    # A free port can be taken between our probe and the server's bind: try a few.
    for _attempt in range(1 if port else 3):
        chosen = port or _free_port()
        config = {
            "host": "127.0.0.1",
            "port": str(chosen),
            "cert_file": str(paths["client_cert"]),
            "key_file": str(paths["client_key"]),
            "ca_file": str(paths["ca_file"]),
        }
        process = _launch(python, directory, paths, chosen)
        try:
            _wait_until_ready(process, config, directory)
        except _BindFailed:
            stop_kmip_server(process)
            continue
        except BaseException:
            stop_kmip_server(process)
            raise
        return process, config
    raise RuntimeError(f"KMIP server could not bind its port:\n{_logs(directory)}")


def stop_kmip_server(process: subprocess.Popen[bytes]) -> None:
    """Interrupt the server, then kill its process group (it forks helper processes)."""
    if process.poll() is None:
        # SIGINT, not SIGTERM: PyKMIP leaves its accept loop at once on KeyboardInterrupt,
        # while SIGTERM waits for the accept timeout (10 s). It then joins each client session
        # for up to 10 s; its database is committed at every operation, so the kill that
        # follows a short grace loses nothing.
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def kmip_server_running(directory: Path) -> Iterator[dict[str, str]]:
    """:func:`start_kmip_server` as a context manager yielding the client configuration."""
    process, config = start_kmip_server(directory)
    try:
        yield config
    finally:
        stop_kmip_server(process)


@pytest.fixture(scope="session")
def kmip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A KMIP server for the whole session: the ``KmipKeyManager.from_config`` mapping.

    Skips where PyKMIP is not installed, except under CI (``CI=true``), where it fails.
    """
    try:
        process, config = start_kmip_server(tmp_path_factory.mktemp("kmip"))
    except KmipUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the KMIP server is required under CI: {exc}")
        pytest.skip(f"KMIP server not available: {exc}")
    try:
        yield config
    finally:
        stop_kmip_server(process)


class _BindFailed(RuntimeError):
    """The server exited because its port was taken."""


def _launch(
    python: str, directory: Path, paths: dict[str, Path], port: int
) -> subprocess.Popen[bytes]:
    conf = directory / "server.conf"
    conf.write_text(
        "\n".join(
            [
                "[server]",
                "hostname=127.0.0.1",
                f"port={port}",
                f"certificate_path={paths['server_cert']}",
                f"key_path={paths['server_key']}",
                f"ca_path={paths['ca_file']}",
                "auth_suite=TLS1.2",
                f"tls_cipher_suites={' '.join(_CIPHER_SUITES)}",
                "enable_tls_client_auth=True",
                f"policy_path={directory / 'policies'}",
                f"database_path={directory / 'kmip.db'}",
                "logging_level=INFO",
                "",
            ]
        )
    )
    with (directory / "server.out").open("ab") as out:
        return subprocess.Popen(
            [
                python,
                "-W",
                "ignore",
                "-c",
                _LAUNCHER,
                "-f",
                str(conf),
                "-l",
                str(directory / "server.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
        )


def _wait_until_ready(
    process: subprocess.Popen[bytes], config: dict[str, str], directory: Path
) -> None:
    context = ssl.create_default_context(cafile=config["ca_file"])
    context.load_cert_chain(config["cert_file"], config["key_file"])
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = _logs(directory)
            if "ModuleNotFoundError" in logs and "kmip" in logs:
                raise KmipUnavailable(f"PyKMIP is not installed for the server:\n{logs}")
            if "failed to bind" in logs:
                raise _BindFailed(logs)
            raise RuntimeError(f"KMIP server exited with {process.returncode}:\n{logs}")
        try:
            with (
                socket.create_connection((config["host"], int(config["port"])), 2.0) as raw,
                context.wrap_socket(raw, server_hostname=config["host"]),
            ):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.1)
    raise RuntimeError(
        f"KMIP server did not accept TLS within {START_TIMEOUT:.0f} s "
        f"(last error: {last_error}):\n{_logs(directory)}"
    )


def _logs(directory: Path) -> str:
    parts = []
    for name in ("server.out", "server.log"):
        path = directory / name
        if path.exists():
            parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts) or "(no server output)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
