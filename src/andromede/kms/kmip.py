"""KMIP key manager: tenant KEKs live on an enterprise key server, spoken to in KMIP 1.4 over
mutual TLS.

A KEK is an AES-256 symmetric key that the server generates (Create, cryptographic usage mask
Encrypt|Decrypt, then Activate); its KMIP Unique Identifier is the handle. Wrapping and
unwrapping are the server's Encrypt and Decrypt operations, so the key material never leaves
the server: this adapter never sends Get.

Wrapped DEK format (version 1)::

    0x01 || IV (12 bytes) || ciphertext (len(dek) bytes) || tag (16 bytes)

Construction: AES-256-GCM on the server, ``aad`` sent as KMIP 1.4's Authenticated Encryption
Additional Data and the tag as its Authenticated Encryption Tag. GCM is an AEAD, so a changed
bit anywhere in the wrapped DEK, another ``aad`` or another key all make the server's tag check
fail; nothing is left to a home-made MAC. PyKMIP's server engine
(``kmip/services/server/crypto/engine.py``) implements GCM with additional data, and KMIP 1.4
carries both fields in Encrypt and Decrypt, as enterprise servers speaking 1.4 do. The IV is 96
bits from ``os.urandom``, sent as the IV/Counter/Nonce: random 96-bit IVs keep the collision
probability under 2^-32 up to 2^32 wraps per key (NIST SP 800-38D, 8.3), far beyond what one
tenant KEK wraps. An empty ``aad`` is sent as no additional data, which GCM treats identically.

Telling a bad tag from a failing server: KMIP's result reason for a tag that does not verify is
Cryptographic Failure; PyKMIP's server answers General Failure instead (it lets
``cryptography``'s InvalidTag escape). On General Failure from Decrypt this adapter probes the
server: it wraps and unwraps a random value under the same key and ``aad``. If that round trip
works, the server is healthy and the input did not authenticate (DecryptionFailed); otherwise
the server is failing (KeyManagerUnavailable).

Connections: blocking TLS sockets (TLS 1.2 or later, server certificate checked against
``ca_file`` and ``host``, client certificate presented) used on worker threads, one thread per
connection at a time; a few idle ones are kept for reuse. Every request has a deadline of
``timeout`` seconds, so a dead server costs at most that. A reused connection that fails (the
server closed it while idle) is replaced and the request sent once more (a Create resent so
may leave an unused key on the server; nothing else is harmed by a repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ParamSpec, TypeVar

from andromede.core.errors import (
    DecryptionFailed,
    KeyManagerUnavailable,
    KmsInvalidState,
    KmsNotFound,
)

with warnings.catch_warnings():
    # Any PyKMIP import runs its package __init__, which loads its SQLAlchemy-backed object
    # store through the pre-2.0 ``declarative_base`` location (MovedIn20Warning).
    warnings.simplefilter("ignore", DeprecationWarning)
    from kmip.core import attributes, enums, objects, utils
    from kmip.core import exceptions as kmip_errors
    from kmip.core.factories.attributes import AttributeFactory
    from kmip.core.factories.credentials import CredentialFactory
    from kmip.core.messages import contents, messages, payloads

__all__ = ["KmipKeyManager"]

T = TypeVar("T")
P = ParamSpec("P")

_VERSION = 1
_IV_BYTES = 12
_TAG_BYTES = 16
_OVERHEAD = 1 + _IV_BYTES + _TAG_BYTES
_MAX_HANDLE = 200
_MAX_RESPONSE = 1 << 20
_IDLE_CONNECTIONS = 4
_DEFAULT_TIMEOUT = 5.0
_PROBE_BYTES = 32

# What PyKMIP's decoder raises on bytes that are not a well-formed KMIP response.
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    struct.error,
    kmip_errors.KmipError,
    kmip_errors.InvalidKmipEncoding,
    kmip_errors.InvalidPaddingBytes,
    kmip_errors.InvalidPrimitiveLength,
    kmip_errors.StreamNotEmptyError,
    kmip_errors.ReadValueError,
    kmip_errors.VersionNotSupported,
)
_GONE_STATES = (enums.State.DESTROYED, enums.State.DESTROYED_COMPROMISED)


class _Broken(Exception):
    """The connection failed, timed out or returned garbage: it must not be reused."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _Refused(Exception):
    """The server answered the operation with a failure status."""

    def __init__(self, reason: enums.ResultReason | None, message: str) -> None:
        name = getattr(reason, "name", "unknown reason")
        super().__init__(f"{name}: {message}")
        self.reason = reason


