"""Injected signatures: the protocol core signs and verifies through two callables.

The state machine never holds an identity key itself, so it stays pure and testable with fake
signers; the daemon passes `ed25519_signer` / `ed25519_verifier` built from the node identity and
the genesis membership. Everything signed is prefixed with a domain tag and the chain id, so a
signature made for secure aggregation in one consortium is worthless anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import nacl.exceptions
import nacl.signing

Signer = Callable[[bytes], bytes]
"""Signs a payload with this node's identity key; returns the 64-byte signature."""

Verifier = Callable[[int, bytes, bytes], bool]
"""verifier(participant_id, payload, signature) -> whether the signature is that participant's."""

SIGNATURE_BYTES = 64


def signing_payload(chain_id: bytes, body: bytes) -> bytes:
    """What is actually signed: a domain tag, the length-prefixed chain id, then the message body."""
    return b"fednode/secagg/v1/sig" + len(chain_id).to_bytes(2, "big") + chain_id + body


def ed25519_signer(signing_key: nacl.signing.SigningKey) -> Signer:
    """A Signer backed by an Ed25519 identity key."""

    def sign(payload: bytes) -> bytes:
        return signing_key.sign(payload).signature

    return sign


def ed25519_verifier(verify_keys: Mapping[int, bytes]) -> Verifier:
    """A Verifier over the members' Ed25519 public keys (participant id -> 32-byte key)."""
    keys = {participant: nacl.signing.VerifyKey(key) for participant, key in verify_keys.items()}

    def verify(participant: int, payload: bytes, signature: bytes) -> bool:
        key = keys.get(participant)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(payload, signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True

    return verify
