"""What only the KMIP key manager promises, against a real PyKMIP server: the wrapped format,
TLS trust, client identities, and how it behaves when the server goes away, hangs or restarts.
The ``KeyManager`` contract itself runs in ``test_key_managers.py``."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from andromede.core.errors import DecryptionFailed, KeyManagerUnavailable, KmsNotFound
from andromede.kms.kmip import KmipKeyManager
from support.kmip import (
    issue_client_certificate,
    kmip_server,  # noqa: F401  (session fixture)
    start_kmip_server,
    stop_kmip_server,
    write_certificates,
)

AAD = b"tenant=acme;key=k1;object=photos/cat.jpg"
DEK = bytes(range(32))


@dataclass
class PrivateServer:
    """A server of this test alone, to stop, freeze or restart."""

    directory: Path
    process: subprocess.Popen[bytes]
    config: dict[str, str]

    def restart(self) -> None:
        stop_kmip_server(self.process)
        self.process, self.config = start_kmip_server(self.directory, int(self.config["port"]))


@pytest.fixture
def kmip(request: pytest.FixtureRequest) -> Mapping[str, str]:
    """The session's server (``support.kmip.kmip_server``): its client configuration."""
    config: Mapping[str, str] = request.getfixturevalue("kmip_server")
    return config


@pytest.fixture
def private_server(tmp_path: Path, kmip: Mapping[str, str]) -> Iterator[PrivateServer]:
    # Depends on the session server only for its skip-or-fail when PyKMIP is missing.
    process, config = start_kmip_server(tmp_path / "kmip")
    server = PrivateServer(tmp_path / "kmip", process, config)
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGCONT)
        stop_kmip_server(server.process)


@pytest.fixture
async def open_manager() -> AsyncIterator[Callable[..., KmipKeyManager]]:
    opened: list[KmipKeyManager] = []

    def open_(config: Mapping[str, str], **overrides: str) -> KmipKeyManager:
        manager = KmipKeyManager.from_config("kmip", {**config, **overrides})
        opened.append(manager)
        return manager

    yield open_
    for manager in opened:
        await manager.close()


@pytest.fixture
def manager(open_manager: Callable[..., KmipKeyManager], kmip: Mapping[str, str]) -> KmipKeyManager:
    return open_manager(kmip)


async def test_wrapped_is_version_iv_ciphertext_tag(manager: KmipKeyManager) -> None:
    handle = await manager.create_key("tenant-acme/format")
    first = await manager.wrap(handle, DEK, AAD)
    second = await manager.wrap(handle, DEK, AAD)
    assert len(first) == 1 + 12 + len(DEK) + 16
    assert first[0] == 1
    assert first[1:13] != second[1:13], "each wrap draws a fresh IV"
    assert DEK not in first
    assert await manager.unwrap(handle, second, AAD) == DEK


async def test_every_altered_byte_fails_authentication(manager: KmipKeyManager) -> None:
    handle = await manager.create_key("tenant-acme/tamper")
    wrapped = await manager.wrap(handle, DEK, AAD)
    with pytest.raises(DecryptionFailed):
        await manager.unwrap(handle, wrapped, AAD + b"!")
    for index in (1, 13, len(wrapped) - 1):  # IV, ciphertext, tag
        altered = bytearray(wrapped)
        altered[index] ^= 0x01
        with pytest.raises(DecryptionFailed):
            await manager.unwrap(handle, bytes(altered), AAD)
    for malformed in (b"\x02" + wrapped[1:], wrapped[:29], b""):
        with pytest.raises(DecryptionFailed):
            await manager.unwrap(handle, malformed, AAD)
    assert await manager.unwrap(handle, wrapped, AAD) == DEK


async def test_destroyed_key_is_not_found_and_destroy_is_idempotent(
    manager: KmipKeyManager,
) -> None:
    handle = await manager.create_key("tenant-acme/destroy")
    wrapped = await manager.wrap(handle, DEK, AAD)
    await manager.destroy_key(handle)
    await manager.destroy_key(handle)
    with pytest.raises(KmsNotFound):
        await manager.unwrap(handle, wrapped, AAD)
    with pytest.raises(KmsNotFound):
        await manager.wrap(handle, DEK, AAD)


