"""The trail's signing key: Ed25519, separate from every data key, created at first start.

The private key is a PKCS#8 PEM file (mode 0600); the public half is exported as a
SubjectPublicKeyInfo PEM, which is what ``andromede audit verify --public-key`` reads.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from andromede.localfiles import fsync_dir


class SigningKeyError(Exception):
    """The signing key file exists but cannot be used."""


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``; created atomically (link of a synced temp file) when missing, so
    that concurrent workers all end up with the same key."""
    if path.exists():
        return load_signing_key(path)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):  # another worker won: use its key
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return load_signing_key(path)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read the audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public half as PEM."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM (or the private key's PEM, whose public half is taken)."""
    with contextlib.suppress(ValueError, TypeError):
        public = serialization.load_pem_public_key(data)
        if isinstance(public, Ed25519PublicKey):
            return public
    with contextlib.suppress(ValueError, TypeError):
        private = serialization.load_pem_private_key(data, password=None)
        if isinstance(private, Ed25519PrivateKey):
            return private.public_key()
    raise SigningKeyError("not an Ed25519 public key in PEM form")
