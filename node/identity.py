"""A node's long-term identity: one Ed25519 key for signatures and for its libp2p peer id.

The key file holds the 32-byte seed in hex and is created with mode 0600 inside a 0700 directory; a key
file readable by group or others is refused at load time, the way ssh refuses a world-readable key.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class IdentityError(Exception):
    """The key file is missing, malformed or too widely readable."""


@dataclass(frozen=True)
class Identity:
    """This node's signing key. `public_key` is what genesis lists for the member."""

    seed: bytes

    @functools.cached_property
    def signing_key(self) -> SigningKey:
        """Built once: deriving the key pair from the seed on every signature was ~1% of a daemon's CPU."""
        return SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data).signature


def generate() -> Identity:
    return Identity(bytes(SigningKey.generate()))


def save(identity: Identity, path: Path) -> None:
    """Write the key with owner-only permissions; never overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(identity.seed.hex() + "\n")


def load(path: Path) -> Identity:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"key file {path} is accessible by group or others; run: chmod 600 {path}")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise IdentityError(f"key file {path} is not a hex Ed25519 seed") from None
    if len(seed) != 32:
        raise IdentityError(f"key file {path} holds {len(seed)} bytes, expected 32")
    return Identity(seed)


BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# A libp2p peer id of an Ed25519 key is the identity multihash (0x00, length 0x24) of the key's protobuf
# encoding (field 1 KeyType = 1 Ed25519, field 2 the 32 key bytes), in base58btc: "12D3KooW...".
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def peer_id(public_key: bytes) -> str:
    """The libp2p peer id of an Ed25519 public key, computed without importing libp2p (fast CLI commands)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    data = _PEER_ID_PREFIX + public_key
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(BASE58_ALPHABET[rest])
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(digits))


def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Check an Ed25519 signature; any malformed key or signature is simply invalid."""
    try:
        VerifyKey(public_key).verify(data, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
