"""Ed25519 keys for signing the chain heads the recorder publishes.

The private key lives in a file only its owner can read (0600), outside the store folder: a
key beside the data it vouches for would prove nothing to whoever can write that data. The
public key (PEM) is what an officer hands to ``stampline audit verify --public-key``. A key is
named by its id, the first 16 hex digits of SHA-256 over its raw public bytes, so a head says
which key signed it without showing the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stampline.audit.exceptions import AuditError


class SigningKeyError(AuditError):
    """A signing key cannot be made, read or trusted where it is."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (private 0600, never over an existing file); returns its id."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{private_path} exists: keygen never replaces a key") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot write {private_path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    try:
        with open(public_path, "xb") as f:
            f.write(public)
    except FileExistsError:
        private_path.unlink()
        raise SigningKeyError(f"{public_path} exists: keygen never replaces a key") from None
    return key_id(key.public_key())


def load_private_key(path: Path, store: Path | None = None) -> Ed25519PrivateKey:
    """The signing key at ``path``; refused when others may read it or when it lies inside
    the store folder ``store``.

    Raises:
        SigningKeyError: missing, unreadable, readable by others, inside the store, or not
            an Ed25519 key.
    """
    if store is not None and path.resolve().is_relative_to(store.resolve()):
        raise SigningKeyError(
            f"recorder.signing_key {path} is inside the store folder {store}: whoever can "
            "write the store could then sign heads; keep the key elsewhere"
        )
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise SigningKeyError(
            f"the signing key {path} is readable by others (mode {mode & 0o777:o}): "
            f"chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key at ``path`` (PEM, as ``stampline audit keygen`` writes it)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise SigningKeyError(f"cannot read the public key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def signature_ok(public: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True