def _gcm() -> attributes.CryptographicParameters:
    return attributes.CryptographicParameters(
        block_cipher_mode=enums.BlockCipherMode.GCM,
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        tag_length=_TAG_BYTES,
    )


def _valid_handle(handle: object) -> bool:
    return isinstance(handle, str) and 0 < len(handle) <= _MAX_HANDLE and handle.isprintable()


class _Connection:
    """One TLS connection to the server; not thread-safe (one user at a time)."""

    def __init__(self, sock: ssl.SSLSocket, credential: objects.Credential | None) -> None:
        self._sock = sock
        self._credential = credential

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float,
        credential: objects.Credential | None,
    ) -> _Connection:
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise _Broken(f"connecting to {host}:{port} timed out", timed_out=True) from exc
        except OSError as exc:
            raise _Broken(f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            return cls(context.wrap_socket(raw, server_hostname=host), credential)
        except OSError as exc:
            raw.close()
            raise _Broken(f"TLS handshake with {host}:{port} failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def call(
        self, operation: enums.Operation, payload: payloads.RequestPayload, timeout: float
    ) -> payloads.ResponsePayload:
        """Send one request; return the response payload or raise _Refused / _Broken."""
        header = messages.RequestHeader(
            protocol_version=contents.ProtocolVersion(1, 4),
            authentication=(
                contents.Authentication([self._credential]) if self._credential else None
            ),
            batch_count=contents.BatchCount(1),
        )
        item = messages.RequestBatchItem(
            operation=contents.Operation(operation), request_payload=payload
        )
        stream = utils.BytearrayStream()
        messages.RequestMessage(request_header=header, batch_items=[item]).write(
            stream, kmip_version=enums.KMIPVersion.KMIP_1_4
        )
        deadline = time.monotonic() + timeout
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(bytes(stream.buffer))
            head = self._receive(8, deadline)
            (length,) = struct.unpack("!I", head[4:])
            if length > _MAX_RESPONSE:
                raise _Broken(f"response of {length} bytes is too large")
            data = head + self._receive(length, deadline)
        except TimeoutError as exc:
            raise _Broken(f"no answer within {timeout:g} s", timed_out=True) from exc
        except OSError as exc:
            raise _Broken(f"connection failed: {exc}") from exc
        return self._result(data, operation)

    def _receive(self, size: int, deadline: float) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self._sock.recv(size - len(chunks))
            if not chunk:
                raise _Broken("the server closed the connection")
            chunks += chunk
        return bytes(chunks)

    @staticmethod
    def _result(data: bytes, operation: enums.Operation) -> payloads.ResponsePayload:
        try:
            response = messages.ResponseMessage()
            response.read(utils.BytearrayStream(data), kmip_version=enums.KMIPVersion.KMIP_1_4)
            (item,) = response.batch_items
            status = item.result_status.value
            if status != enums.ResultStatus.SUCCESS:
                reason = item.result_reason.value if item.result_reason else None
                message = item.result_message.value if item.result_message else ""
                raise _Refused(reason, str(message))
            if item.operation is not None and item.operation.value != operation:
                raise _Broken("the response answers another operation")
            return item.response_payload
        except _DECODE_ERRORS as exc:
            raise _Broken(f"unreadable response: {exc}") from exc


class KmipKeyManager:
    """KEKs on a KMIP server; DEKs are wrapped by its Encrypt and Decrypt (AES-256-GCM)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        cert_file: str | Path,
        key_file: str | Path,
        ca_file: str | Path,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._timeout = timeout
        try:
            context = ssl.create_default_context(cafile=str(ca_file))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(cert_file), str(key_file))
        except OSError as exc:  # ssl.SSLError is one
            raise ValueError(f"KMIP key manager {name!r}: cannot load TLS files: {exc}") from exc
        self._context = context
        self._credential: objects.Credential | None = None
        if username is not None:
            self._credential = CredentialFactory().create_credential(
                enums.CredentialType.USERNAME_AND_PASSWORD,
                {"Username": username, "Password": password},
            )
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, str]) -> KmipKeyManager:
        """Keys: ``host``, ``port``, ``cert_file``, ``key_file``, ``ca_file``; optional
        ``username``, ``password_file`` (the password is read from it) and ``timeout``
        (seconds per request)."""
        missing = [
            k for k in ("host", "port", "cert_file", "key_file", "ca_file") if k not in config
        ]
        if missing:
            raise ValueError(f"KMIP key manager {name!r}: missing {', '.join(missing)}")
        password = None
        if "password_file" in config:
            try:
                password = Path(config["password_file"]).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"KMIP key manager {name!r}: password_file: {exc}") from exc
        return cls(
            name,
            config["host"],
            int(config["port"]),
            config["cert_file"],
            config["key_file"],
            config["ca_file"],
            username=config.get("username"),
            password=password,
            timeout=float(config.get("timeout", _DEFAULT_TIMEOUT)),
        )

    # --- the port ---------------------------------------------------------------------------
    async def create_key(self, label: str) -> str:
        return await self._in_thread(self._create_key, label)

    async def wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        if not _valid_handle(handle):
            raise KmsNotFound()
        return await self._in_thread(self._wrap, handle, dek, aad)

    async def unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        if not _valid_handle(handle):
            raise KmsNotFound()
        if len(wrapped) <= _OVERHEAD or wrapped[0] != _VERSION:
            raise DecryptionFailed()
        return await self._in_thread(self._unwrap, handle, wrapped, aad)

    async def destroy_key(self, handle: str) -> None:
        if _valid_handle(handle):
            await self._in_thread(self._destroy, handle)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
        self._drop_idle()

    # --- operations (worker threads) --------------------------------------------------------
    async def _in_thread(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except (_Broken, _Refused) as exc:
            raise self._unavailable(exc) from exc

    def _create_key(self, label: str) -> str:
        factory = AttributeFactory()
        usage = [enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]
        template = [
            factory.create_attribute(
                enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES
            ),
            factory.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
            factory.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK, usage),
        ]
        if label:
            template.append(factory.create_attribute(enums.AttributeType.NAME, label))
        request = payloads.CreateRequestPayload(
            object_type=enums.ObjectType.SYMMETRIC_KEY,
            template_attribute=objects.TemplateAttribute(attributes=template),
        )
        try:
            handle = self._call(enums.Operation.CREATE, request).unique_identifier
        except _Refused as exc:
            raise self._unavailable(exc) from exc
        if not _valid_handle(handle):
            raise KeyManagerUnavailable(f"KMIP server {self.name!r}: unusable key identifier")
        try:
            self._call(
                enums.Operation.ACTIVATE,
                payloads.ActivateRequestPayload(
                    unique_identifier=attributes.UniqueIdentifier(handle)
                ),
            )
        except (_Refused, _Broken) as exc:
            # Best effort: a pre-active key can be destroyed at once; else it stays unused.
            with contextlib.suppress(_Refused, _Broken):
                self._call(enums.Operation.DESTROY, self._destroy_request(handle))
            raise self._unavailable(exc) from exc
        return str(handle)

    def _wrap(self, handle: str, dek: bytes, aad: bytes) -> bytes:
        iv = os.urandom(_IV_BYTES)
        try:
            ciphertext, tag = self._encrypt(handle, iv, dek, aad)
        except _Refused as exc:
            raise self._key_refusal(handle, exc) from exc
        return bytes([_VERSION]) + iv + ciphertext + tag

    def _unwrap(self, handle: str, wrapped: bytes, aad: bytes) -> bytes:
        iv, ciphertext = wrapped[1 : 1 + _IV_BYTES], wrapped[1 + _IV_BYTES : -_TAG_BYTES]
        try:
            return self._decrypt(handle, iv, ciphertext, wrapped[-_TAG_BYTES:], aad)
        except _Refused as exc:
            if exc.reason == enums.ResultReason.CRYPTOGRAPHIC_FAILURE:
                raise DecryptionFailed() from exc
            if exc.reason != enums.ResultReason.GENERAL_FAILURE:
                raise self._key_refusal(handle, exc) from exc
            if self._server_decrypts(handle, aad):
                raise DecryptionFailed() from exc
            raise self._unavailable(exc) from exc

    def _destroy(self, handle: str) -> None:
        uid = attributes.UniqueIdentifier(handle)
        revoke = payloads.RevokeRequestPayload(
            unique_identifier=uid,
            revocation_reason=objects.RevocationReason(
                code=enums.RevocationReasonCode.CESSATION_OF_OPERATION
            ),
        )
        try:
            self._call(enums.Operation.REVOKE, revoke)
        except _Refused as exc:
            # Anything but "no such key" means "not active" (never activated, already
            # revoked): Destroy below decides.
            if exc.reason == enums.ResultReason.ITEM_NOT_FOUND:
                return
        try:
            self._call(enums.Operation.DESTROY, self._destroy_request(handle))
        except _Refused as exc:
            if exc.reason == enums.ResultReason.ITEM_NOT_FOUND:
                return
            if not isinstance(self._key_refusal(handle, exc), KmsNotFound):
                raise self._unavailable(exc) from exc

    # --- helpers ----------------------------------------------------------------------------
    def _encrypt(self, handle: str, iv: bytes, data: bytes, aad: bytes) -> tuple[bytes, bytes]:
        request = payloads.EncryptRequestPayload(
            unique_identifier=handle,
            cryptographic_parameters=_gcm(),
            data=data,
            iv_counter_nonce=iv,
            auth_additional_data=aad or None,
        )
        response = self._call(enums.Operation.ENCRYPT, request)
        ciphertext, tag = response.data, response.auth_tag
        echoed_iv = response.iv_counter_nonce
        if (
            not isinstance(ciphertext, bytes)
            or len(ciphertext) != len(data)
            or not isinstance(tag, bytes)
            or len(tag) != _TAG_BYTES
            or echoed_iv not in (None, iv)
        ):
            raise _Broken("the server's Encrypt answer is not AES-GCM as requested")
        return ciphertext, tag

    def _decrypt(self, handle: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        request = payloads.DecryptRequestPayload(
            unique_identifier=handle,
            cryptographic_parameters=_gcm(),
            data=ciphertext,
            iv_counter_nonce=iv,
            auth_additional_data=aad or None,
            auth_tag=tag,
        )
        plaintext = self._call(enums.Operation.DECRYPT, request).data
        if not isinstance(plaintext, bytes) or len(plaintext) != len(ciphertext):
            raise _Broken("the server's Decrypt answer has the wrong length")
        return plaintext

    def _server_decrypts(self, handle: str, aad: bytes) -> bool:
        """Whether a fresh wrap/unwrap round trip under ``handle`` works right now."""
        probe, iv = os.urandom(_PROBE_BYTES), os.urandom(_IV_BYTES)
        try:
            ciphertext, tag = self._encrypt(handle, iv, probe, aad)
            return self._decrypt(handle, iv, ciphertext, tag, aad) == probe
        except (_Refused, _Broken):
            return False

    def _key_refusal(self, handle: str, refused: _Refused) -> Exception:
        """The domain error for a refused use of ``handle``: gone, unusable, or server trouble.

        Servers that keep destroyed objects answer a use of one with Wrong Key Lifecycle State
        (PyKMIP: Permission Denied, which it also gives for keys of other clients); its State
        attribute tells a destroyed key from one that is merely not active.
        """
        reason = refused.reason
        if reason == enums.ResultReason.ITEM_NOT_FOUND:
            return KmsNotFound()
        if reason not in (
            enums.ResultReason.PERMISSION_DENIED,
            enums.ResultReason.WRONG_KEY_LIFECYCLE_STATE,
        ):
            return self._unavailable(refused)
        request = payloads.GetAttributesRequestPayload(
            unique_identifier=handle, attribute_names=["State"]
        )
        try:
            found = self._call(enums.Operation.GET_ATTRIBUTES, request).attributes
        except _Refused as exc:
            if exc.reason in (
                enums.ResultReason.ITEM_NOT_FOUND,
                enums.ResultReason.PERMISSION_DENIED,
            ):
                return KmsNotFound()
            return self._unavailable(exc)
        states = [a.attribute_value.value for a in found if a.attribute_name.value == "State"]
        if not states or states[0] in _GONE_STATES:
            return KmsNotFound()
        return KmsInvalidState()

    @staticmethod
    def _destroy_request(handle: str) -> payloads.DestroyRequestPayload:
        return payloads.DestroyRequestPayload(unique_identifier=attributes.UniqueIdentifier(handle))

    def _unavailable(self, cause: Exception) -> KeyManagerUnavailable:
        return KeyManagerUnavailable(f"KMIP server {self.name!r}: {cause}")

    def _call(
        self, operation: enums.Operation, payload: payloads.RequestPayload
    ) -> payloads.ResponsePayload:
        """One request on a pooled connection. A reused connection that turns out dead (the
        server dropped it while idle) is replaced, with the others idle since, and the
        request sent once more on a fresh one; not after a timeout, which would double it."""
        connection, reused = self._checkout(fresh=False)
        while True:
            try:
                result = connection.call(operation, payload, self._timeout)
            except _Broken as exc:
                connection.close()
                if not reused or exc.timed_out:
                    raise
                self._drop_idle()
                connection, reused = self._checkout(fresh=True)
                continue
            except _Refused:
                self._checkin(connection)
                raise
            self._checkin(connection)
            return result

    def _checkout(self, *, fresh: bool) -> tuple[_Connection, bool]:
        with self._lock:
            if self._closed:
                raise _Broken("the key manager is closed")
            if self._idle and not fresh:
                return self._idle.pop(), True
        connection = _Connection.open(
            self._host, self._port, self._context, self._timeout, self._credential
        )
        return connection, False

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _checkin(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()
