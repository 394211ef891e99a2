"""The secure-aggregation state machine end to end, in process, with dropouts and bad peers."""

import dataclasses
from collections.abc import Callable

import nacl.signing
import numpy as np
import pytest

from smpc import field, messages, shamir
from smpc.errors import BadPublicKey, BadSignature, Equivocation, MissingMessages, ProtocolViolation, RoundAborted
from smpc.field import FieldArray
from smpc.keys import KeyPurpose, keypair_from_secret, pair_key
from smpc.masking import unmask_sum
from smpc.messages import AdvertiseKeys, Message, ShareKeys, UnmaskShares
from smpc.prg import MaskGenerator, SeededRandomBytes
from smpc.quantize import QuantParams, clip_l2, dequantize_sum, quantize
from smpc.secagg import (
    Phase,
    RevealGuard,
    RevealRefused,
    RoundConfig,
    SecAggParticipant,
    SecretKind,
    WrongReveal,
    check_bundle_recipients,
    verify_message,
)
from smpc.signing import Signer, ed25519_signer, ed25519_verifier, signing_payload
from smpc.simulation import DropSchedule, run_round

CHAIN = b"test-chain"
LENGTH = 32


def make_updates(n: int, seed: int) -> dict[int, np.ndarray]:
    rand = SeededRandomBytes.from_int(seed)
    return {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in range(1, n + 1)}


def config(n: int, degree: int) -> RoundConfig:
    return RoundConfig(CHAIN, round_id=7, participants=tuple(range(1, n + 1)), degree=degree, vector_length=LENGTH)


def plain_sum(updates: dict[int, np.ndarray], members: frozenset[int]) -> np.ndarray:
    return field.ring_sum([updates[i] for i in members], LENGTH)


@pytest.mark.parametrize(
    "drops",
    [
        DropSchedule(),
        DropSchedule(before_advertise=frozenset({2})),
        DropSchedule(before_share=frozenset({3})),
        DropSchedule(before_mask=frozenset({1, 6})),
        DropSchedule(before_unmask=frozenset({4})),
        DropSchedule(frozenset({7}), frozenset({2}), frozenset({5}), frozenset({1})),
    ],
)
def test_round_sums_exactly_the_survivors_with_dropouts_at_each_phase(drops: DropSchedule) -> None:
    updates = make_updates(7, seed=1)
    outcome = run_round(config(7, degree=2), updates, drops, seed=1)
    survivors = outcome.committed[2]
    assert not outcome.aborted and not outcome.violations
    assert outcome.results, "somebody must finish"
    for result in outcome.results.values():
        assert np.array_equal(result.total, plain_sum(updates, survivors))
        assert result.dropped == outcome.committed[1] - survivors


@pytest.mark.parametrize("drops", [DropSchedule(), DropSchedule(before_unmask=frozenset({4})),
                                   DropSchedule(left_out=frozenset({2, 4}))])
def test_disputed_pairs_mask_nothing_between_them_and_the_sum_stays_exact(drops: DropSchedule) -> None:
    """Pairs (2, 4) and (4, 6) exchange no mask, also when an end drops after masking (its pairs with the
    survivors are reconstructed, the disputed one is not): with the same keys, only the disputed ends' masked
    inputs differ from an undisputed run, and the survivors' sum is exact."""
    updates = make_updates(7, seed=9)
    disputed = ((2, 4), (4, 6))
    outcome = run_round(config(7, degree=2), updates, drops, seed=9, disputed=disputed)
    survivors = outcome.committed[2]
    assert not outcome.aborted and outcome.results
    for result in outcome.results.values():
        assert np.array_equal(result.total, plain_sum(updates, survivors))
        assert all(frozenset(pair) not in {frozenset(k) for k in result.dropped_pair_seeds} for pair in disputed)
    undisputed = run_round(config(7, degree=2), updates, drops, seed=9)
    masked = [messages.decode(w, config(7, 2).limits) for w in outcome.wire]
    plain = [messages.decode(w, config(7, 2).limits) for w in undisputed.wire]
    inputs = {m.sender: m.vector() for m in masked if isinstance(m, messages.MaskedInput)}
    before = {m.sender: m.vector() for m in plain if isinstance(m, messages.MaskedInput)}
    assert [i for i in inputs if not np.array_equal(inputs[i], before[i])] == [2, 4, 6]


