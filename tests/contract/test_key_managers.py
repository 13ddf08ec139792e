"""The ``KeyManager`` contract, run against every implementation: the built-in keystore, a
SoftHSM2 token through PKCS#11, and a PyKMIP server. Then what only one of them promises
(files and modes of the keystore, attributes of the key on the token) and the factory."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from andromede.core.errors import DecryptionFailed, KeyManagerUnavailable, KmsNotFound
from andromede.kms.builtin import BuiltinKeystore, KeystoreError
from andromede.kms.factory import open_key_managers
from andromede.kms.pkcs11 import Pkcs11KeyManager
from andromede.ports import KeyManager

AAD = b"tenant=acme;key=k1;object=photos/cat.jpg"


@dataclass
class Backend:
    """One key manager implementation; ``open`` gives a new instance over the same keys (a
    restarted process, or another gateway)."""

    kind: str
    open: Callable[[], KeyManager]


@pytest.fixture(params=["builtin", "pkcs11", "kmip"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "builtin":
        return Backend("builtin", lambda: BuiltinKeystore(tmp_path / "keystore"))
    if request.param == "pkcs11":
        config: Mapping[str, str] = request.getfixturevalue("softhsm_token")
        return Backend("pkcs11", lambda: Pkcs11KeyManager.from_config("hsm", config))
    kmip_config: Mapping[str, str] = request.getfixturevalue("kmip_server")
    from andromede.kms.kmip import KmipKeyManager

    return Backend("kmip", lambda: KmipKeyManager.from_config("kmip", kmip_config))


@pytest.fixture
async def open_manager(backend: Backend) -> AsyncIterator[Callable[[], KeyManager]]:
    """Opens managers over the backend; every one is closed after the test."""
    opened: list[KeyManager] = []

    def open_() -> KeyManager:
        manager = backend.open()
        opened.append(manager)
        return manager

    yield open_
    for manager in opened:
        await manager.close()


@pytest.fixture
def manager(open_manager: Callable[[], KeyManager]) -> KeyManager:
    return open_manager()


def new_dek() -> bytes:
    return secrets.token_bytes(32)


# --- the contract -----------------------------------------------------------------------------
async def test_wrap_unwrap_round_trip(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    dek = new_dek()
    wrapped = await manager.wrap(handle, dek, AAD)
    assert await manager.unwrap(handle, wrapped, AAD) == dek


async def test_wrapped_is_fresh_each_time_and_hides_the_dek(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    dek = new_dek()
    first, second = await manager.wrap(handle, dek, AAD), await manager.wrap(handle, dek, AAD)
    assert first != second
    assert dek not in first
    assert dek not in second
    assert await manager.unwrap(handle, second, AAD) == dek


async def test_wrong_aad_fails(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    wrapped = await manager.wrap(handle, new_dek(), AAD)
    for aad in (AAD + b"x", AAD[:-1], b""):
        with pytest.raises(DecryptionFailed):
            await manager.unwrap(handle, wrapped, aad)


async def test_tampered_wrapped_fails(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    dek = new_dek()
    wrapped = await manager.wrap(handle, dek, AAD)
    tampered = [wrapped[:-1], wrapped + b"\x00", b"", wrapped[: len(wrapped) // 2]]
    for index in (0, len(wrapped) // 2, len(wrapped) - 1):
        flipped = bytearray(wrapped)
        flipped[index] ^= 0x01
        tampered.append(bytes(flipped))
    for bad in tampered:
        with pytest.raises(DecryptionFailed):
            await manager.unwrap(handle, bad, AAD)
    assert await manager.unwrap(handle, wrapped, AAD) == dek  # the key still works


async def test_a_dek_wrapped_under_one_key_does_not_unwrap_under_another(
    manager: KeyManager,
) -> None:
    first, second = await manager.create_key("acme/k1/1"), await manager.create_key("acme/k2/1")
    assert first != second
    wrapped = await manager.wrap(first, new_dek(), AAD)
    with pytest.raises(DecryptionFailed):
        await manager.unwrap(second, wrapped, AAD)


async def test_handles_are_distinct_short_text(manager: KeyManager) -> None:
    handles = [await manager.create_key(f"acme/k{n}/1") for n in range(5)]
    assert len(set(handles)) == 5
    assert all(isinstance(h, str) and 0 < len(h) <= 200 for h in handles)


async def test_a_destroyed_key_is_gone(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    wrapped = await manager.wrap(handle, new_dek(), AAD)
    await manager.destroy_key(handle)
    with pytest.raises(KmsNotFound):
        await manager.unwrap(handle, wrapped, AAD)
    with pytest.raises(KmsNotFound):
        await manager.wrap(handle, new_dek(), AAD)
    await manager.destroy_key(handle)  # twice is fine


@pytest.mark.parametrize(
    "handle",
    [
        "no-such-key",
        "0" * 32,
        "andromede-" + "0" * 32,
        "99999999",
        "../../etc/passwd",
        "../master",
        "",
    ],
)
async def test_an_unknown_handle_is_not_found(manager: KeyManager, handle: str) -> None:
    real = await manager.create_key("acme/k1/1")
    wrapped = await manager.wrap(real, new_dek(), AAD)
    with pytest.raises(KmsNotFound):
        await manager.wrap(handle, new_dek(), AAD)
    with pytest.raises(KmsNotFound):
        await manager.unwrap(handle, wrapped, AAD)
    await manager.destroy_key(handle)  # nothing to destroy is fine


async def test_another_instance_sees_the_same_keys(
    open_manager: Callable[[], KeyManager],
) -> None:
    first = open_manager()
    handle = await first.create_key("acme/k1/1")
    dek = new_dek()
    wrapped = await first.wrap(handle, dek, AAD)
    await first.close()  # as after a restart

    restarted = open_manager()
    assert await restarted.unwrap(handle, wrapped, AAD) == dek
    other = open_manager()  # another gateway, alive at the same time
    assert await other.unwrap(handle, wrapped, AAD) == dek
    await other.destroy_key(handle)
    with pytest.raises(KmsNotFound):
        await restarted.unwrap(handle, wrapped, AAD)


async def test_concurrent_wraps_all_round_trip(manager: KeyManager) -> None:
    handle = await manager.create_key("acme/k1/1")
    deks = [new_dek() for _ in range(50)]
    aads = [AAD + str(n).encode() for n in range(50)]
    wrapped = await asyncio.gather(
        *(manager.wrap(handle, d, a) for d, a in zip(deks, aads, strict=True))
    )
    assert len(set(wrapped)) == 50
    unwrapped = await asyncio.gather(
        *(manager.unwrap(handle, w, a) for w, a in zip(wrapped, aads, strict=True))
    )
    assert unwrapped == deks


# --- built-in keystore ------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _unseals(master: bytes, blob: bytes, handle: str) -> bool:
    """Whether ``blob`` opens as a sealed KEK of ``handle`` (the documented format:
    ``b"AKEK\\x01" | nonce (12) | AES-GCM(master, aad=b"AKEK\\x01" | handle)``)."""
    header = b"AKEK\x01"
    if len(blob) < len(header) + 12 + 16:
        return False
    try:
        AESGCM(master).decrypt(blob[5:17], blob[17:], header + handle.encode())
    except InvalidTag:
        return False
    return True


def _files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


async def test_keystore_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "keystore"
    keystore = BuiltinKeystore(directory)
    handles = [await keystore.create_key(f"acme/k{n}/1") for n in range(3)]
    assert _mode(directory) == 0o700
    assert _mode(directory / "keys") == 0o700
    assert _mode(directory / "master.key") == 0o600
    keks = sorted((directory / "keys").glob("*.kek"))
    assert [p.stem for p in keks] == sorted(handles)
    assert all(_mode(p) == 0o600 for p in keks)
    assert not [p for p in _files(directory) if p.name.endswith(".tmp")]


async def test_keystore_holds_no_dek_and_nothing_unseals_a_destroyed_key(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "keystore"
    keystore = BuiltinKeystore(directory)
    doomed, kept = await keystore.create_key("acme/k1/1"), await keystore.create_key("acme/k2/1")
    deks = [new_dek() for _ in range(4)]
    for dek in deks:
        await keystore.wrap(doomed, dek, AAD)
        await keystore.wrap(kept, dek, AAD)
    for path in _files(directory):
        content = path.read_bytes()
        assert not any(dek in content for dek in deks), path

    await keystore.destroy_key(doomed)
    master = (directory / "master.key").read_bytes()
    blobs = [p.read_bytes() for p in _files(directory)]
    assert not any(_unseals(master, blob, doomed) for blob in blobs)
    # The same check finds the key that was kept, so it would have found the destroyed one.
    assert any(_unseals(master, blob, kept) for blob in blobs)


async def test_keystore_concurrent_first_starts_agree_on_the_master_key(tmp_path: Path) -> None:
    directory = tmp_path / "keystore"
    barrier = threading.Barrier(8)
    opened: list[BuiltinKeystore] = []

    def start() -> None:
        barrier.wait()
        opened.append(BuiltinKeystore(directory))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 8
    handle = await opened[0].create_key("acme/k1/1")
    dek = new_dek()
    wrapped = await opened[0].wrap(handle, dek, AAD)
    for keystore in opened:
        assert await keystore.unwrap(handle, wrapped, AAD) == dek
    assert not [p for p in _files(directory) if p.name.endswith(".tmp")]


def _passphrase(tmp_path: Path, text: str, name: str = "passphrase") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


async def test_keystore_with_a_passphrase(tmp_path: Path) -> None:
    directory = tmp_path / "keystore"
    passphrase = _passphrase(tmp_path, "correct horse battery staple")
    keystore = BuiltinKeystore(directory, passphrase)
    handle = await keystore.create_key("acme/k1/1")
    dek = new_dek()
    wrapped = await keystore.wrap(handle, dek, AAD)
    assert not (directory / "master.key").exists()
    assert _mode(directory / "master.salt") == 0o600
    assert _mode(directory / "master.check") == 0o600

    restarted = BuiltinKeystore(directory, passphrase)
    assert await restarted.unwrap(handle, wrapped, AAD) == dek

    wrong = _passphrase(tmp_path, "correct horse battery stapler", "wrong")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        BuiltinKeystore(directory, wrong)
    with pytest.raises(KeystoreError, match="passphrase"):
        BuiltinKeystore(directory)  # the key-file mode would mint a new master key
    assert not (directory / "master.key").exists()


async def test_keystore_refuses_to_replace_a_lost_master_key(tmp_path: Path) -> None:
    directory = tmp_path / "keystore"
    keystore = BuiltinKeystore(directory)
    handle = await keystore.create_key("acme/k1/1")
    with pytest.raises(KeystoreError, match="passphrase"):
        BuiltinKeystore(directory, _passphrase(tmp_path, "anything"))
    (directory / "master.key").unlink()
    with pytest.raises(KeystoreError, match=r"master\.key is missing"):
        BuiltinKeystore(directory)
    assert (directory / "keys" / f"{handle}.kek").exists()


async def test_keystore_sealed_key_moved_to_another_handle_does_not_open(tmp_path: Path) -> None:
    directory = tmp_path / "keystore"
    keystore = BuiltinKeystore(directory)
    first, second = await keystore.create_key("a"), await keystore.create_key("b")
    wrapped = await keystore.wrap(first, new_dek(), AAD)
    keys = directory / "keys"
    (keys / f"{first}.kek").replace(keys / f"{second}.kek")
    with pytest.raises(DecryptionFailed):
        await keystore.unwrap(second, wrapped, AAD)


# --- PKCS#11 ----------------------------------------------------------------------------------
_READ_ATTRIBUTES = """
import json, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
library, label, pin, handle = sys.argv[1:]
token = pkcs11.lib(library).get_token(token_label=label)
with token.open(user_pin=pin) as session:
    key = session.get_key(ObjectClass.SECRET_KEY, label=handle)
    names = ["TOKEN", "PRIVATE", "SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE",
             "NEVER_EXTRACTABLE", "ENCRYPT", "DECRYPT", "WRAP", "UNWRAP", "SIGN", "DERIVE"]
    attrs = {name: bool(key[getattr(Attribute, name)]) for name in names}
    attrs["VALUE_LEN"] = key[Attribute.VALUE_LEN]
    try:
        key[Attribute.VALUE]
        attrs["VALUE_READABLE"] = True
    except pkcs11.exceptions.AttributeSensitive:
        attrs["VALUE_READABLE"] = False
