"""What the secure-aggregation machine reports about a faulty peer: the exact typed violation, its reason and
the peer it names (the evidence the daemon records), and what it keeps or drops because of it."""

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from smpc import field, shamir
from smpc import secagg as secagg_module
from smpc.errors import Equivocation, MalformedMessage, MissingMessages, ProtocolViolation, RoundAborted
from smpc.messages import MaskedInput, SharePlaintext, UnmaskShares, encode_share
from smpc.prg import SeededRandomBytes
from smpc.secagg import Phase, SecAggParticipant, WrongReveal
from tests.unit.test_smpc_secagg_protocol import LENGTH, Harness, make_updates, plain_sum, resign


def evidence(violations: list[ProtocolViolation]) -> list[tuple[type, str, int | None]]:
    return [(type(v), v.reason, v.sender) for v in violations]


def advertise(harness: Harness) -> frozenset[int]:
    harness.adverts = {i: machine.start() for i, machine in harness.machines.items()}
    for advert in harness.adverts.values():
        harness.deliver(advert)
    return frozenset(harness.machines)


def test_an_equivocating_sender_is_named_with_the_kind_of_message() -> None:
    harness = Harness()
    advert = harness.machines[2].start()
    target = harness.machines[1]
    target.receive(advert)
    forged = resign(dataclasses.replace(advert, self_seed_commitment=bytes(32)), harness.signers[2])
    with pytest.raises(Equivocation) as error:
        target.receive(forged)
    assert (error.value.reason, error.value.sender) == ("two different AdvertiseKeys messages", 2)


def test_the_keys_transition_names_its_phase_when_adverts_are_missing_or_too_few_members_remain() -> None:
    harness = Harness()
    harness.machines[1].start()
    with pytest.raises(MissingMessages) as missing:
        harness.machines[1].on_keys_committed(frozenset({1, 2}))
    assert (missing.value.phase, missing.value.missing) == ("keys", frozenset({2}))
    with pytest.raises(RoundAborted, match="^keys: 1 members, need t \\+ 1 = 2$"):
        harness.machines[1].on_keys_committed(frozenset({1}))
    assert harness.machines[1].phase is Phase.ABORTED


def test_in_unmask_a_masked_input_outside_u3_is_stale_and_one_off_its_digest_is_evidence() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    inputs = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)) for i in (1, 2, 3)}
    target = harness.machines[4]
    target.on_inputs_committed({i: inputs[i].digest() for i in (1, 2)})
    assert target.receive(inputs[3]) is False, "3 is not in U3: its input can never count"
    forged = resign(dataclasses.replace(inputs[2], masked=bytes(4 * LENGTH)), harness.signers[2])
    with pytest.raises(ProtocolViolation) as error:
        target.receive(forged)
    assert evidence([error.value]) == [(ProtocolViolation, "masked input does not match the committed digest", 2)]
    assert target.receive(inputs[2]) is True


def test_a_buffered_masked_input_from_outside_u2_is_dropped_as_evidence() -> None:
    harness = Harness()
    members = advertise(harness)
    target = harness.machines[4]
    target.on_keys_committed(members)
    early = resign(MaskedInput(harness.config.round_id, 3, bytes(4 * LENGTH)), harness.signers[3])
    assert target.receive(early) is True, "a peer may be a block ahead: buffered"
    for i in (1, 2):
        target.receive(harness.machines[i].on_keys_committed(members))
    target.on_shares_committed(frozenset({1, 2, 4}))
    assert evidence(target.drain_violations()) == [(ProtocolViolation, "masked input from outside the shares set", 3)]


class _WrongPair(SharePlaintext):
    __slots__ = ()

    def encode(self) -> bytes:
        return SharePlaintext(self.sender, self.sender, self.self_seed_share, self.mask_key_share).encode()


class _Garbage(SharePlaintext):
    __slots__ = ()

    def encode(self) -> bytes:
        return b"\xc1"


def deal_to_holder_4(harness: Harness, monkeypatch: pytest.MonkeyPatch, plaintext: type[SharePlaintext] | None = None,
                     commitment: Callable[[bytes], bytes] | None = None) -> list[tuple[type, str, int | None]]:
    """Dealer 3 encrypts its plaintexts with `plaintext`'s encoding and commits `commitment(c)` for holder 4;
    the violations holder 4 finds when U2 is fixed."""
    members = advertise(harness)
    for i, machine in harness.machines.items():
        if i == 3 and plaintext is not None:
            monkeypatch.setattr(secagg_module, "SharePlaintext", plaintext)
        bundle = machine.on_keys_committed(members)
        monkeypatch.setattr(secagg_module, "SharePlaintext", SharePlaintext)
        assert bundle is not None
        if i == 3 and commitment is not None:
            bundle = resign(dataclasses.replace(bundle, commitments=tuple(
                (h, commitment(c) if h == 4 else c) for h, c in bundle.commitments)), harness.signers[3])
        harness.deliver(bundle)
    harness.machines[4].on_shares_committed(members)
    return evidence(harness.machines[4].drain_violations())


def test_a_share_plaintext_naming_another_pair_is_evidence_against_its_dealer(monkeypatch: pytest.MonkeyPatch) -> None:
    found = deal_to_holder_4(Harness(), monkeypatch, plaintext=_WrongPair)
    assert found == [(ProtocolViolation, "share plaintext names the wrong pair", 3)]