def test_node_killed_after_sending_its_masked_input_still_counts() -> None:
    updates = make_updates(5, seed=2)
    outcome = run_round(config(5, degree=2), updates, DropSchedule(before_unmask=frozenset({3, 5})), seed=2)
    assert 3 in outcome.committed[2]
    for result in outcome.results.values():
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, 6))))


def test_below_threshold_after_masking_aborts_cleanly() -> None:
    updates = make_updates(5, seed=3)
    outcome = run_round(config(5, degree=2), updates, DropSchedule(before_mask=frozenset({1, 2, 3})), seed=3)
    assert not outcome.results
    assert set(outcome.aborted) == {4, 5}
    assert all("need t + 1 = 3" in str(reason) for reason in outcome.aborted.values())


def test_too_few_revealers_aborts_at_the_deadline() -> None:
    updates = make_updates(5, seed=4)
    outcome = run_round(config(5, degree=2), updates, DropSchedule(before_unmask=frozenset({1, 2, 3})), seed=4)
    assert not outcome.results and set(outcome.aborted) == {4, 5}
    assert all("cannot recover" in str(reason) for reason in outcome.aborted.values())


def test_no_honest_node_reveals_both_secrets_of_any_owner() -> None:
    updates = make_updates(6, seed=5)
    outcome = run_round(config(6, degree=2), updates, DropSchedule(before_mask=frozenset({2})), seed=5)
    reveals = [messages.decode(data, config(6, 2).limits) for data in outcome.wire]
    for reveal in reveals:
        if isinstance(reveal, UnmaskShares):
            seed_owners = {owner for owner, _ in reveal.self_seed_shares}
            key_owners = {owner for owner, _ in reveal.mask_key_shares}
            assert not seed_owners & key_owners
            assert key_owners == {2} and seed_owners == {1, 3, 4, 5, 6}


def test_reveal_guard_refuses_the_other_kind() -> None:
    guard = RevealGuard()
    guard.record({1: SecretKind.SELF_SEED, 2: SecretKind.MASK_KEY})
    guard.record({1: SecretKind.SELF_SEED})
    with pytest.raises(RevealRefused, match=r"^would reveal both self seed and mask key of \[2\]$"):
        guard.record({3: SecretKind.SELF_SEED, 2: SecretKind.SELF_SEED})
    assert guard.revealed() == {1: SecretKind.SELF_SEED, 2: SecretKind.MASK_KEY}


class Harness:
    """Four machines driven by hand, for targeted misbehaviour."""

    def __init__(self, n: int = 4, degree: int = 1) -> None:
        self.config = config(n, degree)
        keys = {i: nacl.signing.SigningKey(bytes([i]) * 32) for i in self.config.participants}
        self.signers = {i: ed25519_signer(k) for i, k in keys.items()}
        self.verifier = ed25519_verifier({i: bytes(k.verify_key) for i, k in keys.items()})
        self.machines = {
            i: SecAggParticipant(self.config, i, self.signers[i], self.verifier, SeededRandomBytes.from_int(40 + i))
            for i in self.config.participants
        }

    def deliver(self, message: Message, skip: int | None = None) -> None:
        for i, machine in self.machines.items():
            if i not in (message.sender, skip):
                machine.receive(message)

    def to_masked_input_phase(self, monkeypatch: pytest.MonkeyPatch | None = None, dealer: int = 0,
                              sharing: Callable[..., dict[int, FieldArray]] | None = None) -> None:
        """Keys and shares committed by every machine; with `sharing`, `dealer` deals its secrets with it instead
        of `shamir.share_secret` (patched with `monkeypatch` while it deals)."""
        self.adverts = {i: machine.start() for i, machine in self.machines.items()}
        for advert in self.adverts.values():
            self.deliver(advert)
        members = frozenset(self.machines)
        honest_share_secret = shamir.share_secret
        for i, machine in self.machines.items():
            if sharing is not None and monkeypatch is not None:
                monkeypatch.setattr(shamir, "share_secret", sharing if i == dealer else honest_share_secret)
            bundle = machine.on_keys_committed(members)
            assert bundle is not None
            self.deliver(bundle)
        if monkeypatch is not None:
            monkeypatch.setattr(shamir, "share_secret", honest_share_secret)
        for machine in self.machines.values():
            machine.on_shares_committed(members)


