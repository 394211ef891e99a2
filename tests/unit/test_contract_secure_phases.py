"""The round contract's secure and validated phases, driven directly with signed transactions (no `SecureRound`).

Keys, shares, inputs, seed, sketch, validate and unmask (module doc of `node.contract`), the next round's key
phases running ahead, and the absent and excluded bookkeeping, at N = 4 (f = 1, t = t_v = 1): which
transaction each phase accepts, why it refuses the others, the exact members each close fixes and the checks
a replica must perform. The `sa` messages are real ones (`SecAggParticipant`, fixed seeds), built once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import pytest

from node import contract as rc
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.prg import SeededRandomBytes
from smpc.secagg import SecAggParticipant
from smpc.validation import seed_commitment
from tests.unit.test_contract import CHAIN, KEYS, M0, N, block, tx, validated_contract, verify

ALL = tuple(range(N))
M1 = hashlib.sha256(b"model 1").digest()


def secure() -> rc.Contract:
    """As `validated_contract`, without validation: keys, shares, inputs, unmask."""
    c = validated_contract()
    c.params = dataclasses.replace(c.params, validate=False)
    return c


def _h(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


@functools.cache
def sa_messages(round_id: int, u1: tuple[int, ...]) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Every member's encoded AdvertiseKeys for `round_id` (all members participate), and the ShareKeys of
    the members of `u1` once U1 = `u1`."""
    config = validated_contract().params.round_config(round_id, ALL)
    members = [SecAggParticipant(config, i + 1, lambda b, i=i: KEYS[i].sign(b).signature,  # type: ignore[misc]
                                 lambda s, d, sig: verify(s - 1, d, sig),
                                 SeededRandomBytes(_h("secure phases", round_id, i)))
               for i in ALL]
    adverts = [m.start() for m in members]
    for m in members:
        for a in adverts:
            if a.sender != m.me:
                m.receive(a)
    holders = frozenset(i + 1 for i in u1)
    shares = {i: members[i].on_keys_committed(holders) for i in u1}
    return ({i: sam.encode(a) for i, a in enumerate(adverts)},
            {i: sam.encode(s) for i, s in shares.items() if s is not None})


def reveal_value(author: int, round_id: int) -> bytes:
    return _h("reveal", author, round_id)


def digest(author: int, round_id: int) -> bytes:
    return _h("masked input", author, round_id)


def channel_secret(holder: int, dealer: int, round_id: int) -> bytes:
    return _h("channel secret", holder, dealer, round_id)


def channel_keys(holder: int, round_id: int) -> bytes:
    """The channel public keys `holder` publishes in its `reveal`, one per member."""
    return b"".join(vm.channel_public_key(channel_secret(holder, d, round_id)) for d in ALL)


def ciphertext(dealer: int, holder: int, round_id: int) -> bytes:
    """Stands for the sketch shares `dealer` encrypted to `holder`, whose hash its `dealt` commits."""
    return _h("sketch ciphertext", dealer, holder, round_id) * 3


def ciphertext_hashes(dealer: int, round_id: int, holders: tuple[int, ...]) -> bytes:
    return b"".join(hashlib.sha256(ciphertext(dealer, h, round_id)).digest() for h in holders)


def weight(author: int) -> int:
    return 10 + author


class Driver:
    """Blocks proposed by member 0 for one contract: `commit` applies them, `check` only checks."""

    def __init__(self, c: rc.Contract) -> None:
        self.c = c

    @property
    def s(self) -> rc.ContractState:
        return self.c.state

    def commit(self, *txs: bytes) -> list[rc.Event]:
        return self.c.apply_block(block(self.s.height + 1, 0, *txs))

    def check(self, *txs: bytes) -> list[rc.Check]:
        return self.c.check_block(block(self.s.height + 1, 0, *txs))

    def refused(self, match: str, *txs: bytes) -> None:
        with pytest.raises(rc.TxError, match=match):
            self.check(*txs)

    def open(self, round_id: int = 1, participants: tuple[int, ...] = ALL) -> list[rc.Event]:
        return self.commit(tx("open", 0, round_id, self.s.model_hash, list(participants)))

    def inputs(self, phase: str, members: tuple[int, ...], round_id: int | None = None) -> list[bytes]:
        """The input tx of each of `members` for `phase` of the open round (or of `round_id`, ahead)."""
        r = self.s.round if round_id is None else round_id
        ahead = r != self.s.round
        if phase == "keys":
            return [tx("sa", a, r, sa_messages(r, ALL)[0][a]) for a in members]
        if phase == "shares":
            return [tx("sa", a, r, sa_messages(r, self.s.ahead_u1 if ahead else self.s.u1)[1][a]) for a in members]
        if phase == "inputs":
            return [tx("input", a, r, digest(a, r), weight(a), seed_commitment(CHAIN, r, a, reveal_value(a, r)))
                    for a in members]
        if phase == "seed":
            return [tx("reveal", a, r, reveal_value(a, r), channel_keys(a, r)) for a in members]
        if phase == "sketch":
            return [tx("dealt", a, r, _h("dealt", a, r), ciphertext_hashes(a, r, self.s.expected)) for a in members]
        assert phase == "validate"
        return [tx("stats", a, r, bytes(8 * self.c._statistics_count())) for a in members]

    def close(self, phase: str, members: tuple[int, ...]) -> list[rc.Event]:
        """Commit `members`' inputs of `phase` and the close (in validate, an `accept` of them); the close must
        be valid."""
        closing = tx("accept", 0, self.s.round, list(members), [], 0) if phase == "validate" else \
            tx("close", 0, self.s.round, phase)
        self.check(*self.inputs(phase, members), closing)
        return self.commit(*self.inputs(phase, members), closing)

    def to(self, phase: str, members: dict[str, tuple[int, ...]] | None = None) -> Driver:
        """Open round 1 and close its phases before `phase`, each with every expected member but those
        `members` names for it."""
        self.open()
        while self.s.phase != phase:
            self.close(self.s.phase, (members or {}).get(self.s.phase, self.s.expected))
        return self


