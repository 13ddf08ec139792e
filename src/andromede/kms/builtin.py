"""The built-in keystore: KEKs sealed under a master key, in local files (the default).

Layout of the keystore directory (directories 0700, files 0600, every file written to a
temporary name, fsynced, then linked or renamed into place and the directory fsynced):

``master.key``
    Key-file mode only: the 32-byte master key, raw. Created at first start; concurrent
    first starts race on ``link(2)`` and every process ends up with the winner's key.
``master.salt``
    Passphrase mode only: ``b"AKDF" | 0x01 | log2(n) | r | p | salt (16 bytes)``. The
    master key is the first half of ``scrypt(passphrase, salt, n, r, p, 64 bytes)``; it is
    never written anywhere.
``master.check``
    Passphrase mode only: ``b"ACHK" | 0x01 | HMAC-SHA256(second half, constant)``, so a wrong
    passphrase is refused at start. The HMAC key is independent of the master key, so the
    check gives nothing away about it.
``keys/<handle>.kek``
    One KEK: ``b"AKEK" | 0x01 | nonce (12) | AES-256-GCM(master, nonce, kek, aad=b"AKEK" |
    0x01 | handle)`` with its 16-byte tag: 65 bytes. The handle (32 lowercase hex digits,
    random) is bound as associated data, so a file renamed to another handle does not open.

A wrapped DEK is ``0x01 | nonce (12) | AES-256-GCM(kek, nonce, dek, aad=0x01 | aad)``.

No KEK is cached: reading and unsealing its file costs about 6 µs (measured), so wrap and
unwrap do it inline, on the caller's thread: a hop to a worker thread and back costs several
times more CPU than the work. So a destroy is seen by the next call of every process, and no
KEK stays in memory between calls. (The file is tiny and read on every call, hence in the page
cache; creating and destroying, which fsync, still run on a worker thread.)

Destroying a key overwrites its file with zeros, fsyncs it, then unlinks it: afterwards no
file in the directory unseals to the KEK, even with the master key. Storage below the file
system (copy-on-write file systems, SSD wear levelling, snapshots, backups of the directory)
may still hold the old blocks; where that matters, keep KEKs on an HSM (``pkcs11``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from andromede.core.errors import DecryptionFailed, KeyManagerUnavailable, KmsNotFound
from andromede.localfiles import fsync_dir

log = logging.getLogger("andromede.kms")

NAME = "builtin"
MASTER_KEY_FILE = "master.key"
SALT_FILE = "master.salt"
CHECK_FILE = "master.check"
KEYS_DIR = "keys"
KEK_SUFFIX = ".kek"

_KEY_LEN = 32
_NONCE_LEN = 12
_TAG_LEN = 16
_HANDLE = re.compile(r"[0-9a-f]{32}")

_KEK_HEADER = b"AKEK\x01"
_KEK_FILE_LEN = len(_KEK_HEADER) + _NONCE_LEN + _KEY_LEN + _TAG_LEN
_WRAP_VERSION = b"\x01"

_SALT_HEADER = b"AKDF\x01"
_SALT_LEN = 16
# 2**17 x 8 x 128 bytes = 128 MiB and ~0.3 s once per start; kept in master.salt, so a
# stronger default later leaves existing keystores readable.
_SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P = 17, 8, 1
_CHECK_HEADER = b"ACHK\x01"
_CHECK_CONTEXT = b"andromede builtin keystore: passphrase check"


class KeystoreError(Exception):
    """The keystore directory cannot be opened: wrong passphrase, missing or malformed
    master files. Raised at start, never during a request."""


class BuiltinKeystore:
    """KEKs sealed under a master key in ``directory`` (see the module docstring).

    The master key is read (or created, or derived from the passphrase in
    ``passphrase_file``) by the constructor, which therefore blocks: build the keystore at
    start, not on the event loop's hot path. A wrong passphrase raises KeystoreError here.
    """

    name = NAME

    def __init__(self, directory: Path, passphrase_file: Path | None = None) -> None:
        self._keys = directory / KEYS_DIR
        self._keys_text = str(self._keys)  # the hot path joins strings, not Paths
        try:
            _private_dir(directory)
            _private_dir(self._keys)
            if passphrase_file is None:
                master = _load_or_create_master_key(directory)
            else:
                master = _derive_master_key(directory, passphrase_file)
        except OSError as exc:
            raise KeystoreError(f"cannot open the keystore in {directory}: {exc}") from exc
        self._master = AESGCM(master)

    async def create_key(self, label: str) -> str:
        """A new random KEK, sealed to disk; ``label`` is not stored (the handle is random)."""
        return await asyncio.to_thread(self._create)

    async def wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        """AES-256-GCM of ``dek`` under the KEK, with a random nonce, bound to ``aad``."""
        return self._wrap(handle, dek, aad)

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`; DecryptionFailed when it does not authenticate."""
        return self._unwrap(handle, wrapped, aad)

    async def destroy_key(self, handle: str) -> None:
        """Crypto-shred the KEK's file (zeros, fsync, unlink); a missing one is fine."""
        await asyncio.to_thread(self._destroy, handle)

    async def close(self) -> None:
        """Nothing to release: no file stays open and no KEK is cached."""

    # --- on a worker thread -------------------------------------------------------------------
    def _create(self) -> str:
        handle = secrets.token_hex(16)
        nonce = secrets.token_bytes(_NONCE_LEN)
        kek = secrets.token_bytes(_KEY_LEN)
        sealed = self._master.encrypt(nonce, kek, _KEK_HEADER + handle.encode("ascii"))
        try:
            _create_exclusive(self._keys / (handle + KEK_SUFFIX), _KEK_HEADER + nonce + sealed)
        except OSError as exc:
            log.error("built-in keystore: cannot store a new key in %s: %s", self._keys, exc)
            raise KeyManagerUnavailable from exc
        return handle

    def _wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        kek = self._load_kek(handle)
        nonce = secrets.token_bytes(_NONCE_LEN)
        return _WRAP_VERSION + nonce + AESGCM(kek).encrypt(nonce, dek, _WRAP_VERSION + aad)

    def _unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        kek = self._load_kek(handle)
        if len(wrapped) < 1 + _NONCE_LEN + _TAG_LEN or wrapped[:1] != _WRAP_VERSION:
            raise DecryptionFailed("The wrapped data key is malformed.")
        nonce, sealed = wrapped[1 : 1 + _NONCE_LEN], wrapped[1 + _NONCE_LEN :]
        try:
            return AESGCM(kek).decrypt(nonce, sealed, _WRAP_VERSION + aad)
        except InvalidTag as exc:
            raise DecryptionFailed("The wrapped data key failed authentication.") from exc

    def _destroy(self, handle: str) -> None:
        if _HANDLE.fullmatch(handle) is None:
            return  # never one of ours, so nothing to destroy
        path = self._keys / (handle + KEK_SUFFIX)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("built-in keystore: cannot destroy key %s: %s", handle, exc)
            raise KeyManagerUnavailable from exc
        try:
            _write_all(fd, bytes(os.fstat(fd).st_size))
            os.fsync(fd)
        except OSError as exc:
            log.error("built-in keystore: cannot destroy key %s: %s", handle, exc)
            raise KeyManagerUnavailable from exc
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):  # a concurrent destroy got there first
            os.unlink(path)
        fsync_dir(self._keys)

    def _load_kek(self, handle: str) -> bytes:
        # Messages reach S3 clients: handles and paths go to the log only.
        if _HANDLE.fullmatch(handle) is None:
            raise KmsNotFound
        path = os.path.join(self._keys_text, handle + KEK_SUFFIX)
        try:
            data = _read_small(path)
        except FileNotFoundError as exc:
            raise KmsNotFound from exc
        except OSError as exc:
            log.error("built-in keystore: cannot read key %s: %s", handle, exc)
            raise KeyManagerUnavailable from exc
        try:
            return self._unseal(handle, data)
        except (InvalidTag, ValueError) as exc:
            if _shredded(path):  # read while a destroy was zeroing it
                raise KmsNotFound from exc
            log.error(
                "built-in keystore: %s does not open under the master key (damaged, or the "
                "master key was replaced)",
                path,
            )
            raise DecryptionFailed("The key-encryption key failed authentication.") from exc

    def _unseal(self, handle: str, data: bytes) -> bytes:
        header_len = len(_KEK_HEADER)
        if len(data) != _KEK_FILE_LEN or data[:header_len] != _KEK_HEADER:
            raise ValueError("not a sealed key file of a known version")
        nonce = data[header_len : header_len + _NONCE_LEN]
        sealed = data[header_len + _NONCE_LEN :]
        return self._master.decrypt(nonce, sealed, _KEK_HEADER + handle.encode("ascii"))


