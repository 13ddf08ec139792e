"""KEKs on a PKCS#11 token (an HSM, or SoftHSM2 in tests), through python-pkcs11.

Each KEK is an AES-256 secret key generated on the token: a token object (persistent),
private, sensitive and non-extractable, allowed to encrypt and decrypt and nothing else. Its
handle is ``andromede-`` + 32 hex digits: the hex is the key's CKA_ID (16 random bytes) and
the whole handle its CKA_LABEL.

The key never leaves the token; wrapping is CKM_AES_GCM on the token with a random 12-byte
IV: a wrapped DEK is ``0x01 | iv (12) | ciphertext | tag (16)``, and the associated data
given to the token is ``0x01 | aad``, so the version byte is authenticated too.

Sessions. PKCS#11 login state belongs to the process, per token: a second C_Login fails with
CKR_USER_ALREADY_LOGGED_IN and any C_Logout ends the login of every session. So managers of
one process that name the same token share one logged-in session, counted by its users and
closed with the last. python-pkcs11 sessions are not thread-safe: a lock serialises the
calls, which run on worker threads. A call that fails with a token error is retried once on
a fresh session (a restarted HSM invalidates sessions); a rejected PIN is not retried, so as
not to lock the token, and keeps failing until a restart with the right PIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, Session
from pkcs11.exceptions import (
    KeyHandleInvalid,
    NoSuchKey,
    ObjectHandleInvalid,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin

from andromede.core.errors import DecryptionFailed, KeyManagerUnavailable, KmsNotFound

log = logging.getLogger("andromede.kms")

HANDLE_PREFIX = "andromede-"
_HANDLE = re.compile(r"andromede-([0-9a-f]{32})")
_VERSION = b"\x01"
_IV_LEN = 12
_TAG_LEN = 16
_PIN_ERRORS = (PinIncorrect, PinInvalid, PinLenRange, PinExpired, PinLocked)
_GONE = (ObjectHandleInvalid, KeyHandleInvalid)  # destroyed between lookup and use

T = TypeVar("T")


class _Kek(Protocol):
    def encrypt(
        self, data: bytes, buffer_size: int = ..., **kwargs: object
    ) -> bytes | Iterator[bytes]: ...
    def decrypt(
        self, data: bytes, buffer_size: int = ..., **kwargs: object
    ) -> bytes | Iterator[bytes]: ...


class Pkcs11KeyManager:
    """KEKs on the token labelled ``token_label`` of the PKCS#11 module ``library``.

    Nothing is opened before the first call: a missing library, token or a wrong PIN shows
    as KeyManagerUnavailable then.
    """

    def __init__(self, name: str, library: str, token_label: str, pin: str) -> None:
        self.name = name
        self._library = library
        self._token_label = token_label
        self._pin = pin
        self._lock = threading.Lock()
        self._token: _SharedSession | None = None
        self._closed = False

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, str]) -> Pkcs11KeyManager:
        """From the settings keys ``library``, ``token_label`` and ``pin_file`` (the PIN is
        read from that file, surrounding whitespace stripped)."""
        missing = [k for k in ("library", "token_label", "pin_file") if not config.get(k)]
        if missing:
            raise ValueError(f"key manager {name!r} (pkcs11) needs {', '.join(missing)}")
        pin = Path(config["pin_file"]).read_text(encoding="utf-8").strip()
        if not pin:
            raise ValueError(f"key manager {name!r}: the PIN file {config['pin_file']} is empty")
        return cls(name, config["library"], config["token_label"], pin)

    async def create_key(self, label: str) -> str:
        """A new AES-256 key on the token; ``label`` is not stored (the handle is random)."""
        return await self._call(_create)

    async def wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        """AES-GCM of ``dek`` on the token under the KEK, bound to ``aad``."""
        return await self._call(lambda session: _wrap(session, handle, dek, aad))

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`, on the token."""
        return await self._call(lambda session: _unwrap(session, handle, wrapped, aad))

    async def destroy_key(self, handle: str) -> None:
        """Destroy the key object on the token; a handle already gone is fine."""
        await self._call(lambda session: _destroy(session, handle))

    async def close(self) -> None:
        """Give up this manager's share of the session (closed with the last user)."""
        await asyncio.to_thread(self._close)

    async def _call(self, op: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self._call_on_thread, op)

    def _call_on_thread(self, op: Callable[[Session], T]) -> T:
        with self._lock:
            if self._closed:
                log.error("key manager %r: used after close", self.name)
                raise KeyManagerUnavailable
            if self._token is None:
                self._token = _acquire(self._library, self._token_label, self._pin)
            token = self._token
        return token.call(op)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            token, self._token = self._token, None
        if token is not None:
            _release(token)


# --- operations, on the shared session with its lock held -------------------------------------
def _create(session: Session) -> str:
    key_id = secrets.token_bytes(16)
    handle = HANDLE_PREFIX + key_id.hex()
    session.generate_key(
        KeyType.AES,
        256,
        id=key_id,
        label=handle,
        store=True,
        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
        template={
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
        },
    )
    return handle


def _wrap(session: Session, handle: str, dek: bytes, aad: bytes) -> bytes:
    key = _find(session, handle)
    iv = secrets.token_bytes(_IV_LEN)
    try:
        sealed = key.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(iv, aad))
    except _GONE as exc:
        raise KmsNotFound from exc
    return _VERSION + iv + _as_bytes(sealed)