def close_tx(phase: str, round_id: int = 1) -> bytes:
    return tx("close", 0, round_id, phase)


# ------------------------------------------------------------------------------------------ a whole round


def test_a_validated_round_fixes_each_set_and_yields_exact_events_and_checks() -> None:
    d = Driver(validated_contract())
    s = d.s
    assert d.open() == [rc.RoundOpened(1, ALL, M0, 1)]
    assert (s.phase, s.expected, s.u1, s.excluded, s.ahead_phase) == ("keys", ALL, (), (), "keys")
    adverts = sa_messages(1, ALL)[0]
    assert d.check(*d.inputs("keys", ALL), close_tx("keys")) == []
    assert d.close("keys", ALL) == [*(rc.SecAggCommitted(1, a, adverts[a]) for a in ALL),
                                    rc.PhaseClosed(1, "keys", ALL, (), 2)]
    assert (s.phase, s.expected, s.u1, s.inputs, s.absent) == ("shares", ALL, ALL, {}, ())
    shares = sa_messages(1, ALL)[1]
    assert d.close("shares", ALL) == [*(rc.SecAggCommitted(1, a, shares[a]) for a in ALL),
                                      rc.PhaseClosed(1, "shares", ALL, (), 3)]
    assert (s.phase, s.expected) == ("inputs", ALL)
    digests = tuple((a, digest(a, 1)) for a in ALL)
    weights = tuple((a, weight(a)) for a in ALL)
    assert d.close("inputs", ALL) == [rc.PhaseClosed(1, "inputs", ALL, digests, 4, weights)]
    assert (s.phase, s.expected, s.excluded, s.digests, s.weights) == ("seed", ALL, (), dict(digests), dict(weights))
    assert s.seed_commitments == {a: seed_commitment(CHAIN, 1, a, reveal_value(a, 1)) for a in ALL}
    reveals = tuple((a, reveal_value(a, 1)) for a in ALL)
    channels = tuple((a, channel_keys(a, 1)) for a in ALL)
    assert d.close("seed", ALL) == [rc.PhaseClosed(1, "seed", ALL, (), 5, (), reveals, channels)]
    assert (s.phase, s.expected) == ("sketch", ALL)
    dealt = tuple((a, _h("dealt", a, 1)) for a in ALL)
    assert d.close("sketch", ALL) == [rc.PhaseClosed(1, "sketch", ALL, (), 6, (), dealt)]
    assert (s.phase, s.expected) == ("validate", ALL)
    stats = d.inputs("validate", ALL)
    assert d.commit(*stats) == []
    published = tuple((a, bytes(8 * 10)) for a in ALL)
    accept = tx("accept", 0, 1, [0, 1, 2], [], 0)
    assert d.check(accept) == [rc.ValidationCheck(1, ALL, published, (0, 1, 2), 1, weights, tuple((a, 0) for a in ALL))]
    assert d.commit(accept) == [rc.PhaseClosed(1, "validate", (0, 1, 2), digests[:3], 8, weights[:3])]
    assert (s.phase, s.expected, s.rejected, s.rejections) == ("unmask", (0, 1, 2), (3,), {3: 1})
    assert (s.digests, s.weights) == (dict(digests[:3]), dict(weights[:3]))
    result = tx("result", 0, 1, [0, 1, 2], M1)
    assert d.check(result) == [rc.AggregateCheck(1, M0, tuple((a, digest(a, 1), 0) for a in (0, 1, 2)), M1, ())]
    assert d.commit(result) == [rc.RoundOutcome(1, True, (0, 1, 2), M1, 9, (3,))]
    assert (s.open, s.model_hash, s.absent) == (False, M1, ())


def test_a_secure_round_unmasks_u3_after_its_inputs_phase() -> None:
    d = Driver(secure()).to("inputs", {"keys": ALL})
    assert d.close("inputs", (0, 1, 3))[-1] == rc.PhaseClosed(
        1, "inputs", (0, 1, 3), tuple((a, digest(a, 1)) for a in (0, 1, 3)), 4, tuple((a, weight(a)) for a in (0, 1, 3)))
    assert (d.s.phase, d.s.expected, d.s.excluded) == ("unmask", (0, 1, 3), ())
    d.refused("exactly the round's committed inputs", tx("result", 0, 1, [0, 1, 2], M1))
    result = tx("result", 0, 1, [0, 1, 3], M1)
    assert d.check(result) == [rc.AggregateCheck(1, M0, tuple((a, digest(a, 1), 0) for a in (0, 1, 3)), M1, ())]
    assert d.commit(result) == [rc.RoundOutcome(1, True, (0, 1, 3), M1, 5)]


def test_rejections_accumulate_over_rounds_and_feed_the_next_validation_check() -> None:
    d = Driver(validated_contract()).to("validate")
    d.commit(*d.inputs("validate", ALL), tx("accept", 0, 1, [0, 1, 3], [], 0))
    d.commit(tx("result", 0, 1, [0, 1, 3], M1))
    d.open(2)
    while d.s.phase != "validate":
        d.close(d.s.phase, ALL)
    d.commit(*d.inputs("validate", ALL))
    assert d.c.validation_check(None).history == ((0, 0), (1, 0), (2, 1), (3, 0))
    d.commit(tx("accept", 0, 2, [0, 1, 3], [], 0))
    assert d.s.rejections == {2: 2}