def resign(message: Message, signer: Signer) -> Message:
    return dataclasses.replace(message, signature=signer(signing_payload(CHAIN, message.signed_body())))


def test_second_different_commitment_of_survivors_is_refused() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    machine = harness.machines[1]
    digests = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)).digest() for i in (1, 2, 3)}
    first = machine.on_inputs_committed(digests)
    assert machine.on_inputs_committed(digests) == first
    with pytest.raises(RevealRefused):
        machine.on_inputs_committed({i: digests[i] for i in (1, 2)} | {4: b"x" * 32})


def test_bad_signature_equivocation_wrong_round_and_strangers_are_typed() -> None:
    harness = Harness()
    advert = harness.machines[2].start()
    target = harness.machines[1]
    with pytest.raises(BadSignature):
        target.receive(dataclasses.replace(advert, signature=bytes(64)))
    with pytest.raises(ProtocolViolation, match="round"):
        target.receive(dataclasses.replace(advert, round_id=8))
    with pytest.raises(ProtocolViolation, match="not a participant"):
        target.receive(dataclasses.replace(advert, sender=9))
    assert target.receive(advert) is True
    assert target.receive(advert) is False
    forged = resign(dataclasses.replace(advert, self_seed_commitment=bytes(32)), harness.signers[2])
    with pytest.raises(Equivocation):
        target.receive(forged)


def test_missing_committed_messages_leave_the_state_unchanged_until_fetched() -> None:
    harness = Harness()
    adverts = {i: m.start() for i, m in harness.machines.items()}
    target = harness.machines[1]
    for i in (3, 4):
        target.receive(adverts[i])
    with pytest.raises(MissingMessages) as missing:
        target.on_keys_committed(frozenset({1, 2, 3, 4}))
    assert missing.value.missing == frozenset({2}) and target.phase is Phase.ADVERTISE
    target.receive(adverts[2])
    assert target.on_keys_committed(frozenset({1, 2, 3, 4})) is not None


def test_stale_messages_are_ignored_not_blamed() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    assert harness.machines[1].receive(harness.adverts[2]) is False


def test_a_lying_revealer_is_named_and_the_sum_is_still_right() -> None:
    n = 7
    updates = make_updates(n, seed=6)

    def corrupt(message: Message, signer: Signer) -> Message:
        if not isinstance(message, UnmaskShares):
            return message
        bad = tuple(
            (owner, messages.encode_share(np.ones(5, dtype=np.uint64))) for owner, _ in message.self_seed_shares
        )
        return resign(dataclasses.replace(message, self_seed_shares=bad), signer)

    outcome = run_round(config(n, degree=2), updates, DropSchedule(), seed=6, tamper={4: corrupt})
    honest = {i: r for i, r in outcome.results.items() if i != 4}
    assert len(honest) == n - 1
    for result in honest.values():
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, n + 1))))
        assert result.lying_revealers == {4}


def test_a_revealer_of_a_forbidden_share_is_blamed_and_ignored() -> None:
    n = 5
    updates = make_updates(n, seed=8)

    def leak_request(message: Message, signer: Signer) -> Message:
        if not isinstance(message, UnmaskShares):
            return message
        extra = message.self_seed_shares[0]
        return resign(dataclasses.replace(message, mask_key_shares=(extra,)), signer)

    outcome = run_round(config(n, degree=1), updates, DropSchedule(), seed=8, tamper={2: leak_request})
    for i, result in outcome.results.items():
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, n + 1))))
        if i != 2:
            assert any(v.sender == 2 for v in outcome.violations[i])


def test_the_masked_input_hides_the_update() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    update = np.arange(LENGTH, dtype=np.uint32)
    masked = harness.machines[3].mask(update).vector()
    assert not np.array_equal(masked, update)
    assert np.count_nonzero(masked == update) <= 1


