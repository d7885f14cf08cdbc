"""Ed25519 signatures over a bundle's manifest.

The manifest records the sha256 and size of every file in the bundle, so a signature over the
exact bytes of ``manifest.json`` covers the whole bundle. The signature lives next to it in
``manifest.sig``::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}

Keys are PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key), so OpenSSL reads
them too. The cryptography comes from the ``cryptography`` package, never from our own code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.errors import BadInput, BundleError
from device.manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "ed25519"
_MAX_KEY_BYTES = 16 * 1024
_MAX_SIG_BYTES = 4096


class SignatureError(BundleError):
    """A bundle's signature is missing, malformed, from an untrusted key or does not match."""


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key and where it came from."""

    key_id: str
    raw: bytes
    source: str


def key_id_of(raw_public: bytes) -> str:
    """The short identifier of a public key: the first 16 hex digits of sha256(raw key)."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def generate_keypair(prefix: Path) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (private, mode 0600) and ``PREFIX.pub``; refuse to overwrite either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise BadInput(f"{path}: already exists; refusing to overwrite a key (choose another --out)")
    if not prefix.parent.is_dir():
        raise BadInput(f"{prefix.parent}: no such directory for the key files")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    # O_EXCL + mode 0600 at creation: the private key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadInput(f"{path}: no such {kind} key file") from None
    if size > _MAX_KEY_BYTES:
        raise BadInput(f"{path}: {size} bytes is too large for an ed25519 {kind} key")
    return path.read_bytes()


def load_private_key(path: Path) -> Ed25519PrivateKey:  # (the lazy import keeps `spinal --help` fast)
    """Load a PEM ed25519 private key; refuse one that others can read."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path, "private")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise BadInput(f"{path}: private key is readable by group or others; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"{path}: is a {type(key).__name__.removesuffix('PrivateKey')} key; spinal signs with ed25519 "
                       "(make one with: spinal keygen)")
    return key


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM ed25519 public key (as written by :func:`generate_keypair`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"{path}: is not an ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(key_id=key_id_of(raw), raw=raw, source=str(path))


def sign_directory(root: Path, private_key_path: Path) -> str:
    """Sign ``root/manifest.json`` and write ``root/manifest.sig``; returns the key id."""
    from cryptography.hazmat.primitives import serialization

    key = load_private_key(private_key_path)
    manifest = (root / MANIFEST_NAME).read_bytes()
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = key_id_of(raw_public)
    payload = {"algorithm": ALGORITHM, "key_id": key_id,
               "signature": base64.b64encode(key.sign(manifest)).decode("ascii")}
    tmp = root / f".{SIGNATURE_NAME}.tmp"
    tmp.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    os.replace(tmp, root / SIGNATURE_NAME)
    return key_id


def _read_signature(root: Path, label: str) -> tuple[str, bytes]:
    path = root / SIGNATURE_NAME
    if not path.is_file() or path.is_symlink():
        raise SignatureError(f"{label}: bundle is not signed (no {SIGNATURE_NAME}) and a signature is required; "
                             "sign it with: spinal sign BUNDLE --key KEY")
    data = path.read_bytes()
    if len(data) > _MAX_SIG_BYTES:
        raise SignatureError(f"{label}/{SIGNATURE_NAME}: too large to be a signature")
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm must be {ALGORITHM!r}")
        key_id, signature = obj["key_id"], base64.b64decode(obj["signature"], validate=True)
        if not isinstance(key_id, str) or len(signature) != 64:
            raise ValueError("expected a key_id string and a 64-byte signature")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise SignatureError(f"{label}/{SIGNATURE_NAME}: malformed signature file ({exc})") from None
    return key_id, signature


def verify_signature(root: Path, trusted: list[PublicKey], label: str | None = None) -> PublicKey:
    """Check ``root/manifest.sig`` over ``root/manifest.json`` against the trusted keys.

    Returns the key that signed. Raises :class:`SignatureError` when the bundle is unsigned,
    signed by a key not in ``trusted``, or the manifest changed after signing.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    label = label or str(root)
    if not trusted:
        raise SignatureError(f"{label}: a signature is required but no trusted keys are configured "
                             "(set trusted_keys, or pass --trusted-key)")
    key_id, signature = _read_signature(root, label)
    by_id = {k.key_id: k for k in trusted}
    if key_id not in by_id:
        known = ", ".join(sorted(by_id))
        raise SignatureError(f"{label}: signed by key {key_id}, which is not trusted (trusted: {known})")
    key = by_id[key_id]
    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(signature, (root / MANIFEST_NAME).read_bytes())
    except InvalidSignature:
        raise SignatureError(f"{label}: signature by key {key_id} does not match manifest.json; the bundle was "
                             "changed after signing") from None
    return key