@pytest.mark.parametrize(("genesis_bound", "named", "refusal"), [
    (10_000_000, 0, r"^next round's bound 0 outside \(0, 10000000\]$"),
    (10_000_000, 10_000_001, r"^next round's bound 10000001 outside \(0, 10000000\]$"),
    (0, 5, r"^next round's bound 5 without a per-round bound$"),
    (10_000_000, 1, None),
    (10_000_000, 10_000_000, None),
    (0, 0, None),
])
def test_an_accept_names_a_next_bound_within_c_exactly_when_genesis_asks_for_one(
        genesis_bound: int, named: int, refusal: str | None) -> None:
    """`accept` [S, L, B']: with `clip_factor` in genesis (B = C = 10 in millionths here) B' is in (0, C], without it
    B' is 0. The replicas' check carries the round's B and the B' named (each replica compares B' with its own);
    B changes only when the round's result commits."""
    c = validated_contract()
    c.params = dataclasses.replace(c.params, clip_bound_micro=genesis_bound)
    c.state.clip_bound_micro = genesis_bound
    d = Driver(c).to("validate")
    d.commit(*d.inputs("validate", ALL))
    accept = tx("accept", 0, 1, list(ALL), [], named)
    if refusal is not None:
        d.refused(refusal, accept)
        return
    [check] = d.check(accept)
    assert isinstance(check, rc.ValidationCheck)
    assert (check.liars, check.clip_bound_micro, check.next_clip_bound_micro) == ((), genesis_bound, named)
    d.commit(accept)
    assert (d.s.clip_bound_micro, d.s.next_clip_bound_micro) == (genesis_bound, named)
    d.commit(tx("result", 0, 1, list(ALL), M1))
    assert d.s.clip_bound_micro == (named or genesis_bound)


def test_an_accept_records_inconsistent_publishers_without_excluding_them() -> None:
    """`accept` [S, L, B']: L are publishers (at most as many as the statistics can be decided without), recorded
    in the round's outcome and not excluded: a dealer can put an honest holder's shares off the polynomial (red
    team r9 a1), so L is evidence, not proof (here with f = 0, so that 4 publishers leave room for one at N = 4,
    and 2 updates may commit)."""
    def validating() -> Driver:
        c = validated_contract()
        c.params = dataclasses.replace(c.params, faulty=0, min_updates=2)
        return Driver(c).to("validate")

    partial = validating()
    partial.commit(*partial.inputs("validate", (0, 1, 2)))
    partial.refused("not publishers", tx("accept", 0, 1, [0, 1, 2], [3], 0))
    d = validating()
    d.commit(*d.inputs("validate", ALL))
    d.refused("not publishers the statistics can be decided without", tx("accept", 0, 1, [0, 1, 2], [2, 3], 0))
    accept = tx("accept", 0, 1, [0, 1, 2], [3], 0)
    [check] = d.check(accept)
    assert isinstance(check, rc.ValidationCheck) and (check.accepted, check.liars) == ((0, 1, 2), (3,))
    d.commit(accept)
    assert (d.s.liars, d.s.absent) == ((3,), ())
    [aborted] = d.c.shadow().apply_block(block(d.s.height + 1, 0, tx("abort", 0, 1, "the sum failed a check")))
    assert isinstance(aborted, rc.RoundOutcome) and (aborted.committed, aborted.liars) == (False, (3,))
    assert d.commit(tx("result", 0, 1, [0, 1, 2], M1)) == [rc.RoundOutcome(1, True, (0, 1, 2), M1, 9, (3,), liars=(3,))]
    d.open(2)
    assert (d.s.excluded, d.s.liars) == ((), ())


# ------------------------------------------------------------------------------ which tx in which phase

OTHER_INPUTS = {
    "keys": lambda: tx("sa", 1, 1, sa_messages(1, ALL)[0][1]),
    "shares": lambda: tx("sa", 1, 1, sa_messages(1, ALL)[1][1]),
    "inputs": lambda: tx("input", 1, 1, digest(1, 1), weight(1), seed_commitment(CHAIN, 1, 1, reveal_value(1, 1))),
    "seed": lambda: tx("reveal", 1, 1, reveal_value(1, 1), channel_keys(1, 1)),
    "sketch": lambda: tx("dealt", 1, 1, _h("dealt", 1, 1), ciphertext_hashes(1, 1, ALL)),
    "validate": lambda: tx("stats", 1, 1, bytes(80)),
}
"""Member 1's input of each phase of round 1, every member in every set."""


@pytest.mark.parametrize("phase", ["keys", "shares", "inputs", "seed", "sketch", "validate"])
def test_each_phase_takes_only_its_own_input_once_from_an_expected_member(phase: str) -> None:
    d = Driver(validated_contract()).to(phase)
    own = d.inputs(phase, (1,))[0]
    assert own == OTHER_INPUTS[phase]() and d.c.tx_valid_now(d.c.parse(own)) and d.check(own) == []
    d.refused(f"member 1 for round 1: a second input in phase {phase}", own, own)
    for other, make in OTHER_INPUTS.items():
        if other != phase:
            assert not d.c.tx_valid_now(d.c.parse(make())), other
            d.refused(f"from member 1 for round 1: not expected in phase {phase}", make())