def test_wrong_committed_input_vector_is_a_violation() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    inputs = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)) for i in (1, 2, 3)}
    target = harness.machines[4]
    target.on_inputs_committed({i: m.digest() for i, m in inputs.items()})
    forged = resign(dataclasses.replace(inputs[2], masked=bytes(4 * LENGTH)), harness.signers[2])
    with pytest.raises(ProtocolViolation, match="committed digest"):
        target.receive(forged)
    with pytest.raises(MissingMessages):
        target.try_finish(deadline_passed=True)
    with pytest.raises(RoundAborted, match="^the contract aborted the round$"):
        raise target.abort("the contract aborted the round")
    assert target.phase is Phase.ABORTED


def test_no_published_byte_string_contains_a_plaintext_update() -> None:
    """Inspect every byte every node published: no 16-byte window of any quantized update appears,
    in either byte order, although the round recovers their exact sum."""
    n = 6
    updates = make_updates(n, seed=9)
    outcome = run_round(config(n, degree=2), updates, DropSchedule(before_unmask=frozenset({6})), seed=9)
    wire = b"".join(outcome.wire)
    for update in updates.values():
        for encoding in (update.astype("<u4").tobytes(), update.astype(">u4").tobytes()):
            windows = {encoding[k : k + 16] for k in range(0, len(encoding) - 16, 4)}
            assert not any(window in wire for window in windows)
    assert np.array_equal(outcome.results[1].total, plain_sum(updates, frozenset(range(1, n + 1))))


def test_a_restarted_node_follows_the_round_as_an_observer() -> None:
    """Node 4 advertised, then restarted (secrets lost): a fresh machine replays the committed
    blocks, deals nothing, reveals nothing, and still computes the survivors' sum."""
    harness = Harness()
    adverts = {i: m.start() for i, m in harness.machines.items()}
    restarted = SecAggParticipant(
        harness.config, 4, harness.signers[4], harness.verifier, SeededRandomBytes.from_int(99)
    )
    harness.machines[4] = restarted
    for advert in adverts.values():
        harness.deliver(advert)
    restarted.receive(adverts[4])
    keys = frozenset(adverts)
    bundles = {i: m.on_keys_committed(keys) for i, m in harness.machines.items()}
    assert bundles[4] is None
    for bundle in bundles.values():
        if bundle is not None:
            harness.deliver(bundle)
    shares = frozenset({1, 2, 3})
    for machine in harness.machines.values():
        machine.on_shares_committed(shares)
    assert not restarted.can_mask
    updates = make_updates(3, seed=10)
    inputs = {i: harness.machines[i].mask(updates[i]) for i in shares}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: m.digest() for i, m in inputs.items()}
    reveals = {i: m.on_inputs_committed(digests) for i, m in harness.machines.items()}
    assert reveals[4] is None
    for reveal in reveals.values():
        if reveal is not None:
            harness.deliver(reveal)
    result = restarted.try_finish()
    assert result is not None and np.array_equal(result.total, plain_sum(updates, shares))


def test_low_order_keys_and_partial_bundles_are_violations() -> None:
    harness = Harness()
    adverts = {i: m.start() for i, m in harness.machines.items()}
    low_order = resign(dataclasses.replace(adverts[2], mask_public_key=bytes(32)), harness.signers[2])
    with pytest.raises(BadPublicKey) as error:
        verify_message(low_order, harness.config, harness.verifier)
    assert error.value.sender == 2
    for advert in adverts.values():
        harness.deliver(advert)
    keys = frozenset(adverts)
    bundles = {i: m.on_keys_committed(keys) for i, m in harness.machines.items()}
    partial = resign(dataclasses.replace(bundles[3], ciphertexts=bundles[3].ciphertexts[:1]), harness.signers[3])
    with pytest.raises(ProtocolViolation, match="cover exactly"):
        check_bundle_recipients(partial, keys)
    check_bundle_recipients(bundles[3], keys)


def test_a_dealer_whose_shares_contradict_its_advert_is_named_as_culprit() -> None:
    n = 5
    updates = make_updates(n, seed=11)

    def false_commitment(message: Message, signer: Signer) -> Message:
        if not isinstance(message, AdvertiseKeys):
            return message
        return resign(dataclasses.replace(message, self_seed_commitment=b"\x07" * 32), signer)

    outcome = run_round(config(n, degree=2), updates, DropSchedule(), seed=11, tamper={3: false_commitment})
    assert set(outcome.results) == {3}, "only the cheater, which kept its true advert, finishes"
    assert set(outcome.aborted) == {1, 2, 4, 5}
    for aborted in outcome.aborted.values():
        assert (str(aborted), aborted.culprit) == ("the committed shares of the self-seed of 3 contradict its advert", 3)


