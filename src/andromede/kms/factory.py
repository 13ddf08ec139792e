"""Builds the configured key managers: always the built-in keystore, plus named HSMs and KMIP
servers from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from andromede.kms.builtin import NAME as BUILTIN
from andromede.kms.builtin import BuiltinKeystore
from andromede.ports import KeyManager

TYPES = ("pkcs11", "kmip")


def open_key_managers(
    keystore_dir: Path,
    passphrase_file: Path | None,
    configs: Mapping[str, Mapping[str, str]],
) -> dict[str, KeyManager]:
    """Every key manager by name: ``builtin`` (a BuiltinKeystore in ``keystore_dir``, its
    master key derived from ``passphrase_file`` when given) and one per entry of ``configs``,
    whose ``type`` is ``pkcs11`` or ``kmip``; the other entries are that type's settings.

    Raises ValueError for a config named ``builtin`` or of an unknown type, and
    ``andromede.kms.builtin.KeystoreError`` when the keystore cannot be opened (wrong
    passphrase). PKCS#11 tokens are opened at their first use, not here.
    """
    for name, config in configs.items():
        if name == BUILTIN:
            raise ValueError(f"key manager name {BUILTIN!r} is reserved for the built-in keystore")
        if config.get("type") not in TYPES:
            raise ValueError(
                f"key manager {name!r} has type {config.get('type')!r}; expected one of "
                f"{', '.join(TYPES)}"
            )
    managers: dict[str, KeyManager] = {BUILTIN: BuiltinKeystore(keystore_dir, passphrase_file)}
    for name, config in configs.items():
        # Imported only when configured: every gateway process builds its key managers as it
        # starts, and only deployments with an HSM or a KMIP server need python-pkcs11 (~80 ms
        # of CPU to import) or PyKMIP.
        if config["type"] == "pkcs11":
            from andromede.kms.pkcs11 import Pkcs11KeyManager  # noqa: PLC0415

            managers[name] = Pkcs11KeyManager.from_config(name, config)
        else:
            from andromede.kms.kmip import KmipKeyManager  # noqa: PLC0415

            managers[name] = KmipKeyManager.from_config(name, config)
    return managers