def test_a_key_message_of_the_other_key_phase_is_refused() -> None:
    d = Driver(validated_contract()).to("shares")
    advert = tx("sa", 1, 1, sa_messages(1, ALL)[0][1])
    assert not d.c.tx_valid_now(d.c.parse(advert))
    d.refused("sa from member 1 for round 1: not expected in phase shares", advert)


def test_inputs_of_another_round_are_refused() -> None:
    d = Driver(validated_contract()).to("inputs")
    d.refused(r"input for round 2, but round 1 open=True", *d.inputs("inputs", (1,), round_id=2))
    d.refused(r"close for round 3, but round 1 open=True", close_tx("inputs", 3))


def test_an_input_from_a_non_participant_is_refused_in_every_phase() -> None:
    d = Driver(validated_contract())
    d.open(1, (0, 1, 2))
    assert d.s.excluded == ()
    while True:
        phase = d.s.phase
        raw = tx("sa", 3, 1, sa_messages(1, ALL)[1][3]) if phase == "shares" else d.inputs(phase, (3,))[0]
        d.refused(f"member 3 for round 1: not expected in phase {phase}", raw)
        if phase == "seed":  # 3 < 2 t_v + 1 + f inputs: the round cannot validate
            break
        d.close(phase, (0, 1, 2))


def test_a_member_outside_the_previous_set_is_not_expected() -> None:
    """U1 = {0, 1, 2}: member 3 may not deal shares, nor mask, nor (outside U3) reveal."""
    d = Driver(validated_contract()).to("shares", {"keys": (0, 1, 2)})
    assert (d.s.u1, d.s.expected, d.s.absent) == ((0, 1, 2), (0, 1, 2), (3,))
    d.refused("member 3 for round 1: not expected in phase shares", tx("sa", 3, 1, sa_messages(1, ALL)[0][3]))
    d.close("shares", (0, 1, 2))
    d.refused("member 3 for round 1: not expected in phase inputs", *d.inputs("inputs", (3,)))


def test_an_sa_message_for_another_sender_bad_signature_or_short_bundle_is_refused() -> None:
    d = Driver(validated_contract()).to("keys")
    adverts = sa_messages(1, ALL)[0]
    d.refused("sa tx carries the wrong message for phase keys", tx("sa", 1, 1, adverts[2]))
    message = sam.decode(adverts[1], d.c.params.round_config(1, ALL).limits)
    forged = sam.encode(dataclasses.replace(message, signature=KEYS[0].sign(b"x").signature))
    d.refused("invalid secure-aggregation message from member 1", tx("sa", 1, 1, forged))
    d.close("keys", ALL)
    bundle = sam.decode(sa_messages(1, ALL)[1][1], d.c.params.round_config(1, ALL).limits)
    assert isinstance(bundle, sam.ShareKeys)
    short = sam.encode(dataclasses.replace(bundle, ciphertexts=bundle.ciphertexts[1:]))
    d.refused("invalid secure-aggregation message from member 1", tx("sa", 1, 1, short))


def test_shares_dealt_for_another_u1_are_refused() -> None:
    """U1 = {0, 1, 2}: a bundle that also covers member 3 does not match it."""
    d = Driver(validated_contract()).to("shares", {"keys": (0, 1, 2)})
    d.refused("invalid secure-aggregation message from member 1: .*share bundle does not cover exactly the other",
              tx("sa", 1, 1, sa_messages(1, ALL)[1][1]))


def test_a_reveal_that_does_not_open_the_commitment_is_refused() -> None:
    d = Driver(validated_contract()).to("seed")
    d.refused("reveal from member 2 does not open its committed seed commitment",
              tx("reveal", 2, 1, reveal_value(1, 1), channel_keys(2, 1)))
    assert d.check(*d.inputs("seed", (2,))) == []


@pytest.mark.parametrize("length", [8 * 10 - 8, 8 * 10 + 8, 8 * 6])
def test_statistics_of_the_wrong_length_are_refused(length: int) -> None:
    d = Driver(validated_contract()).to("validate")
    stats = tx("stats", 1, 1, bytes(length))
    assert not d.c.tx_valid_now(d.c.parse(stats))
    d.refused("stats from member 1 for round 1: not expected in phase validate", stats)


def test_statistics_for_a_smaller_v_have_fewer_entries() -> None:
    """V = {0, 1, 2} (member 3 outside U3): 3 norms and 3 distances, 48 bytes."""
    d = Driver(validated_contract()).to("validate", {"inputs": (0, 1, 2)})
    assert d.s.expected == (0, 1, 2) and d.c._statistics_count() == 6
    assert d.check(tx("stats", 1, 1, bytes(48))) == []
    d.refused("not expected in phase validate", tx("stats", 1, 1, bytes(80)))


def test_statistics_outside_the_field_are_refused() -> None:
    d = Driver(validated_contract()).to("validate")
    stats = tx("stats", 1, 1, b"\xff" * 80)
    assert d.c.tx_valid_now(d.c.parse(stats))
    d.refused("stats from member 1: ", stats)


# ------------------------------------------------------------------------------------------ closing


@pytest.mark.parametrize(("phase", "closing", "why"), [
    ("keys", close_tx("shares"), "close cannot end phase keys"),
    ("shares", close_tx("keys"), "close cannot end phase shares"),
    ("seed", tx("accept", 0, 1, [0, 1, 2], [], 0), "accept cannot end phase seed"),
    ("validate", close_tx("validate"), "close cannot end phase validate"),
    ("inputs", tx("result", 0, 1, [0, 1, 2, 3], M1), "result cannot end phase inputs"),
    ("unmask", close_tx("unmask"), "close cannot end phase unmask"),
])
def test_a_phase_closes_only_with_its_own_closing_tx(phase: str, closing: bytes, why: str) -> None:
    d = Driver(validated_contract()).to(phase)
    if phase == "validate":
        d.commit(*d.inputs(phase, ALL))
    d.refused(why, closing)


