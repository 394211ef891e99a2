"""The validation layer's direct messages, byte for byte: their encoding and signed payload against an
independent construction, the round's exact sizes, and the reason and sender of each refusal."""

import hashlib
from dataclasses import replace

import msgpack
import numpy as np
import pytest
from nacl.signing import SigningKey

from smpc import field, przs
from smpc import validation_messages as vm
from smpc.errors import BadSignature, MalformedMessage, ProtocolViolation

CHAIN = b"validation-chain"
LIMITS = vm.ValidationLimits(round_id=3, width=6, degree=1, participants=frozenset(range(5)))
SHARE = np.arange(6, dtype=np.uint64) + np.uint64(field.P - 6)
SIGNATURE = bytes(range(64))


def payload(body: list) -> bytes:
    """What a validation message's author signs, written out from the module docstrings."""
    return b"fednode/secagg/v1/sig" + len(CHAIN).to_bytes(2, "big") + CHAIN + b"fednode/validation/v1/" + msgpack.packb(body)


def shares_items(**changes: object) -> list:
    items = {"tag": 1, "round": 3, "dealer": 1, "holder": 2, "share": SHARE.astype("<u8").tobytes(),
             "contributions": bytes(96), "commitments": bytes(128), "signature": SIGNATURE} | changes
    return list(items.values())


def sum_items(**changes: object) -> list:
    items = {"tag": 2, "round": 3, "holder": 4, "share": SHARE.astype("<u8").tobytes(), "signature": SIGNATURE} | changes
    return list(items.values())


def excised_items(**changes: object) -> list:
    items = {"tag": 3, "round": 3, "holder": 4, "excised": [1, 3], "share": SHARE.astype("<u8").tobytes(),
             "signature": SIGNATURE} | changes
    return list(items.values())


def test_the_round_sizes_follow_the_przs_subsets() -> None:
    limits = vm.ValidationLimits(round_id=3, width=6, degree=2, participants=frozenset(range(7)))
    assert (limits.contributions_bytes, limits.commitments_bytes) == (32 * 10, 32 * 15)
    assert limits.max_bytes == 8 * 6 + 320 + 480 + 64 + 64
    assert (LIMITS.contributions_bytes, LIMITS.commitments_bytes, LIMITS.max_bytes) == (96, 128, 400)


def test_signed_sketch_shares_are_the_documented_array_and_decode_back() -> None:
    signed = []

    def signer(data: bytes) -> bytes:
        signed.append(data)
        return SIGNATURE

    contributions, commitments = bytes(range(96)), bytes(range(128))
    data = vm.sign_shares(CHAIN, signer, 3, 1, 2, SHARE, contributions, commitments)
    body = [1, 3, 1, 2, SHARE.astype("<u8").tobytes(), contributions, commitments]
    assert signed == [payload(body)]
    assert data == msgpack.packb([*body, SIGNATURE])
    message = vm.decode_shares(data, LIMITS)
    assert (message.round_id, message.dealer, message.holder, message.author) == (3, 1, 2, 1)
    assert np.array_equal(message.share, SHARE) and message.signature == SIGNATURE
    assert message.contribution_list() == [contributions[:32], contributions[32:64], contributions[64:]]
    assert message.commitment_list() == [commitments[k : k + 32] for k in (0, 32, 64, 96)]
    expected_digest = hashlib.sha256(b"fednode/validation/v1/commitments" + commitments).digest()
    assert message.commitments_digest() == vm.commitments_digest(commitments) == expected_digest


def test_a_signed_sketch_sum_is_the_documented_array_and_decodes_back() -> None:
    signed = []

    def signer(data: bytes) -> bytes:
        signed.append(data)
        return SIGNATURE

    data = vm.sign_sum(CHAIN, signer, 3, 4, SHARE)
    body = [2, 3, 4, SHARE.astype("<u8").tobytes()]
    assert signed == [payload(body)] and data == msgpack.packb([*body, SIGNATURE])
    message = vm.decode_sum(data, LIMITS)
    assert (message.round_id, message.holder, message.author, message.signature) == (3, 4, 4, SIGNATURE)
    assert np.array_equal(message.share, SHARE)


