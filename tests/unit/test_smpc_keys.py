"""X25519 agreement + HKDF separation, pair AEAD binding, Ed25519 signer adapters."""

import hashlib
import hmac

import nacl.signing
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from smpc import aead
from smpc.errors import BadPublicKey, DecryptionFailed
from smpc.keys import KeyPurpose, agree, derive_pair_key, generate_keypair, pair_key
from smpc.prg import SeededRandomBytes
from smpc.signing import ed25519_signer, ed25519_verifier, signing_payload

CHAIN = b"chain-a"


def _pair() -> tuple:
    rand = SeededRandomBytes.from_int(11)
    return generate_keypair(rand), generate_keypair(rand)


def test_both_ends_derive_the_same_key_and_every_binding_changes_it() -> None:
    a, b = _pair()
    key = pair_key(a.secret_key, b.public_key, KeyPurpose.MASK, CHAIN, 3, 1, 2)
    assert key == pair_key(b.secret_key, a.public_key, KeyPurpose.MASK, CHAIN, 3, 2, 1)
    variants = [
        pair_key(a.secret_key, b.public_key, KeyPurpose.SHARE_ENCRYPTION, CHAIN, 3, 1, 2),
        pair_key(a.secret_key, b.public_key, KeyPurpose.MASK, b"chain-b", 3, 1, 2),
        pair_key(a.secret_key, b.public_key, KeyPurpose.MASK, CHAIN, 4, 1, 2),
        pair_key(a.secret_key, b.public_key, KeyPurpose.MASK, CHAIN, 3, 1, 3),
    ]
    assert len({key, *variants}) == 5


def test_low_order_and_malformed_public_keys_are_violations() -> None:
    a, _ = _pair()
    with pytest.raises(BadPublicKey, match="^low-order X25519 public key$"):
        agree(a.secret_key, bytes(32))
    with pytest.raises(BadPublicKey, match="^public key is not 32 bytes$"):
        agree(a.secret_key, bytes(31))


def test_keypair_repr_hides_the_secret() -> None:
    a, _ = _pair()
    assert a.secret_key.hex() not in repr(a)


def test_aead_round_trip_and_binding_of_sender_recipient_round_chain() -> None:
    key = bytes(range(32))
    ciphertext = aead.encrypt(key, CHAIN, 5, 1, 2, b"share bundle")
    assert aead.decrypt(key, CHAIN, 5, 1, 2, ciphertext) == b"share bundle"
    for chain, round_id, sender, recipient in [(b"x", 5, 1, 2), (CHAIN, 6, 1, 2), (CHAIN, 5, 2, 1), (CHAIN, 5, 1, 3)]:
        with pytest.raises(DecryptionFailed):
            aead.decrypt(key, chain, round_id, sender, recipient, ciphertext)
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(DecryptionFailed):
        aead.decrypt(key, CHAIN, 5, 1, 2, tampered)


def test_ed25519_adapters() -> None:
    signing_key = nacl.signing.SigningKey(bytes(range(32)))
    sign = ed25519_signer(signing_key)
    verify = ed25519_verifier({7: bytes(signing_key.verify_key)})
    signature = sign(b"payload")
    assert verify(7, b"payload", signature)
    assert not verify(7, b"payload!", signature)
    assert not verify(8, b"payload", signature)
    assert not verify(7, b"payload", signature[:10])


def _hkdf_sha256(secret: bytes, info: bytes) -> bytes:
    """RFC 5869 with an empty salt and one 32-byte output block, written out with hmac."""
    prk = hmac.new(bytes(32), secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@pytest.mark.parametrize(("purpose", "label"), [(KeyPurpose.MASK, b"mask"), (KeyPurpose.SHARE_ENCRYPTION, b"share-enc")])
def test_pair_key_derivation_is_the_documented_hkdf(purpose: KeyPurpose, label: bytes) -> None:
    """Every node must derive the same bytes: HKDF-SHA256 over the X25519 output, info = prefix, label,
    "/", chain id length (2 bytes) and chain id, round (8 bytes), then the lower and higher id (4 bytes
    each), all big-endian."""
    shared = bytes(range(32))
    info = (b"fednode/secagg/v1/" + label + b"/" + len(CHAIN).to_bytes(2, "big") + CHAIN
            + (3).to_bytes(8, "big") + (2).to_bytes(4, "big") + (9).to_bytes(4, "big"))
    assert derive_pair_key(shared, purpose, CHAIN, 3, 9, 2) == _hkdf_sha256(shared, info)


def test_share_encryption_is_the_documented_chacha20_poly1305() -> None:
    """Nonce = sender, recipient (4 bytes each) and 4 zero bytes; associated data = tag, chain id length (2
    bytes) and chain id, round (8 bytes), sender and recipient (4 bytes each), all big-endian."""
    key = bytes(range(32))
    nonce = (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(4)
    associated = (b"fednode/secagg/v1/shares" + len(CHAIN).to_bytes(2, "big") + CHAIN + (5).to_bytes(8, "big")
                  + (1).to_bytes(4, "big") + (2).to_bytes(4, "big"))
    expected = ChaCha20Poly1305(key).encrypt(nonce, b"share bundle", associated)
    assert aead.encrypt(key, CHAIN, 5, 1, 2, b"share bundle") == expected
    with pytest.raises(DecryptionFailed) as failure:
        aead.decrypt(key, CHAIN, 5, 1, 2, expected[:-1] + bytes([expected[-1] ^ 1]))
    assert failure.value.sender == 1 and str(failure.value) == "participant 1: share ciphertext does not authenticate"


def test_signed_payload_is_tag_chain_and_body() -> None:
    assert signing_payload(CHAIN, b"body") == b"fednode/secagg/v1/sig" + len(CHAIN).to_bytes(2, "big") + CHAIN + b"body"