def test_a_close_by_another_member_than_the_proposer_is_refused() -> None:
    d = Driver(validated_contract()).to("keys")
    d.refused("close tx must be authored by the block proposer", *d.inputs("keys", ALL), tx("close", 1, 1, "keys"))


@pytest.mark.parametrize("phase", ["keys", "shares", "inputs"])
def test_a_close_that_omits_an_expected_member_needs_a_deadline_check(phase: str) -> None:
    d = Driver(validated_contract()).to(phase)
    assert d.check(*d.inputs(phase, ALL), close_tx(phase)) == []
    assert d.check(*d.inputs(phase, (0, 1, 2)), close_tx(phase)) == [rc.DeadlineCheck(1, phase)]


def test_an_accept_needs_the_statistics_of_every_holder_of_v_when_nobody_is_excluded() -> None:
    """N = 4, f_eff = 1: 2 t_v + 1 + f_eff = 4 publishers, so all of V; the accept is judged on the statistics."""
    d = Driver(validated_contract()).to("validate")
    accept = tx("accept", 0, 1, [0, 1, 2], [], 0)
    assert [type(c) for c in d.check(*d.inputs("validate", ALL), accept)] == [rc.ValidationCheck]
    d.refused("phase validate has 3 inputs, needs 4: abort", *d.inputs("validate", (0, 1, 2)), accept)


def test_a_close_that_omits_only_absent_members_needs_no_deadline_check() -> None:
    d = Driver(validated_contract()).to("shares", {"keys": (0, 1, 2)})
    assert d.s.absent == (3,)
    assert d.check(*d.inputs("shares", (0, 1, 2)), close_tx("shares")) == []


@pytest.mark.parametrize("phase", ["keys", "shares", "inputs"])
def test_the_key_and_input_phases_need_min_members(phase: str) -> None:
    """t + 1 = 2 but min_updates = 3: three inputs close the phase, two are refused."""
    d = Driver(validated_contract()).to(phase)
    assert d.check(*d.inputs(phase, (0, 1, 2)), close_tx(phase)) == [rc.DeadlineCheck(1, phase)]
    d.refused(f"phase {phase} has 2 inputs, needs 3: abort", *d.inputs(phase, (0, 1)), close_tx(phase))


@pytest.mark.parametrize("phase", ["seed", "sketch", "validate"])
def test_validation_phases_need_2tv_plus_1_plus_f_inputs(phase: str) -> None:
    """Nobody excluded: f_eff = f = 1, so 2 t_v + 1 + f_eff = 4 inputs; 3 are refused."""
    d = Driver(validated_contract()).to(phase)
    closing = tx("accept", 0, 1, list(ALL), [], 0) if phase == "validate" else close_tx(phase)
    assert d.c.min_inputs(phase) == 4
    assert len(d.check(*d.inputs(phase, ALL), closing)) == (1 if phase == "validate" else 0)
    d.refused(f"phase {phase} has 3 inputs, needs 4: abort", *d.inputs(phase, (0, 1, 2)), closing)


@pytest.mark.parametrize("phase", ["seed", "sketch", "validate"])
def test_with_one_member_excluded_validation_phases_need_one_fewer(phase: str) -> None:
    """Member 3 outside U3 is excluded: f_eff = 0, so exactly 3 inputs close the phase and 2 are refused."""
    d = Driver(validated_contract()).to(phase, {"inputs": (0, 1, 2)})
    closing = tx("accept", 0, 1, [0, 1, 2], [], 0) if phase == "validate" else close_tx(phase)
    assert (d.s.excluded, d.s.expected, d.c.effective_faulty, d.c.min_inputs(phase)) == ((3,), (0, 1, 2), 0, 3)
    assert rc.DeadlineCheck(1, phase) not in d.check(*d.inputs(phase, (0, 1, 2)), closing)
    d.refused(f"phase {phase} has 2 inputs, needs 3: abort", *d.inputs(phase, (0, 1)), closing)


def test_without_exclude_late_a_member_outside_u3_does_not_lower_the_threshold() -> None:
    c = validated_contract()
    c.params = dataclasses.replace(c.params, exclude_late=False)
    d = Driver(c).to("seed", {"inputs": (0, 1, 2)})
    assert (d.s.excluded, d.c.effective_faulty) == ((3,), 1)
    d.refused("phase seed has 3 inputs, needs 4: abort", *d.inputs("seed", (0, 1, 2)), close_tx("seed"))


# ------------------------------------------------------------------------------------------ validate


@pytest.mark.parametrize(("accepted", "why"), [
    ([0, 1], r"accepted set \(0, 1\) is not a large enough subset of \(0, 1, 2, 3\)"),
    ([0], r"accepted set \(0,\) is not"),
])
def test_an_accepted_set_below_min_members_is_refused(accepted: list[int], why: str) -> None:
    d = Driver(validated_contract()).to("validate")
    d.commit(*d.inputs("validate", ALL))
    d.refused(why, tx("accept", 0, 1, accepted, [], 0))
    assert len(d.check(tx("accept", 0, 1, [0, 1, 2], [], 0))) == 1


