"""Authenticated encryption of Shamir shares between two participants (ChaCha20-Poly1305).

The key is the pair's share-encryption key from `keys.pair_key`, unique to (chain, round, pair); the
validation layer's sketch shares use the pair's sketch-encryption key and the label `sketch`.
Both directions of a pair use that key, so the 96-bit nonce encodes the direction: sender id,
recipient id and a zero counter. Each sender encrypts exactly one share bundle per recipient per
round, so a (key, nonce) pair is never used twice. The associated data binds the chain id, round
id, sender and recipient: a ciphertext replayed to another recipient, another round or another
consortium fails to authenticate.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from smpc.errors import DecryptionFailed

TAG_BYTES = 16


def _nonce(sender: int, recipient: int) -> bytes:
    return sender.to_bytes(4, "big") + recipient.to_bytes(4, "big") + bytes(4)


def _associated_data(chain_id: bytes, round_id: int, sender: int, recipient: int, label: bytes) -> bytes:
    return b"".join(
        [
            b"fednode/secagg/v1/" + label,
            len(chain_id).to_bytes(2, "big"),
            chain_id,
            round_id.to_bytes(8, "big"),
            sender.to_bytes(4, "big"),
            recipient.to_bytes(4, "big"),
        ]
    )


def encrypt(key: bytes, chain_id: bytes, round_id: int, sender: int, recipient: int, plaintext: bytes,
            label: bytes = b"shares") -> bytes:
    """Encrypt one share bundle from `sender` to `recipient`. Deterministic: one (key, nonce) per message, so the
    same bundle always gives the same ciphertext (a dealer commits its hash on the ledger before sending it)."""
    aad = _associated_data(chain_id, round_id, sender, recipient, label)
    return ChaCha20Poly1305(key).encrypt(_nonce(sender, recipient), plaintext, aad)


def decrypt(key: bytes, chain_id: bytes, round_id: int, sender: int, recipient: int, ciphertext: bytes,
            label: bytes = b"shares") -> bytes:
    """Decrypt and authenticate; any tampering or mis-binding raises DecryptionFailed."""
    aad = _associated_data(chain_id, round_id, sender, recipient, label)
    try:
        return ChaCha20Poly1305(key).decrypt(_nonce(sender, recipient), ciphertext, aad)
    except InvalidTag as error:
        raise DecryptionFailed("share ciphertext does not authenticate", sender) from error
