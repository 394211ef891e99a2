"""Sketch shares sealed for the ledger: what a dealer's `answer` carries and what a holder's disclosure proves.

A holder publishes one channel key per dealer; the dealer seals that holder's signed sketch shares to it. The
holder's channel secret for one dealer opens that dealer's bundle and no other, and `answer_fault` judges a
bundle exactly as every replica judges a disclosure.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from smpc import field, przs
from smpc import validation_messages as vm
from smpc.errors import BadPublicKey, DecryptionFailed
from tests.unit.test_contract import KEYS, verify

CHAIN = hashlib.sha256(b"sealed shares").digest()
N, DEGREE, WIDTH, ROUND = 4, 1, 8, 3
LIMITS = vm.ValidationLimits(ROUND, WIDTH, DEGREE, frozenset(range(N)))


def secret(holder: int, dealer: int) -> bytes:
    return hashlib.sha256(b"channel %d %d" % (holder, dealer)).digest()


def bundle(dealer: int, holder: int, signer: int | None = None) -> tuple[bytes, bytes]:
    """`dealer`'s signed sketch shares for `holder` (signed by `signer`, default the dealer), and the hash of
    its PRZS commitments that its `dealt` would carry."""
    participants = list(range(N))
    contributions = {a: hashlib.sha256(repr((dealer, a)).encode()).digest()
                     for a in przs.dealt_subsets(participants, DEGREE, dealer)}
    commitments = b"".join(przs.commitment(CHAIN, ROUND, a, dealer, c) for a, c in contributions.items())
    shared = b"".join(contributions[a] for a in przs.shared_subsets(participants, DEGREE, dealer, holder))
    share = np.arange(WIDTH, dtype=np.uint64) % np.uint64(field.P)
    key = KEYS[dealer if signer is None else signer]
    payload = vm.sign_shares(CHAIN, lambda b: key.sign(b).signature, ROUND, dealer, holder, share, shared, commitments)
    return payload, vm.commitments_digest(commitments)


def sealed(payload: bytes, dealer: int, holder: int) -> bytes:
    public = vm.channel_public_key(secret(holder, dealer))
    return vm.seal(payload, public, hashlib.sha256(b"ephemeral").digest(), CHAIN, ROUND, dealer, holder)


def fault(box: bytes, dealer: int, holder: int, digest: bytes) -> str | None:
    return vm.answer_fault(box, secret(holder, dealer), LIMITS, CHAIN, verify, dealer, holder, digest)


def test_a_sealed_bundle_opens_with_its_channel_secret_only() -> None:
    payload, _ = bundle(2, 1)
    box = sealed(payload, 2, 1)
    assert len(box) == len(payload) + vm.SEAL_OVERHEAD
    assert vm.unseal(box, secret(1, 2), CHAIN, ROUND, 2, 1) == payload
    with pytest.raises(DecryptionFailed):  # the holder's secret for another dealer: another channel
        vm.unseal(box, secret(1, 3), CHAIN, ROUND, 2, 1)
    with pytest.raises(DecryptionFailed):  # bound to the pair: no replay as another dealer's answer
        vm.unseal(box, secret(1, 2), CHAIN, ROUND, 3, 1)


def test_a_low_order_channel_key_is_refused() -> None:
    with pytest.raises(BadPublicKey):
        vm.seal(b"x", bytes(32), secret(0, 0), CHAIN, ROUND, 2, 1)
    with pytest.raises(BadPublicKey):
        vm.unseal(bytes(32) + bytes(20), secret(1, 2), CHAIN, ROUND, 2, 1)


def test_answer_fault_accepts_a_good_bundle_and_names_every_kind_of_bad_one() -> None:
    payload, digest = bundle(2, 1)
    assert fault(sealed(payload, 2, 1), 2, 1, digest) is None
    assert "authenticate" in fault(b"\x09" + bytes(31) + b"junk" * 10, 2, 1, digest)  # type: ignore[operator]
    assert "too short" in fault(b"junk", 2, 1, digest)  # type: ignore[operator]
    assert "msgpack" in fault(sealed(b"junk", 2, 1), 2, 1, digest)  # type: ignore[operator]
    other, _ = bundle(2, 3)
    assert "shares for member 3" in fault(sealed(other, 2, 1), 2, 1, digest)  # type: ignore[operator]
    forged, _ = bundle(2, 1, signer=0)
    assert "signature" in fault(sealed(forged, 2, 1), 2, 1, digest)  # type: ignore[operator]
    assert "dealt" in fault(sealed(payload, 2, 1), 2, 1, bytes(32))  # type: ignore[operator]


def test_answer_fault_gives_each_faults_reason_and_leaves_naming_the_dealer_to_its_caller() -> None:
    """The reasons come from the unsealing (whose errors carry participant ids, index + 1) and from the checks
    of the shares (member indexes): the verdict names no participant, so both kinds read alike."""
    payload, digest = bundle(2, 1)
    other, _ = bundle(2, 3)
    forged, _ = bundle(2, 1, signer=0)
    reasons = [fault(box, 2, 1, dealt) for box, dealt in (
        (sealed(payload, 3, 1), digest), (b"junk", digest), (bytes(32) + bytes(20), digest),
        (sealed(other, 2, 1), digest), (sealed(forged, 2, 1), digest), (sealed(payload, 2, 1), bytes(32)))]
    assert reasons == ["share ciphertext does not authenticate", "sealed sketch shares too short",
                       "sealed sketch shares carry a low-order key", "shares for member 3",
                       "validation message signature does not verify",
                       "its commitments differ from its dealt transaction"]


@pytest.mark.parametrize(("box", "error", "reason"), [
    (b"x" * (vm.SEAL_OVERHEAD - 1), DecryptionFailed, "sealed sketch shares too short"),
    (bytes(32) + bytes(16), BadPublicKey, "sealed sketch shares carry a low-order key"),
])
def test_unseal_blames_the_dealer_by_its_participant_id(box: bytes, error: type, reason: str) -> None:
    with pytest.raises(error) as refused:
        vm.unseal(box, secret(1, 2), CHAIN, ROUND, 2, 1)
    assert (refused.value.reason, refused.value.sender) == (reason, 3)


def test_an_empty_payload_seals_to_exactly_the_overhead_and_opens() -> None:
    box = sealed(b"", 2, 1)
    assert len(box) == vm.SEAL_OVERHEAD
    assert vm.unseal(box, secret(1, 2), CHAIN, ROUND, 2, 1) == b""


def test_only_a_key_that_is_not_of_low_order_is_usable_as_a_channel() -> None:
    assert vm.channel_key_usable(vm.channel_public_key(secret(1, 2)))
    assert not vm.channel_key_usable(bytes(32))