def test_float_updates_round_trip_through_quantization_and_masking() -> None:
    """Clipped float updates -> quantize -> secure round -> dequantize: the survivors' mean within
    one quantization step per update of the plain mean of the clipped updates."""
    n = 6
    params = QuantParams.for_participants(clip_l2=1.0, max_participants=n)
    rng = np.random.default_rng(12)
    floats = {i: rng.standard_normal(LENGTH) * 0.4 for i in range(1, n + 1)}
    rand = SeededRandomBytes.from_int(12)
    quantized = {i: quantize(u, params, rand) for i, u in floats.items()}
    outcome = run_round(config(n, degree=2), quantized, DropSchedule(before_mask=frozenset({5})), seed=12)
    survivors = sorted(outcome.committed[2])
    mean = dequantize_sum(outcome.results[1].total, params) / len(survivors)
    plain = np.mean([clip_l2(floats[i], 1.0) for i in survivors], axis=0)
    assert np.max(np.abs(mean - plain)) <= 1.0 / params.scale


def test_a_node_that_masked_but_is_left_out_of_u3_is_excluded_and_stays_hidden() -> None:
    """Validation rejects node 3 after all four masked: U3 = {1, 2, 4}. The result is the sum of
    the accepted updates; for node 3 only mask-key shares are revealed, never its self-seed."""
    harness = Harness()
    harness.to_masked_input_phase()
    updates = make_updates(4, seed=13)
    inputs = {i: m.mask(updates[i]) for i, m in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    accepted = frozenset({1, 2, 4})
    digests = {i: inputs[i].digest() for i in accepted}
    reveals = {i: m.on_inputs_committed(digests) for i, m in harness.machines.items()}
    for reveal in reveals.values():
        assert reveal is not None
        assert [owner for owner, _ in reveal.mask_key_shares] == [3]
        assert 3 not in {owner for owner, _ in reveal.self_seed_shares}
        harness.deliver(reveal)
    for machine in harness.machines.values():
        result = machine.try_finish()
        assert result is not None and result.dropped == frozenset({3})
        assert np.array_equal(result.total, plain_sum(updates, accepted))


def test_two_lying_revealers_at_n_7_are_corrected_against_the_commitment_not_an_abort() -> None:
    """Issue 14, finding 5: with N = 7 and t = 4, 7 reveals correct one wrong share by decoding, so two lying
    revealers aborted every round. Each revealed share is checked against its dealer's commitment to it, so
    both liars are dropped and the five honest reveals (t + 1) rebuild every secret."""
    n = 7
    updates = make_updates(n, seed=12)

    def corrupt(message: Message, signer: Signer) -> Message:
        if not isinstance(message, UnmaskShares):
            return message
        bad = tuple((owner, messages.encode_share(np.full(5, message.sender, dtype=np.uint64)))
                    for owner, _ in message.self_seed_shares)
        return resign(dataclasses.replace(message, self_seed_shares=bad), signer)

    outcome = run_round(config(n, degree=4), updates, DropSchedule(), seed=12, tamper={3: corrupt, 6: corrupt})
    honest = {i: r for i, r in outcome.results.items() if i not in (3, 6)}
    assert len(honest) == n - 2 and not outcome.aborted
    for result in honest.values():
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, n + 1))))
        assert result.lying_revealers == {3, 6}