def _unwrap(session: Session, handle: str, wrapped: bytes, aad: bytes) -> bytes:
    key = _find(session, handle)
    if len(wrapped) < 1 + _IV_LEN + _TAG_LEN or wrapped[:1] != _VERSION:
        raise DecryptionFailed("The wrapped data key is malformed.")
    iv, sealed = wrapped[1 : 1 + _IV_LEN], wrapped[1 + _IV_LEN :]
    try:
        dek = key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(iv, aad))
    except _GONE as exc:
        raise KmsNotFound from exc
    except PKCS11Error as exc:
        # A bad tag is CKR_ENCRYPTED_DATA_INVALID on some tokens and CKR_GENERAL_ERROR on
        # SoftHSM2, which a failing token also answers: if the key still encrypts, the token
        # is fine and the data did not authenticate.
        if not _still_encrypts(key):
            raise
        raise DecryptionFailed("The wrapped data key failed authentication.") from exc
    return _as_bytes(dek)


def _destroy(session: Session, handle: str) -> None:
    match = _HANDLE.fullmatch(handle)
    if match is None:
        return  # never one of ours, so nothing to destroy
    found = list(
        session.get_objects(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.LABEL: handle,
                Attribute.ID: bytes.fromhex(match[1]),
            }
        )
    )
    for key in found:
        with contextlib.suppress(*_GONE):
            key.destroy()


def _find(session: Session, handle: str) -> _Kek:
    # Messages reach S3 clients: handles and token details go to the log only.
    match = _HANDLE.fullmatch(handle)
    if match is None:
        raise KmsNotFound
    try:
        key = session.get_key(
            ObjectClass.SECRET_KEY, KeyType.AES, label=handle, id=bytes.fromhex(match[1])
        )
    except NoSuchKey as exc:
        raise KmsNotFound from exc
    if not (isinstance(key, EncryptMixin) and isinstance(key, DecryptMixin)):
        log.error("PKCS#11 key %s cannot encrypt and decrypt", handle)
        raise KmsNotFound
    return key


def _gcm(iv: bytes, aad: bytes) -> GCMParams:
    return GCMParams(iv, _VERSION + aad, _TAG_LEN * 8)


def _still_encrypts(key: _Kek) -> bool:
    probe_iv = secrets.token_bytes(_IV_LEN)
    try:
        key.encrypt(bytes(16), mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(probe_iv, b""))
    except PKCS11Error:
        return False
    return True


def _as_bytes(result: object) -> bytes:
    if not isinstance(result, bytes):  # only iterator input gives an iterator back
        raise TypeError("python-pkcs11 returned a stream for a single buffer")
    return result


# --- one logged-in session per token and process ----------------------------------------------
class _SharedSession:
    """The logged-in session on one token, shared by this process's managers of it."""

    def __init__(self, library: str, token_label: str, pin: str) -> None:
        self.key = (library, token_label)
        self.pin = pin
        self.users = 0
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._pin_rejected = False

    def call(self, op: Callable[[Session], T]) -> T:
        """Run ``op`` on the session; token errors get one retry on a fresh session, then
        become KeyManagerUnavailable. Domain errors raised by ``op`` pass through."""
        with self._lock:
            try:
                return op(self._open())
            except PKCS11Error as exc:
                log.warning("PKCS#11 token %r: %r; retrying on a fresh session", self.key[1], exc)
                self._drop()
            try:
                return op(self._open())
            except PKCS11Error as exc:
                log.error("PKCS#11 token %r failed: %r", self.key[1], exc)
                self._drop()
                raise KeyManagerUnavailable from exc

    def drop(self) -> None:
        with self._lock:
            self._drop()

    def _open(self) -> Session:
        if self._session is not None:
            return self._session
        library, label = self.key
        if self._pin_rejected:
            raise KeyManagerUnavailable
        try:
            with _LOAD_LOCK:  # python-pkcs11 loads and initialises a library on first use
                module = pkcs11.lib(library)
            token = module.get_token(token_label=label)
            try:
                session = token.open(rw=True, user_pin=self.pin)
            except UserAlreadyLoggedIn:
                # Something else in this process logged in: every session shares that login.
                session = token.open(rw=True)
        except _PIN_ERRORS as exc:
            self._pin_rejected = True
            log.error(
                "PKCS#11 token %r rejected the PIN (%s); not tried again until a restart, so "
                "as not to lock the token",
                label,
                type(exc).__name__,
            )
            raise KeyManagerUnavailable from exc
        except PKCS11Error as exc:
            log.error("cannot open PKCS#11 token %r in %s: %r", label, library, exc)
            raise KeyManagerUnavailable from exc
        self._session = session
        return session

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(PKCS11Error):
                session.close()


# PKCS#11 login state is process-wide per token (see the module docstring), so the sessions
# that carry it are too.
_SHARED: dict[tuple[str, str], _SharedSession] = {}
_SHARED_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()


def _acquire(library: str, token_label: str, pin: str) -> _SharedSession:
    with _SHARED_LOCK:
        shared = _SHARED.get((library, token_label))
        if shared is None:
            shared = _SHARED[library, token_label] = _SharedSession(library, token_label, pin)
        elif shared.pin != pin:
            log.error("two key managers name PKCS#11 token %r with different PINs", token_label)
            raise KeyManagerUnavailable
        shared.users += 1
        return shared


def _release(shared: _SharedSession) -> None:
    # The logout happens under the registry lock, so that a manager opened meanwhile cannot
    # log in before it and be logged out by it.
    with _SHARED_LOCK:
        shared.users -= 1
        if shared.users == 0:
            del _SHARED[shared.key]
            shared.drop()