def test_an_accepted_set_outside_v_is_refused() -> None:
    d = Driver(validated_contract()).to("validate", {"inputs": (0, 1, 2)})
    d.commit(*d.inputs("validate", (0, 1, 2)))
    d.refused(r"accepted set \(0, 1, 2, 3\) is not a large enough subset of \(0, 1, 2\)", tx("accept", 0, 1, [0, 1, 2, 3], [], 0))
    d.refused(r"accepted set \(1, 2, 3\) is not", tx("accept", 0, 1, [1, 2, 3], [], 0))


def test_the_validation_check_carries_v_the_published_shares_and_the_weights() -> None:
    d = Driver(validated_contract()).to("validate", {"inputs": (0, 2, 3)})
    d.commit(*d.inputs("validate", (3, 0)))
    check = d.c.validation_check((0, 3))
    assert check == rc.ValidationCheck(1, (0, 2, 3), ((0, bytes(48)), (3, bytes(48))), (0, 3), 0,
                                       ((0, 10), (2, 12), (3, 13)), ((0, 0), (2, 0), (3, 0)))


@pytest.mark.parametrize(("published", "check"), [
    (ALL, "validation"), ((0, 1, 2), "deadline")])
def test_an_abort_in_validate_is_judged_on_the_statistics_once_all_published(published: tuple[int, ...],
                                                                            check: str) -> None:
    d = Driver(validated_contract()).to("validate")
    d.commit(*d.inputs("validate", published))
    expected = d.c.validation_check(None) if check == "validation" else \
        rc.DeadlineCheck(1, "validate", rc.VALIDATE_ABORT_DEADLINES)
    assert d.check(tx("abort", 0, 1, "undecidable")) == [expected]


# ------------------------------------------------------------------------------------------ aborts, absent


@pytest.mark.parametrize(("phase", "present", "missing"), [
    ("keys", (0, 1), (2, 3)), ("shares", (0, 1), (2, 3)), ("inputs", (1, 2), (0, 3)), ("seed", (0, 1, 2), (3,)),
    ("sketch", (1, 2, 3), (0,))])
def test_an_abort_for_too_few_inputs_names_the_missing_and_makes_them_absent(
        phase: str, present: tuple[int, ...], missing: tuple[int, ...]) -> None:
    d = Driver(validated_contract()).to(phase)
    d.commit(*d.inputs(phase, present))
    abort = tx("abort", 0, 1, "deadline")
    assert d.check(abort) == [rc.DeadlineCheck(1, phase)]
    height = d.s.height + 1
    assert d.commit(abort) == [rc.RoundOutcome(1, False, (), M0, height, missing=missing)]
    assert (d.s.open, d.s.absent, d.s.absent_since) == (False, missing, {m: 2 for m in missing})


def test_an_abort_in_unmask_past_its_deadline_names_the_members_of_u1_without_a_committed_reveal() -> None:
    """Whom it names when some did reveal, and that a proof of a bad dealer names nobody:
    tests/unit/test_contract_reveals.py."""
    d = Driver(validated_contract()).to("unmask")
    assert d.commit(tx("abort", 0, 1, "stuck"))[-1].missing == ALL  # type: ignore[union-attr]
    assert d.s.absent == ALL


def test_an_abort_in_validate_names_the_holders_without_statistics_that_did_not_complain() -> None:
    """Whom else it names: tests/unit/test_contract_complaints.py."""
    d = Driver(validated_contract()).to("validate")
    d.commit(tx("complaint", 2, 1, 0))
    assert d.commit(tx("abort", 0, 1, "stuck"))[-1].missing == (0, 1, 3)  # type: ignore[union-attr]
    assert d.s.absent == (0, 1, 3)


def test_an_abort_with_enough_inputs_names_nobody() -> None:
    d = Driver(validated_contract()).to("seed")
    d.commit(*d.inputs("seed", ALL))
    assert d.commit(tx("abort", 0, 1, "stuck"))[-1].missing == ()  # type: ignore[union-attr]


def test_an_abort_does_not_name_the_excluded() -> None:
    """Member 3 is outside U3 (excluded): the seed phase aborting with two reveals names only member 2."""
    d = Driver(validated_contract()).to("seed", {"inputs": (0, 1, 2)})
    d.commit(*d.inputs("seed", (0, 1)))
    assert d.commit(tx("abort", 0, 1, "deadline"))[-1].missing == (2,)  # type: ignore[union-attr]
    assert d.s.absent == (2,)


def test_a_member_absent_when_the_round_opens_is_excluded_and_not_awaited() -> None:
    d = Driver(validated_contract())
    d.s.absent, d.s.absent_since = (3,), {3: 1}
    d.open()
    assert (d.s.excluded, d.c.effective_faulty, d.c.min_inputs("seed")) == ((3,), 0, 3)
    assert d.check(*d.inputs("keys", (0, 1, 2)), close_tx("keys")) == []
    d.close("keys", (0, 1, 2))
    assert (d.s.u1, d.s.absent) == ((0, 1, 2), (3,))


def test_an_input_from_an_absent_member_makes_it_present_but_keeps_it_excluded() -> None:
    d = Driver(validated_contract())
    d.s.absent, d.s.absent_since = (3,), {3: 1}
    d.open()
    d.commit(*d.inputs("keys", (3,)))
    assert (d.s.absent, d.s.absent_since, d.s.excluded) == ((), {}, (3,))
    d.close("keys", (0, 1, 2))
    assert d.s.u1 == ALL
    assert d.check(*d.inputs("shares", (0, 1, 2)), close_tx("shares")) == [rc.DeadlineCheck(1, "shares")]
    for phase in ("shares", "inputs"):
        d.close(phase, ALL)
    assert (d.s.excluded, d.s.expected) == ((3,), (0, 1, 2))