@pytest.mark.parametrize("handle", ["", "x" * 201, "1\n", "999999"])
async def test_handles_naming_no_key_are_not_found(manager: KmipKeyManager, handle: str) -> None:
    with pytest.raises(KmsNotFound):
        await manager.wrap(handle, DEK, AAD)
    await manager.destroy_key(handle)


async def test_another_instance_unwraps_with_credentials(
    open_manager: Callable[..., KmipKeyManager], kmip: Mapping[str, str], tmp_path: Path
) -> None:
    password_file = tmp_path / "kmip-password"
    password_file.write_text("s3cret\n")
    first = open_manager(kmip)
    second = open_manager(kmip, username="andromede", password_file=str(password_file))
    handle = await first.create_key("tenant-acme/shared")
    assert await second.unwrap(handle, await first.wrap(handle, DEK, AAD), AAD) == DEK


async def test_keys_of_another_client_identity_are_not_found(
    open_manager: Callable[..., KmipKeyManager], kmip: Mapping[str, str]
) -> None:
    owner = open_manager(kmip)
    handle = await owner.create_key("tenant-acme/private")
    wrapped = await owner.wrap(handle, DEK, AAD)
    other = issue_client_certificate(Path(kmip["ca_file"]).parent, "other-gateway")
    stranger = open_manager(kmip, **other)
    with pytest.raises(KmsNotFound):
        await stranger.unwrap(handle, wrapped, AAD)
    await stranger.destroy_key(handle)
    assert await owner.unwrap(handle, wrapped, AAD) == DEK


async def test_a_server_certificate_from_another_ca_is_refused(
    open_manager: Callable[..., KmipKeyManager], kmip: Mapping[str, str], tmp_path: Path
) -> None:
    foreign = write_certificates(tmp_path / "foreign")
    manager = open_manager(kmip, ca_file=str(foreign["ca_file"]))
    with pytest.raises(KeyManagerUnavailable):
        await manager.create_key("tenant-acme/mitm")


async def test_stopped_server_is_unavailable_quickly(
    open_manager: Callable[..., KmipKeyManager], private_server: PrivateServer
) -> None:
    manager = open_manager(private_server.config, timeout="2")
    handle = await manager.create_key("tenant-acme/stop")
    wrapped = await manager.wrap(handle, DEK, AAD)
    stop_kmip_server(private_server.process)
    started = time.monotonic()
    with pytest.raises(KeyManagerUnavailable):
        await manager.unwrap(handle, wrapped, AAD)
    with pytest.raises(KeyManagerUnavailable):
        await open_manager(private_server.config, timeout="2").wrap(handle, DEK, AAD)
    assert time.monotonic() - started < 4


async def test_hung_server_times_out(
    open_manager: Callable[..., KmipKeyManager], private_server: PrivateServer
) -> None:
    manager = open_manager(private_server.config, timeout="1")
    handle = await manager.create_key("tenant-acme/hang")
    wrapped = await manager.wrap(handle, DEK, AAD)
    os.killpg(private_server.process.pid, signal.SIGSTOP)
    for attempt in (manager, open_manager(private_server.config, timeout="1")):
        started = time.monotonic()
        with pytest.raises(KeyManagerUnavailable):
            await attempt.unwrap(handle, wrapped, AAD)
        assert time.monotonic() - started < 3
    os.killpg(private_server.process.pid, signal.SIGCONT)
    assert await open_manager(private_server.config).unwrap(handle, wrapped, AAD) == DEK


async def test_reconnects_after_a_server_restart(
    open_manager: Callable[..., KmipKeyManager], private_server: PrivateServer
) -> None:
    manager = open_manager(private_server.config)
    handle = await manager.create_key("tenant-acme/restart")
    wrapped = await manager.wrap(handle, secrets.token_bytes(32), AAD)
    private_server.restart()
    # The pooled connection died with the old process; the key lives on in its database.
    dek = await manager.unwrap(handle, wrapped, AAD)
    assert await manager.unwrap(handle, await manager.wrap(handle, dek, AAD), AAD) == dek
