"""X25519 key agreement and HKDF key derivation for secure aggregation.

Each participant advertises two ephemeral X25519 public keys per round: one whose agreements seed
the pairwise masks, one whose agreements key the encryption of Shamir shares. Keeping them apart
matters: the mask secret key of a dropped node is reconstructed and revealed in the unmask phase,
which must not also expose the keys that encrypted its shares.

A raw X25519 output is not a uniform key, so every key is derived with HKDF-SHA256. The HKDF info
binds a purpose label ("mask" or "share-enc"), the chain id, the round id and the unordered pair
{i, j}, so a key is never valid in another consortium, another round, another pair or for the
other purpose. The pair is sorted so both ends derive the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smpc.errors import BadPublicKey
from smpc.field import RandomBytes

KEY_BYTES = 32
_INFO_PREFIX = b"fednode/secagg/v1/"


class KeyPurpose(Enum):
    """What a derived pair key is for; the value is the HKDF label."""

    MASK = b"mask"
    SHARE_ENCRYPTION = b"share-enc"
    SKETCH_ENCRYPTION = b"sketch-enc"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair; `secret_key` is 32 random bytes (clamped by X25519 on use)."""

    secret_key: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key.hex()}, secret_key=<redacted>)"


def generate_keypair(rand: RandomBytes) -> KeyPair:
    """A fresh ephemeral X25519 key pair drawn from the caller's randomness."""
    return keypair_from_secret(rand(KEY_BYTES))


def keypair_from_secret(secret_key: bytes) -> KeyPair:
    """The key pair of a known secret key (for instance one reconstructed from Shamir shares)."""
    assert len(secret_key) == KEY_BYTES, "X25519 secret keys are 32 bytes"
    return KeyPair(secret_key, nacl.bindings.crypto_scalarmult_base(secret_key))


def agree(secret_key: bytes, peer_public_key: bytes) -> bytes:
    """The raw X25519 shared secret; a peer key of low order (all-zero output) is a violation."""
    if len(peer_public_key) != KEY_BYTES:
        raise BadPublicKey("public key is not 32 bytes")
    try:
        return nacl.bindings.crypto_scalarmult(secret_key, peer_public_key)
    except nacl.exceptions.RuntimeError as error:
        raise BadPublicKey("low-order X25519 public key") from error


def derive_pair_key(shared_secret: bytes, purpose: KeyPurpose, chain_id: bytes, round_id: int, i: int, j: int) -> bytes:
    """HKDF-SHA256 of an X25519 output into a 32-byte key for one purpose, chain, round and pair."""
    assert i != j, "a pair key needs two distinct participants"
    low, high = sorted((i, j))
    info = b"".join(
        [
            _INFO_PREFIX,
            purpose.value,
            b"/",
            len(chain_id).to_bytes(2, "big"),
            chain_id,
            round_id.to_bytes(8, "big"),
            low.to_bytes(4, "big"),
            high.to_bytes(4, "big"),
        ]
    )
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared_secret)


def pair_key(
    secret_key: bytes, peer_public_key: bytes, purpose: KeyPurpose, chain_id: bytes, round_id: int, i: int, j: int
) -> bytes:
    """Agreement then derivation: the key participants i and j share for `purpose`."""
    return derive_pair_key(agree(secret_key, peer_public_key), purpose, chain_id, round_id, i, j)