def test_a_share_of_the_sum_over_s_without_l_names_l_under_its_signature() -> None:
    """An ExcisedSum (the excise phase's share of the sketches' sum over S \\ L) is its own tag with L in the signed
    body: it decodes with `excised` = L, and neither the share over S nor one naming another L verifies as it."""
    signed = []

    def signer(data: bytes) -> bytes:
        signed.append(data)
        return KEYS[4].sign(data).signature

    data = vm.sign_sum(CHAIN, signer, 3, 4, SHARE, (1, 3))
    body = [3, 3, 4, [1, 3], SHARE.astype("<u8").tobytes()]
    assert signed == [payload(body)] and data == msgpack.packb([*body, KEYS[4].sign(signed[0]).signature])
    message = vm.decode_sum(data, LIMITS)
    assert (message.round_id, message.holder, message.excised) == (3, 4, (1, 3))
    assert np.array_equal(message.share, SHARE)
    vm.verify(message, 4, CHAIN, verifier)
    over_s = vm.decode_sum(vm.sign_sum(CHAIN, lambda d: KEYS[4].sign(d).signature, 3, 4, SHARE), LIMITS)
    assert over_s.excised == ()
    for forged in (replace(over_s, excised=(1, 3)), replace(message, excised=(1,)), replace(message, excised=())):
        with pytest.raises(BadSignature):
            vm.verify(forged, 4, CHAIN, verifier)