print(json.dumps(attrs))
"""


@pytest.fixture
def hsm_config(request: pytest.FixtureRequest) -> Mapping[str, str]:
    config: Mapping[str, str] = request.getfixturevalue("softhsm_token")
    return config


@pytest.fixture
def hsm_pin(hsm_config: Mapping[str, str]) -> str:
    return Path(hsm_config["pin_file"]).read_text(encoding="utf-8").strip()


def _read_key_attributes(config: Mapping[str, str], pin: str, handle: str) -> object:
    """The key's attributes, read by another process with its own login."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _READ_ATTRIBUTES,
            *(config["library"], config["token_label"], pin, handle),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(result.stdout)


async def test_pkcs11_key_is_a_sensitive_non_extractable_token_object(
    hsm_config: Mapping[str, str], hsm_pin: str
) -> None:
    manager = Pkcs11KeyManager.from_config("hsm", hsm_config)
    try:
        handle = await manager.create_key("acme/k1/1")
    finally:
        await manager.close()
    # Read from another process: the key persists beyond this one's session.
    attrs = await asyncio.to_thread(_read_key_attributes, hsm_config, hsm_pin, handle)
    assert attrs == {
        "TOKEN": True,
        "PRIVATE": True,
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
        "ENCRYPT": True,
        "DECRYPT": True,
        "WRAP": False,
        "UNWRAP": False,
        "SIGN": False,
        "DERIVE": False,
        "VALUE_LEN": 32,
        "VALUE_READABLE": False,
    }