def test_the_keys_close_marks_the_participants_outside_u1_absent() -> None:
    d = Driver(validated_contract()).to("shares", {"keys": (1, 2, 3)})
    assert (d.s.absent, d.s.absent_since, d.s.u1) == ((0,), {0: 2}, (1, 2, 3))


def test_only_the_participants_outside_u3_are_excluded_when_the_inputs_close() -> None:
    d = Driver(validated_contract())
    d.open(1, (0, 1, 2, 3))
    d.close("keys", ALL)
    d.close("shares", ALL)
    assert d.s.excluded == ()
    d.close("inputs", (0, 2, 3))
    assert (d.s.excluded, d.s.expected, d.s.absent) == ((1,), (0, 2, 3), ())
    assert d.c.effective_faulty == 0


# ------------------------------------------------------------------------------------ key phases ahead


def _in_round_one(phase: str = "inputs") -> Driver:
    return Driver(validated_contract()).to(phase)


def test_the_next_rounds_keys_run_ahead_and_close_only_complete() -> None:
    d = _in_round_one()
    adverts = d.inputs("keys", ALL, round_id=2)
    assert all(d.c.tx_valid_ahead(d.c.parse(a)) for a in adverts)
    assert not d.c.tx_valid_now(d.c.parse(adverts[0]))
    d.refused(r"phase keys of round 2 closes ahead only with every member present", *adverts[:3], close_tx("keys", 2))
    d.refused(r"close 'shares' for round 2, whose phase ahead is keys", *adverts, close_tx("shares", 2))
    d.refused("sa from member 1 for round 2: a second input in phase keys ahead", adverts[1], adverts[1])
    assert d.check(*adverts, close_tx("keys", 2)) == []
    events = d.commit(*adverts, close_tx("keys", 2))
    assert events == [*(rc.SecAggCommitted(2, a, sa_messages(2, ALL)[0][a]) for a in ALL),
                      rc.PhaseClosed(2, "keys", ALL, (), d.s.height)]
    assert (d.s.ahead_phase, d.s.ahead_u1, d.s.ahead_inputs, d.s.phase) == ("shares", ALL, {}, "inputs")
    shares = d.inputs("shares", ALL, round_id=2)
    d.refused("sa from member 1 for round 2: not expected in phase shares ahead", adverts[1])
    assert d.commit(*shares, close_tx("shares", 2))[-1] == rc.PhaseClosed(2, "shares", ALL, (), d.s.height)
    assert (d.s.ahead_phase, d.s.ahead_u2) == ("inputs", ALL)
    d.refused(r"close for round 2, but round 1 open=True", close_tx("inputs", 2))
    assert not d.c.tx_valid_ahead(d.c.parse(adverts[0]))


def test_a_round_opens_in_its_inputs_phase_when_its_keys_ran_ahead() -> None:
    d = _in_round_one(phase="unmask")
    d.commit(*d.inputs("keys", ALL, round_id=2), close_tx("keys", 2))
    d.commit(*d.inputs("shares", ALL, round_id=2), close_tx("shares", 2))
    d.commit(tx("result", 0, 1, list(ALL), M1))
    assert d.open(2) == [rc.RoundOpened(2, ALL, M1, d.s.height)]
    s = d.s
    assert (s.phase, s.u1, s.expected, s.inputs, s.ahead_phase, s.ahead_u1, s.ahead_u2) == \
        ("inputs", ALL, ALL, {}, "keys", (), ())
    assert d.check(*d.inputs("inputs", ALL), close_tx("inputs", 2)) == []


def test_an_incomplete_phase_ahead_carries_over_as_the_rounds_own() -> None:
    d = _in_round_one(phase="unmask")
    d.commit(*d.inputs("keys", ALL, round_id=2), close_tx("keys", 2))
    shares = sa_messages(2, ALL)[1]
    d.commit(*d.inputs("shares", (0, 2), round_id=2))
    assert d.c.committed_sa_messages(2) == [(0, shares[0]), (2, shares[2])]
    d.commit(tx("result", 0, 1, list(ALL), M1))
    d.open(2)
    assert (d.s.phase, d.s.u1, d.s.expected, d.s.inputs) == ("shares", ALL, ALL, {0: (shares[0], 0), 2: (shares[2], 0)})
    assert d.c.committed_sa_messages(2) == [(0, shares[0]), (2, shares[2])]
    assert d.c.committed_sa_messages(3) == []
    d.refused("member 2 for round 2: a second input in phase shares", *d.inputs("shares", (2,)))
    assert d.check(*d.inputs("shares", (1,)), close_tx("shares", 2)) == [rc.DeadlineCheck(2, "shares")]


def test_an_open_without_every_member_discards_the_phases_ahead() -> None:
    d = _in_round_one(phase="unmask")
    d.commit(*d.inputs("keys", ALL, round_id=2), close_tx("keys", 2))
    d.commit(tx("result", 0, 1, list(ALL), M1))
    d.open(2, (0, 1, 2))
    assert (d.s.phase, d.s.u1, d.s.expected, d.s.inputs, d.s.ahead_phase) == ("keys", (), (0, 1, 2), {}, "keys")