def _read_small(path: str) -> bytes:
    """A small file's bytes (a KEK file: 65 bytes), without pathlib's overhead."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


# --- master key -------------------------------------------------------------------------------
def _load_or_create_master_key(directory: Path) -> bytes:
    path = directory / MASTER_KEY_FILE
    if (directory / SALT_FILE).exists():
        raise KeystoreError(
            f"the keystore in {directory} is protected by a passphrase: configure its "
            "passphrase file"
        )
    if not path.exists():
        if _holds_keys(directory):
            raise KeystoreError(
                f"{path} is missing but the keystore holds sealed keys: restore it from a "
                "backup (a new master key could not open them)"
            )
        _create_exclusive(path, secrets.token_bytes(_KEY_LEN))
    key = path.read_bytes()
    if len(key) != _KEY_LEN:
        raise KeystoreError(f"{path} is not a {_KEY_LEN}-byte master key")
    return key


def _derive_master_key(directory: Path, passphrase_file: Path) -> bytes:
    if (directory / MASTER_KEY_FILE).exists():
        raise KeystoreError(
            f"the keystore in {directory} uses a master key file ({MASTER_KEY_FILE}), not a "
            "passphrase"
        )
    passphrase = passphrase_file.read_bytes().strip()
    if not passphrase:
        raise KeystoreError(f"the passphrase file {passphrase_file} is empty")
    salt_path, check_path = directory / SALT_FILE, directory / CHECK_FILE
    if not salt_path.exists():
        if check_path.exists() or _holds_keys(directory):
            raise KeystoreError(f"{salt_path} is missing: restore it from a backup")
        params = bytes([_SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P])
        _create_exclusive(salt_path, _SALT_HEADER + params + secrets.token_bytes(_SALT_LEN))
    log2_n, r, p, salt = _parse_salt(salt_path)
    derived = Scrypt(salt=salt, length=2 * _KEY_LEN, n=2**log2_n, r=r, p=p).derive(passphrase)
    master, check_key = derived[:_KEY_LEN], derived[_KEY_LEN:]
    expected = _CHECK_HEADER + hmac.new(check_key, _CHECK_CONTEXT, hashlib.sha256).digest()
    if not check_path.exists():
        if _holds_keys(directory):
            raise KeystoreError(f"{check_path} is missing: restore it from a backup")
        _create_exclusive(check_path, expected)
    if not hmac.compare_digest(check_path.read_bytes(), expected):
        raise KeystoreError(
            f"wrong passphrase for the keystore in {directory} (from {passphrase_file})"
        )
    return master


def _parse_salt(path: Path) -> tuple[int, int, int, bytes]:
    data = path.read_bytes()
    header_len = len(_SALT_HEADER)
    if len(data) != header_len + 3 + _SALT_LEN or data[:header_len] != _SALT_HEADER:
        raise KeystoreError(f"{path} is not a keystore salt file of a known version")
    log2_n, r, p = data[header_len : header_len + 3]
    # Bounds keep a damaged file from asking scrypt for gigabytes.
    if not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise KeystoreError(f"{path} holds out-of-range scrypt parameters")
    return log2_n, r, p, data[header_len + 3 :]


# --- files ------------------------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _holds_keys(directory: Path) -> bool:
    return any((directory / KEYS_DIR).glob("*" + KEK_SUFFIX))


def _create_exclusive(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) holding ``data``, durably; if it already exists (a concurrent
    start won the race), leave the existing file alone."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


def _shredded(path: str) -> bool:
    try:
        data = _read_small(path)
    except FileNotFoundError:
        return True
    return not any(data)