@pytest.mark.parametrize(
    "override",
    [
        {"library": "/nonexistent/libpkcs11.so"},
        {"token_label": "no-such-token"},
        {"pin": "0000"},
    ],
    ids=["library", "token", "pin"],
)
async def test_pkcs11_misconfiguration_is_unavailable(
    hsm_config: Mapping[str, str], hsm_pin: str, override: dict[str, str]
) -> None:
    settings = {
        "library": hsm_config["library"],
        "token_label": hsm_config["token_label"],
        "pin": hsm_pin,
    } | override
    manager = Pkcs11KeyManager("hsm", **settings)
    try:
        for _ in range(2):  # a rejected PIN is not retried, but keeps failing the same way
            with pytest.raises(KeyManagerUnavailable):
                await manager.create_key("acme/k1/1")
    finally:
        await manager.close()


# --- factory ----------------------------------------------------------------------------------
def test_factory_builds_the_builtin_keystore_and_configured_managers(
    tmp_path: Path, hsm_config: Mapping[str, str]
) -> None:
    managers = open_key_managers(tmp_path / "keystore", None, {"hsm": hsm_config})
    assert sorted(managers) == ["builtin", "hsm"]
    assert isinstance(managers["builtin"], BuiltinKeystore)
    assert isinstance(managers["hsm"], Pkcs11KeyManager)
    assert managers["hsm"].name == "hsm"
    assert managers["builtin"].name == "builtin"


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({"builtin": {"type": "pkcs11"}}, "reserved"),
        ({"x": {"type": "vault"}}, "type 'vault'"),
        ({"x": {}}, "type None"),
    ],
)
def test_factory_rejects_bad_configs(
    tmp_path: Path, configs: dict[str, dict[str, str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        open_key_managers(tmp_path / "keystore", None, configs)