def test_an_absent_member_is_not_awaited_ahead() -> None:
    d = Driver(validated_contract()).to("shares", {"keys": (0, 1, 2)})
    adverts = d.inputs("keys", (0, 1, 2), round_id=2)
    assert d.c.ahead_complete() is False
    d.commit(*adverts)
    assert d.c.ahead_complete()
    assert d.commit(close_tx("keys", 2)) == [rc.PhaseClosed(2, "keys", (0, 1, 2), (), d.s.height)]
    assert (d.s.ahead_u1, d.s.ahead_phase) == ((0, 1, 2), "shares")
    d.refused("sa from member 3 for round 2: not expected in phase shares ahead",
              tx("sa", 3, 2, sa_messages(2, ALL)[1][3]))


def test_committed_sa_messages_of_the_open_key_phase() -> None:
    d = Driver(validated_contract())
    d.open()
    d.commit(*d.inputs("keys", (3, 1)))
    adverts = sa_messages(1, ALL)[0]
    assert d.c.committed_sa_messages(1) == [(1, adverts[1]), (3, adverts[3])]
    assert d.s.inputs == {1: (adverts[1], 0), 3: (adverts[3], 0)}
    assert d.c.committed_sa_messages(2) == [] and d.c.committed_sa_messages(3) == []
    d.close("keys", (0, 2))
    d.close("shares", ALL)
    d.commit(*d.inputs("inputs", (0,)))
    assert d.c.committed_sa_messages(1) == []


# ------------------------------------------------------------------------------------- absent members


def test_a_ready_during_an_open_round_brings_the_member_back_and_changes_nothing_else() -> None:
    d = Driver(validated_contract()).to("shares", {"keys": (0, 1, 2)})
    before = d.s.copy()
    assert d.commit(tx("ready", 3, 2)) == []
    assert (d.s.absent, d.s.absent_since) == ((), {})
    assert dataclasses.replace(d.s, absent=before.absent, absent_since=before.absent_since, height=before.height) \
        == before


def test_an_eval_from_an_absent_member_does_not_make_it_present() -> None:
    """An eval is about a past round, not a promise to take part: member 3, absent since round 1's keys
    phase, evaluates round 1's model during round 2 and stays absent."""
    d = Driver(validated_contract()).to("unmask", {"keys": (0, 1, 2)})
    d.commit(tx("result", 0, 1, [0, 1, 2], M1))
    d.open(2)
    assert d.commit(tx("eval", 3, 1, M1, 7, 9)) == [rc.EvalCommitted(1, 3, 7, 9, d.s.height)]
    assert (d.s.absent, d.s.absent_since, d.s.evals, d.s.eval_rows) == ((3,), {3: 2}, {1: {3: (7, 9)}}, {3: 9})


def test_a_plain_result_aggregates_each_update_with_its_sample_count() -> None:
    c = rc.Contract(rc.ContractParams(CHAIN, N, 1, M0, 3), verify)
    d = Driver(c)
    d.open()
    updates = {a: _h("update", a) for a in (0, 2, 3)}
    d.commit(*(tx("update", a, 1, updates[a], 5 + a) for a in updates))
    assert d.s.inputs == {a: (updates[a], 5 + a) for a in updates}
    assert d.check(tx("result", 0, 1, [0, 2, 3], M1)) == [
        rc.AggregateCheck(1, M0, tuple((a, updates[a], 5 + a) for a in updates), M1), rc.DeadlineCheck(1, "collect")]


# ------------------------------------------------------------------------------- exact reasons, caches


@pytest.mark.parametrize(("author", "kind", "fields"), [
    (1, "result", ([0, 1, 2, 3], M1)), (2, "abort", ("deadline",)), (3, "close", ("unmask",))])
def test_only_the_proposer_may_end_a_round(author: int, kind: str, fields: tuple[object, ...]) -> None:
    d = Driver(validated_contract()).to("unmask")
    d.refused(f"^{kind} tx must be authored by the block proposer$", tx(kind, author, 1, *fields))


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: tx("open", 0, 1, M1, list(ALL)), "open names a model other than the current global model"),
    (lambda: tx("open", 0, 1, M0, [0, 1]), "too few participants to ever complete the round"),
])
def test_an_open_is_refused_with_its_exact_reason(make, reason: str) -> None:  # type: ignore[no-untyped-def]
    Driver(validated_contract()).refused(f"^{reason}$", make())


def test_a_result_other_than_the_survivors_is_refused_with_its_exact_reason() -> None:
    d = Driver(validated_contract()).to("unmask")
    d.refused("^result must include exactly the round's committed inputs$", tx("result", 0, 1, [0, 1, 2], M1))


def test_a_ready_from_a_present_member_names_the_rounds_it_may_name() -> None:
    d = Driver(validated_contract()).to("keys")
    d.refused(r"^ready from member 2 for round 1: it is not absent, or the round is before it went missing or "
              r"after 2$", tx("ready", 2, 1))


def test_an_sa_message_is_verified_once_for_the_contract_and_its_shadows() -> None:
    calls: list[int] = []

    def counting(i: int, data: bytes, sig: bytes) -> bool:
        calls.append(i)
        return verify(i, data, sig)

    c = validated_contract()
    c.verify = counting
    d = Driver(c)
    d.open()
    advert = d.inputs("keys", (2,))
    before = len(calls)
    d.check(*advert)
    first = len(calls)
    assert calls[before:] == [2, 2]  # the tx's signature, then the AdvertiseKeys'
    d.check(*advert)
    d.commit(*advert)
    assert len(calls) == first


def test_the_verified_sa_messages_are_bounded() -> None:
    d = Driver(validated_contract())
    d.c._sa_verified = rc.BoundedMemo(lambda key: len(key[0]), max_entries=2)
    d.open()
    for a in ALL:
        d.check(*d.inputs("keys", (a,)))
        assert 1 <= len(d.c._sa_verified) <= 2
