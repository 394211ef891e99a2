"""The validation messages' decoders: a valid message round-trips and verifies; any other bytes, and any
single-byte change of a valid message, give MalformedMessage or a ProtocolViolation, never another error."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from smpc import przs
from smpc import validation_messages as vm
from smpc.errors import ProtocolViolation

CHAIN = b"c" * 32
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(5)]
LIMITS = vm.ValidationLimits(round_id=3, width=6, degree=1, participants=frozenset(range(5)))


def verify(i: int, data: bytes, sig: bytes) -> bool:
    try:
        KEYS[i].verify_key.verify(data, sig)
    except Exception:  # noqa: BLE001 - the reference verifier treats every failure as invalid
        return False
    return True


def valid_shares(dealer: int = 1, holder: int = 2) -> bytes:
    participants = sorted(LIMITS.participants)
    contributions = {a: bytes([len(a) + sum(a)]) * 32 for a in przs.dealt_subsets(participants, 1, dealer)}
    commitments = b"".join(przs.commitment(CHAIN, 3, a, dealer, c) for a, c in contributions.items())
    shared = b"".join(contributions[a] for a in przs.shared_subsets(participants, 1, dealer, holder))
    share = np.arange(6, dtype=np.uint64)
    return vm.sign_shares(CHAIN, lambda d: KEYS[dealer].sign(d).signature, 3, dealer, holder, share, shared,
                          commitments)


def valid_sum(holder: int = 4) -> bytes:
    return vm.sign_sum(CHAIN, lambda d: KEYS[holder].sign(d).signature, 3, holder, np.arange(6, dtype=np.uint64))


def accept_or_violation(data: bytes, sender: int) -> None:
    try:
        shares = vm.decode_shares(data, LIMITS)
        vm.verify(shares, sender, CHAIN, verify)
        vm.check_contributions(shares, LIMITS, CHAIN)
    except ProtocolViolation:
        pass
    try:
        vm.verify(vm.decode_sum(data, LIMITS), sender, CHAIN, verify)
    except ProtocolViolation:
        pass


def test_valid_messages_decode_and_verify() -> None:
    shares = vm.decode_shares(valid_shares(), LIMITS)
    vm.verify(shares, 1, CHAIN, verify)
    assert len(vm.check_contributions(shares, LIMITS, CHAIN)) == 3
    vm.verify(vm.decode_sum(valid_sum(), LIMITS), 4, CHAIN, verify)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800), st.integers(min_value=0, max_value=4))
def test_any_bytes_are_a_message_or_a_violation(data: bytes, sender: int) -> None:
    accept_or_violation(data, sender)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([valid_shares(), valid_sum()]), st.data())
def test_every_single_byte_change_is_a_violation(message: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(message) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255).filter(lambda v: v != message[position]))
    changed = message[:position] + bytes([value]) + message[position + 1 :]
    accept_or_violation(changed, 1)
    accept_or_violation(changed, 4)