REFUSALS = [
    (bytes(401), "validation message is not bytes of at most 400"),
    (bytearray(msgpack.packb(shares_items())), "validation message is not bytes of at most 400"),
    (b"\xc1" + bytes(399), "not msgpack within limits: FormatError"),
    (msgpack.packb([*shares_items(), 0]), "not msgpack within limits: ValueError"),
    (msgpack.packb(shares_items(signature="a")), "not msgpack within limits: ValueError"),
    (msgpack.packb(shares_items(signature={b"": 2})), "not msgpack within limits: ValueError"),
    (msgpack.packb(shares_items(signature=msgpack.ExtType(1, b"x"))), "not msgpack within limits: ValueError"),
    (msgpack.packb(shares_items()[:7]), "expected an array of 8 fields"),
    (msgpack.packb({}), "expected an array of 8 fields"),
    (msgpack.packb(shares_items(signature="")), "signature must be exactly 64 bytes"),
    (b"\x98\x01\xcc\x03" + msgpack.packb(shares_items())[3:], "non-canonical encoding"),
    (msgpack.packb(shares_items(tag=2)), "not sketch shares"),
    (msgpack.packb(shares_items(round=True)), "round must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb(shares_items(round=-1)), "round must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb(shares_items(round=1 << 63)), "round must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb(shares_items(round=(1 << 63) - 1)), "validation message for round 9223372036854775807, not 3"),
    (msgpack.packb(shares_items(round=b"\x03")), "round must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb(shares_items(dealer=-1)), "dealer must be an integer in [0, 65536]"),
    (msgpack.packb(shares_items(dealer=65537)), "dealer must be an integer in [0, 65536]"),
    (msgpack.packb(shares_items(dealer=65536)), "dealer 65536 is not a participant of the round"),
    (msgpack.packb(shares_items(holder=5)), "holder 5 is not a participant of the round"),
    (msgpack.packb(shares_items(share=bytes(40))), "share must be exactly 48 bytes"),
    (msgpack.packb(shares_items(share=b"\xff" * 48)), "element outside GF(p)"),
    (msgpack.packb(shares_items(contributions=bytes(128))), "contributions must be exactly 96 bytes"),
    (msgpack.packb(shares_items(commitments=bytes(96))), "commitments must be exactly 128 bytes"),
    (msgpack.packb(shares_items(signature=bytes(63))), "signature must be exactly 64 bytes"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSALS)
def test_malformed_sketch_shares_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as error:
        vm.decode_shares(data, LIMITS)
    assert (error.value.reason, error.value.sender) == (reason, None)


@pytest.mark.parametrize(("data", "reason"), [
    (msgpack.packb(sum_items(tag=1)), "not a sketch-sum share"),
    (msgpack.packb(sum_items(round=4)), "validation message for round 4, not 3"),
    (msgpack.packb(sum_items(holder=7)), "holder 7 is not a participant of the round"),
    (msgpack.packb(sum_items(share=bytes(8))), "share must be exactly 48 bytes"),
    (msgpack.packb(sum_items(signature=bytes(65))), "signature must be exactly 64 bytes"),
    (msgpack.packb(shares_items()), "not msgpack within limits: ValueError"),
    (msgpack.packb(sum_items()[:4]), "expected an array of 5 or 6 fields"),
    (msgpack.packb(excised_items(tag=2)), "not a sketch-sum share"),
    (msgpack.packb(sum_items(tag=3)), "not a sketch-sum share"),
    (msgpack.packb(excised_items(excised=[])), "an excised sum names a non-empty set"),
    (msgpack.packb(excised_items(excised=b"\x01")), "an excised sum names a non-empty set"),
    (msgpack.packb(excised_items(excised=[2, 1])), "an excised sum's set must be strictly increasing"),
    (msgpack.packb(excised_items(excised=[1, 1])), "an excised sum's set must be strictly increasing"),
    (msgpack.packb(excised_items(excised=[5])), "excised member 5 is not a participant of the round"),
    (msgpack.packb(excised_items(excised=[True])), "excised member must be an integer in [0, 65536]"),
    (msgpack.packb(excised_items(excised=list(range(7)))), "not msgpack within limits: ValueError"),
])
def test_a_malformed_sketch_sum_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as error:
        vm.decode_sum(data, LIMITS)
    assert error.value.reason == reason


def test_members_are_indices_from_zero() -> None:
    message = vm.decode_shares(msgpack.packb(shares_items(dealer=0, holder=4)), LIMITS)
    assert (message.dealer, message.holder) == (0, 4)
    assert vm.decode_shares(msgpack.packb(shares_items(round=3)), LIMITS).round_id == 3


KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(5)]


def verifier(member: int, data: bytes, signature: bytes) -> bool:
    try:
        KEYS[member].verify_key.verify(data, signature)
    except Exception:  # noqa: BLE001 - every failure is a wrong signature here
        return False
    return True


def test_a_message_must_come_signed_from_its_author() -> None:
    data = vm.sign_sum(CHAIN, lambda d: KEYS[4].sign(d).signature, 3, 4, SHARE)
    message = vm.decode_sum(data, LIMITS)
    vm.verify(message, 4, CHAIN, verifier)
    with pytest.raises(ProtocolViolation) as error:
        vm.verify(message, 2, CHAIN, verifier)
    assert (type(error.value), error.value.reason, error.value.sender) == (
        ProtocolViolation, "message authored by member 4, sent by member 2", 2)
    with pytest.raises(BadSignature) as bad:
        vm.verify(message, 4, b"other-chain", verifier)
    assert (bad.value.reason, bad.value.sender) == ("validation message signature does not verify", 4)


def dealt(dealer: int, holder: int, wrong: przs.Subset | None = None) -> vm.SketchShares:
    participants = sorted(LIMITS.participants)
    contributions = {a: hashlib.sha256(bytes(a)).digest() for a in przs.dealt_subsets(participants, 1, dealer)}
    commitments = b"".join(przs.commitment(CHAIN, 3, a, dealer, bytes(32) if a == wrong else c)
                           for a, c in contributions.items())
    shared = b"".join(contributions[a] for a in przs.shared_subsets(participants, 1, dealer, holder))
    data = vm.sign_shares(CHAIN, lambda d: KEYS[dealer].sign(d).signature, 3, dealer, holder, SHARE, shared,
                          commitments)
    return vm.decode_shares(data, LIMITS)


def test_contributions_are_returned_by_subset_and_each_must_open_its_commitment() -> None:
    expected = {(a,): hashlib.sha256(bytes((a,))).digest() for a in (0, 3, 4)}
    assert vm.check_contributions(dealt(1, 2), LIMITS, CHAIN) == expected
    with pytest.raises(ProtocolViolation) as error:
        vm.check_contributions(dealt(1, 2, wrong=(3,)), LIMITS, CHAIN)
    assert (error.value.reason, error.value.sender) == ("contribution for subset (3,) does not match its commitment", 1)
    assert vm.check_contributions(dealt(1, 3, wrong=(3,)), LIMITS, CHAIN) == {
        (a,): hashlib.sha256(bytes((a,))).digest() for a in (0, 2, 4)}, "a subset the holder is in is not its business"