@pytest.mark.parametrize("n", [10, 19])
def test_f_lying_revealers_with_the_lowest_ids_cost_a_bounded_number_of_reconstructions(
        n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red team B4: f = (N - 1) // 3 revealers with the lowest ids lie about every share they reveal, at the
    default t = N - f - 1. The t + 1 honest reveals are then exactly enough and decoding corrects none of the
    liars, so checking (t + 1)-subsets against the owner's advert cost C(N, t + 1) interpolations per secret
    (C(16, 11) = 4,368 at N = 16: 22.6 s of CPU per node), and beyond 20,000 subsets (N = 19) every honest
    node aborted, nobody named. Every revealed share is now checked against its dealer's committed hash of
    it, so a liar is proven by one share and its reveals are dropped for the round: the cost is counted in
    Lagrange interpolations (deterministic, unlike a clock) and must stay within a few per secret."""
    f = (n - 1) // 3
    liars = frozenset(range(1, f + 1))
    updates = make_updates(n, seed=n)

    def corrupt(message: Message, signer: Signer) -> Message:
        if not isinstance(message, UnmaskShares):
            return message
        bad = tuple((owner, messages.encode_share(np.full(5, 1000 + message.sender, dtype=np.uint64)))
                    for owner, _ in message.self_seed_shares)
        return resign(dataclasses.replace(message, self_seed_shares=bad), signer)

    calls = [0]
    interpolate = shamir.interpolate

    def counting(points, targets):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return interpolate(points, targets)

    monkeypatch.setattr(shamir, "interpolate", counting)
    outcome = run_round(config(n, degree=n - f - 1), updates, DropSchedule(), seed=n,
                        tamper=dict.fromkeys(liars, corrupt))
    honest = {i: r for i, r in outcome.results.items() if i not in liars}
    assert len(honest) == n - f, f"honest nodes aborted: {outcome.aborted}"
    assert calls[0] <= 2 * n * n, f"{calls[0]} interpolations for {n} nodes and {n} secrets each"
    for result in honest.values():
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, n + 1))))
        assert result.lying_revealers == liars
    assert {v.sender for found in outcome.violations.values() for v in found if isinstance(v, WrongReveal)} == liars


def test_a_dealer_committing_another_share_than_it_sent_cannot_get_its_holder_named() -> None:
    """A holder checks its decrypted shares against the dealer's committed hashes before it ever reveals them:
    a dealer that commits to another share than it encrypted is a violation at that holder, which then
    reveals nothing for the dealer, so no honest holder is ever proven a liar; t + 1 other reveals suffice."""
    n, dealer, victim = 5, 3, 2
    updates = make_updates(n, seed=13)

    def false_commitment(message: Message, signer: Signer) -> Message:
        if not isinstance(message, ShareKeys):
            return message
        commitments = tuple((h, bytes(64) if h == victim else c) for h, c in message.commitments)
        return resign(dataclasses.replace(message, commitments=commitments), signer)

    outcome = run_round(config(n, degree=2), updates, DropSchedule(), seed=13, tamper={dealer: false_commitment})
    assert set(outcome.results) == set(range(1, n + 1))
    for result in outcome.results.values():
        assert result.lying_revealers == frozenset()
        assert np.array_equal(result.total, plain_sum(updates, frozenset(range(1, n + 1))))
    assert any(v.sender == dealer and "commitments" in v.reason for v in outcome.violations[victim])
    assert not any(isinstance(v, WrongReveal) for found in outcome.violations.values() for v in found)


def test_an_honest_node_cannot_recover_the_update_of_a_member_left_out_of_u3() -> None:
    """The attack on a member that masked but was excluded (node 3): every reveal is public, so anyone
    reconstructs 3's mask key and all of 3's pairwise masks, exactly as the unmask phase does for a
    dropped node. What is left of y_3 must still be hidden by 3's self mask, never revealed."""
    harness = Harness()
    harness.to_masked_input_phase()
    updates = make_updates(4, seed=14)
    inputs = {i: m.mask(updates[i]) for i, m in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    accepted = frozenset({1, 2, 4})
    reveals = [m.on_inputs_committed({i: inputs[i].digest() for i in accepted}) for m in harness.machines.values()]
    key_shares = {r.sender: messages.decode_share(dict(r.mask_key_shares)[3]) for r in reveals if r is not None}
    seed_shares = {
        owner: {r.sender: messages.decode_share(dict(r.self_seed_shares)[owner]) for r in reveals if r is not None}
        for owner in accepted
    }
    mask_key, _ = shamir.reconstruct_secret(key_shares, harness.config.degree)
    assert keypair_from_secret(mask_key).public_key == harness.adverts[3].mask_public_key, "the attack got sk_3"
    pair_seeds = {
        peer: pair_key(mask_key, harness.adverts[peer].mask_public_key, KeyPurpose.MASK, CHAIN, 7, 3, peer)
        for peer in accepted
    }
    generator = MaskGenerator(LENGTH)
    self_seeds = {owner: shamir.reconstruct_secret(shares, harness.config.degree)[0] for owner, shares in seed_shares.items()}
    survivors_sum = unmask_sum(
        {i: inputs[i].vector() for i in accepted}, self_seeds, {(3, j): s for j, s in pair_seeds.items()}, generator
    )
    assert np.array_equal(survivors_sum, plain_sum(updates, accepted)), "the attacker's pair keys are the real ones"

    residue = inputs[3].vector().copy()
    for peer, seed in pair_seeds.items():
        (generator.subtract_into if peer > 3 else generator.add_into)(residue, seed)
    assert np.count_nonzero(residue == updates[3]) <= 1, "node 3's update is exposed without its self mask"


def test_a_dealer_whose_shares_do_not_encode_a_32_byte_secret_aborts_the_round_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node 3 deals shares of a 'secret' whose last chunk is 2^32, wider than the 4 bytes it encodes.
    Reconstruction must turn that into a typed abort (the dealer's fault), not an OverflowError."""
    harness = Harness()

    def cheating_share_secret(secret: bytes, degree: int, ids: list[int], rand: field.RandomBytes) -> dict:
        chunks = shamir.secret_to_field(secret)
        chunks[-1] = np.uint64(1 << 32)
        return shamir.share_vector(chunks, degree, ids, rand)

    harness.to_masked_input_phase(monkeypatch, 3, cheating_share_secret)
    updates = make_updates(4, seed=15)
    inputs = {i: m.mask(updates[i]) for i, m in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: message.digest() for i, message in inputs.items()}
    for machine in harness.machines.values():
        reveal = machine.on_inputs_committed(digests)
        assert reveal is not None
        harness.deliver(reveal)
    for i, machine in harness.machines.items():
        with pytest.raises(RoundAborted, match="self-seed of 3 contradict its advert") as aborted:
            machine.try_finish()
        assert machine.phase is Phase.ABORTED and aborted.value.culprit == 3, i


def test_a_forbidden_reveal_is_refused_as_such_before_any_share_is_checked() -> None:
    """Member 2 reveals a mask-key share of a survivor: the reveal is refused for what it asks, not only
    caught later because the share does not open a commitment."""
    n = 5
    updates = make_updates(n, seed=8)

    def leak_request(message: Message, signer: Signer) -> Message:
        if not isinstance(message, UnmaskShares):
            return message
        owner, share = message.self_seed_shares[0]
        return resign(dataclasses.replace(message, mask_key_shares=((owner, share),)), signer)

    outcome = run_round(config(n, degree=1), updates, DropSchedule(), seed=8, tamper={2: leak_request})
    for i in outcome.results:
        if i != 2:
            reasons = [v.reason for v in outcome.violations[i] if v.sender == 2]
            assert reasons == ["reveal of a share it must not reveal"], reasons


def test_a_masked_input_received_before_the_ledger_committed_another_digest_is_evidence_against_its_sender() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    inputs = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)) for i in (1, 2, 3)}
    target = harness.machines[4]
    for message in inputs.values():
        target.receive(message)
    forged = resign(dataclasses.replace(inputs[2], masked=bytes(4 * LENGTH)), harness.signers[2])
    target.on_inputs_committed({i: (forged if i == 2 else m).digest() for i, m in inputs.items()})
    found = [(type(v), v.reason, v.sender) for v in target.drain_violations()]
    assert found == [(ProtocolViolation, "masked input differs from committed digest", 2)]
    assert target.drain_violations() == []