def test_a_malformed_share_plaintext_is_evidence_against_its_dealer(monkeypatch: pytest.MonkeyPatch) -> None:
    found = deal_to_holder_4(Harness(), monkeypatch, plaintext=_Garbage)
    assert found == [(MalformedMessage, "share plaintext is not msgpack", 3)]


@pytest.mark.parametrize("wrong_half", ["self-seed share", "mask-key share"])
def test_either_dealt_share_off_its_commitment_is_evidence_against_its_dealer(
        wrong_half: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def commitment(both: bytes) -> bytes:
        return bytes(32) + both[32:] if wrong_half == "self-seed share" else both[:32] + bytes(32)

    harness = Harness()
    found = deal_to_holder_4(harness, monkeypatch, commitment=commitment)
    assert found == [(ProtocolViolation, "dealt shares do not open the bundle's commitments to them", 3)]
    for i in (1, 2):
        harness.machines[i].on_shares_committed(frozenset(harness.machines))
    digests = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)).digest() for i in (1, 2, 4)}
    reveal = harness.machines[4].on_inputs_committed(digests)
    assert reveal is not None
    assert 3 not in dict(reveal.mask_key_shares) | dict(reveal.self_seed_shares), "no share of 3 is revealed by 4"


@pytest.mark.parametrize(("dealt_call", "kind", "survivors"), [
    (0, "self-seed", frozenset({1, 2, 3, 4})),
    (1, "mask-key", frozenset({1, 2, 4})),
])
def test_a_dealer_with_one_share_off_its_polynomial_aborts_the_round_naming_it(
        dealt_call: int, kind: str, survivors: frozenset[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Dealer 3 commits honestly to what it deals, but holder 2's share of one secret is off the polynomial.
    Four shares of degree 1 could correct one error, but a share off the polynomial that opens its dealer's
    commitment proves the dealer faulty: every node aborts naming 3 (`decide_unmask`; the contract convicts it)."""
    harness = Harness()
    members = advertise(harness)
    honest_share_secret = shamir.share_secret
    calls = [0]

    def one_off(secret: bytes, degree: int, ids: list[int], rand: field.RandomBytes) -> dict:
        shares = honest_share_secret(secret, degree, ids, rand)
        if calls[0] == dealt_call:
            shares[2] = field.add(shares[2], np.ones_like(shares[2]))
        calls[0] += 1
        return shares

    for i, machine in harness.machines.items():
        monkeypatch.setattr(shamir, "share_secret", one_off if i == 3 else honest_share_secret)
        harness.deliver(machine.on_keys_committed(members))
    monkeypatch.setattr(shamir, "share_secret", honest_share_secret)
    for machine in harness.machines.values():
        machine.on_shares_committed(members)
        assert machine.drain_violations() == []
    updates = make_updates(4, seed=21)
    inputs = {i: m.mask(updates[i]) for i, m in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    for machine in harness.machines.values():
        harness.deliver(machine.on_inputs_committed({i: inputs[i].digest() for i in survivors}))
    for machine in harness.machines.values():
        with pytest.raises(RoundAborted, match=f"shares of the {kind} of 3 contradict its advert") as aborted:
            machine.try_finish()
        assert aborted.value.culprit == 3


def test_a_lying_revealer_is_reported_with_the_owners_of_its_wrong_shares() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    updates = make_updates(4, seed=22)
    inputs = {i: m.mask(updates[i]) for i, m in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: m.digest() for i, m in inputs.items()}
    reveals = {i: m.on_inputs_committed(digests) for i, m in harness.machines.items()}
    lie = reveals[2]
    assert lie is not None
    lie = resign(dataclasses.replace(lie, self_seed_shares=tuple(
        (owner, encode_share(np.full(shamir.SECRET_CHUNKS, owner, dtype=np.uint64)) if owner in (1, 4) else share)
        for owner, share in lie.self_seed_shares)), harness.signers[2])
    target = harness.machines[1]
    for i, reveal in reveals.items():
        if i != 1:
            assert isinstance(reveal, UnmaskShares)
            target.receive(lie if i == 2 else reveal)
    result = target.try_finish()
    assert result is not None and result.lying_revealers == {2}
    assert np.array_equal(result.total, plain_sum(updates, frozenset(inputs)))
    assert evidence(target.drain_violations()) == [(WrongReveal, "revealed shares off their commitments for [1, 4]", 2)]


def test_an_observer_asked_again_for_its_reveal_still_has_none() -> None:
    """Node 4 restarted before dealing (its secrets lost) and holds no shares: it reveals nothing, and a
    repeated call, as the daemon makes after fetching missing messages, must not hand it anything to broadcast."""
    harness = Harness()
    advertise(harness)
    observer = SecAggParticipant(harness.config, 4, harness.signers[4], harness.verifier, SeededRandomBytes.from_int(99))
    harness.machines[4] = observer
    for advert in harness.adverts.values():
        observer.receive(advert)
    members = frozenset({1, 2, 3})
    for machine in harness.machines.values():
        bundle = machine.on_keys_committed(members)
        if bundle is not None:
            harness.deliver(bundle)
    for machine in harness.machines.values():
        machine.on_shares_committed(members)
    inputs = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)) for i in members}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: m.digest() for i, m in inputs.items()}
    assert observer.on_inputs_committed(digests) is None
    assert observer.on_inputs_committed(digests) is None
