"""The secure-aggregation core at its edges: the round parameters it accepts, the exact bytes it commits to,
and the typed reason and sender of every violation a peer sees it report."""

import dataclasses
import hashlib
import struct

import nacl.signing
import pytest

from smpc.errors import BadPublicKey, BadSignature, ProtocolViolation
from smpc.messages import MAX_PARTICIPANT_ID, MAX_ROUND_ID, Limits, ShareKeys
from smpc.prg import SeededRandomBytes
from smpc.secagg import (
    RoundConfig,
    SecAggParticipant,
    SecretKind,
    check_bundle_recipients,
    self_seed_commitment,
    share_commitment,
    verify_message,
)
from smpc.signing import ed25519_signer, ed25519_verifier, signing_payload

CHAIN = b"boundary-chain"


def round_config(**changes: object) -> RoundConfig:
    base = {"chain_id": CHAIN, "round_id": 5, "participants": (1, 2, 3), "degree": 1, "vector_length": 4}
    return RoundConfig(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"participants": (1,), "degree": 0},
        {"participants": (1, MAX_PARTICIPANT_ID)},
        {"chain_id": b"c"},
        {"chain_id": b"c" * 65535},
        {"round_id": 0},
        {"round_id": MAX_ROUND_ID},
        {"degree": 2},
        {"vector_length": 1},
    ],
)
def test_round_parameters_at_their_limits_are_accepted(changes: dict[str, object]) -> None:
    config = round_config(**changes)
    assert config.limits == Limits(max_participant_id=config.participants[-1], vector_length=config.vector_length)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"participants": ()}, "participants must be a non-empty, strictly increasing tuple of ids"),
        ({"participants": (2, 1, 3)}, "participants must be a non-empty, strictly increasing tuple of ids"),
        ({"participants": (1, 2, 2)}, "participants must be a non-empty, strictly increasing tuple of ids"),
        ({"participants": (0, 1, 2)}, r"participant ids must lie in \[1, 65535\] \(Shamir x-coordinates\)"),
        ({"participants": (1, 2, MAX_PARTICIPANT_ID + 1)}, r"participant ids must lie in \[1, 65535\]"),
        ({"chain_id": b""}, "chain_id must be 1..65535 bytes and round_id a non-negative int64"),
        ({"chain_id": b"c" * 65536}, "chain_id must be 1..65535 bytes and round_id a non-negative int64"),
        ({"round_id": -1}, "chain_id must be 1..65535 bytes and round_id a non-negative int64"),
        ({"round_id": MAX_ROUND_ID + 1}, "chain_id must be 1..65535 bytes and round_id a non-negative int64"),
        ({"degree": -1}, "the Shamir degree t must satisfy 0 <= t < number of participants"),
        ({"degree": 3}, "the Shamir degree t must satisfy 0 <= t < number of participants"),
        ({"vector_length": 0}, "vector_length must be positive"),
    ],
)
def test_round_parameters_out_of_range_are_refused_with_the_rule(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        round_config(**changes)


def test_the_self_seed_commitment_is_sha256_of_the_documented_layout() -> None:
    seed = bytes(range(32))
    expected = hashlib.sha256(
        b"fednode/secagg/v1/self-seed" + struct.pack(">H", len(CHAIN)) + CHAIN + struct.pack(">QI", 2**40 + 3, 70000)
        + seed
    ).digest()
    assert self_seed_commitment(CHAIN, 2**40 + 3, 70000, seed) == expected


@pytest.mark.parametrize(("kind", "label"), [(SecretKind.SELF_SEED, b"self-seed"), (SecretKind.MASK_KEY, b"mask-key")])
def test_a_share_commitment_is_sha256_of_the_documented_layout(kind: SecretKind, label: bytes) -> None:
    share = bytes(range(40))
    expected = hashlib.sha256(
        b"fednode/secagg/v1/share/" + label + struct.pack(">H", len(CHAIN)) + CHAIN
        + struct.pack(">QII", 2**40 + 3, 70000, 65535) + share
    ).digest()
    assert share_commitment(CHAIN, 2**40 + 3, 70000, 65535, kind, share) == expected


class Peers:
    """Three members with real identity keys; member 1's machine receives what the others send."""

    def __init__(self) -> None:
        self.config = round_config()
        keys = {i: nacl.signing.SigningKey(bytes([i + 100]) * 32) for i in (1, 2, 3, 4)}
        self.signers = {i: ed25519_signer(key) for i, key in keys.items()}
        self.verifier = ed25519_verifier({i: bytes(key.verify_key) for i, key in keys.items()})
        self.machines = {
            i: SecAggParticipant(self.config, i, self.signers[i], self.verifier, SeededRandomBytes.from_int(i))
            for i in self.config.participants
        }

    def resign(self, message, signer_id: int):  # type: ignore[no-untyped-def]
        signature = self.signers[signer_id](signing_payload(CHAIN, message.signed_body()))
        return dataclasses.replace(message, signature=signature)


def violation(error: pytest.ExceptionInfo[ProtocolViolation]) -> tuple[type, str, int | None]:
    return type(error.value), error.value.reason, error.value.sender


def test_each_stateless_check_names_its_reason_and_the_sender() -> None:
    peers = Peers()
    advert = peers.machines[2].start()
    verify_message(advert, peers.config, peers.verifier)
    with pytest.raises(ProtocolViolation) as error:
        verify_message(peers.resign(dataclasses.replace(advert, round_id=6), 2), peers.config, peers.verifier)
    assert violation(error) == (ProtocolViolation, "message for round 6", 2)
    with pytest.raises(ProtocolViolation) as error:
        verify_message(peers.resign(dataclasses.replace(advert, sender=4), 4), peers.config, peers.verifier)
    assert violation(error) == (ProtocolViolation, "sender is not a participant", 4)
    with pytest.raises(ProtocolViolation) as error:
        verify_message(peers.resign(advert, 3), peers.config, peers.verifier)
    assert violation(error) == (BadSignature, "signature does not verify", 2)


@pytest.mark.parametrize("field_name", ["mask_public_key", "encryption_public_key"])
def test_a_low_order_advertised_key_is_refused_naming_its_sender(field_name: str) -> None:
    peers = Peers()
    advert = peers.machines[3].start()
    low_order = peers.resign(dataclasses.replace(advert, **{field_name: bytes(32)}), 3)
    with pytest.raises(BadPublicKey) as error:
        verify_message(low_order, peers.config, peers.verifier)
    assert violation(error) == (BadPublicKey, "low-order X25519 public key", 3)


def test_a_bundle_must_cover_and_commit_to_exactly_the_keys_set() -> None:
    commitment = bytes(64)
    keys_set = frozenset({1, 2, 3})
    bundle = ShareKeys(5, 2, ((1, b"c"), (3, b"c")), ((1, commitment), (2, commitment), (3, commitment)))
    check_bundle_recipients(bundle, keys_set)
    for ciphertexts in (((1, b"c"),), ((1, b"c"), (2, b"c"), (3, b"c")), ((1, b"c"), (3, b"c"), (4, b"c"))):
        with pytest.raises(ProtocolViolation) as error:
            check_bundle_recipients(dataclasses.replace(bundle, ciphertexts=ciphertexts), keys_set)
        assert violation(error) == (
            ProtocolViolation, "share bundle does not cover exactly the other members of U1", 2)
    for commitments in (((1, commitment), (3, commitment)), bundle.commitments + ((4, commitment),)):
        with pytest.raises(ProtocolViolation) as error:
            check_bundle_recipients(dataclasses.replace(bundle, commitments=commitments), keys_set)
        assert violation(error) == (ProtocolViolation, "share bundle does not commit to the shares of exactly U1", 2)