def test_a_node_masks_once() -> None:
    harness = Harness()
    harness.to_masked_input_phase()
    machine = harness.machines[1]
    assert machine.can_mask
    machine.mask(np.zeros(LENGTH, dtype=np.uint32))
    assert not machine.can_mask


def test_a_bundle_without_our_ciphertext_is_evidence_against_its_dealer() -> None:
    harness = Harness()
    adverts = {i: m.start() for i, m in harness.machines.items()}
    for advert in adverts.values():
        harness.deliver(advert)
    members = frozenset(harness.machines)
    bundles = {i: m.on_keys_committed(members) for i, m in harness.machines.items()}
    bundles[3] = resign(dataclasses.replace(bundles[3], ciphertexts=tuple(
        (h, c) for h, c in bundles[3].ciphertexts if h != 4)), harness.signers[3])
    target = harness.machines[4]
    for sender, bundle in bundles.items():
        if sender != 4:
            target.receive(bundle)
    target.on_shares_committed(members)
    found = [(v.reason, v.sender) for v in target.drain_violations()]
    assert ("share bundle has no ciphertext for us", 3) in found
    assert all(sender == 3 for _, sender in found)


def test_each_transition_names_its_phase_when_messages_are_missing_or_too_few_members_remain() -> None:
    harness = Harness()
    adverts = {i: m.start() for i, m in harness.machines.items()}
    for advert in adverts.values():
        harness.deliver(advert)
    members = frozenset(harness.machines)
    bundles = {i: m.on_keys_committed(members) for i, m in harness.machines.items()}
    target = harness.machines[4]
    for sender in (1, 3):
        target.receive(bundles[sender])
    with pytest.raises(MissingMessages) as missing:
        target.on_shares_committed(members)
    assert (missing.value.phase, missing.value.missing) == ("shares", frozenset({2}))
    with pytest.raises(RoundAborted, match="shares: 1 members, need t \\+ 1 = 2"):
        harness.machines[1].on_shares_committed(frozenset({1}))
    harness = Harness()
    harness.to_masked_input_phase()
    with pytest.raises(RoundAborted, match="inputs: 1 members, need t \\+ 1 = 2"):
        harness.machines[1].on_inputs_committed({1: b"d" * 32})
    harness = Harness()
    harness.to_masked_input_phase()
    inputs = {i: harness.machines[i].mask(np.zeros(LENGTH, dtype=np.uint32)) for i in (1, 2, 3)}
    target = harness.machines[4]
    target.on_inputs_committed({i: m.digest() for i, m in inputs.items()})
    assert target.try_finish() is None, "before the deadline it waits for the masked inputs and reveals"
    with pytest.raises(MissingMessages) as missing:
        target.try_finish(deadline_passed=True)
    assert (missing.value.phase, missing.value.missing) == ("unmask", frozenset({1, 2, 3}))


def test_junk_reveals_do_not_count_towards_going_late_so_late_honest_reveals_are_waited_for() -> None:
    """Two lying revealers at N = 5, t = 2: their junk reveals and one honest reveal reach node 5 first. A count of
    revealers (4 >= t + 1) let a loaded 7-node cluster go late and abort on reveals that were only late, while the
    nodes that waited unmasked: neither a result nor an abort could commit. `recoverable` counts only reveals that
    open their commitments, so the late path is taken once it can complete, and it names the liars."""
    harness = Harness(n=5, degree=2)
    harness.to_masked_input_phase()
    updates = make_updates(5, seed=9)
    inputs = {i: harness.machines[i].mask(updates[i]) for i in harness.machines}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: m.digest() for i, m in inputs.items()}
    reveals = {i: machine.on_inputs_committed(digests) for i, machine in harness.machines.items()}
    target, liars, late = harness.machines[5], (1, 2), 4
    junk = messages.encode_share(np.full(5, 7, dtype=np.uint64))
    for liar in liars:
        reveal = reveals[liar]
        assert reveal is not None
        forged = dataclasses.replace(reveal, self_seed_shares=tuple((o, junk) for o, _ in reveal.self_seed_shares))
        target.receive(resign(forged, harness.signers[liar]))
    target.receive(reveals[3])  # type: ignore[arg-type]
    assert not target.recoverable(), "own + one honest reveal: 2 shares of each seed, t + 1 = 3 needed"
    target.receive(reveals[late])  # type: ignore[arg-type]
    assert target.recoverable()
    result = target.try_finish(deadline_passed=True)
    assert result is not None and result.lying_revealers == frozenset(liars)
    assert np.array_equal(result.total, plain_sum(updates, frozenset(harness.machines)))
