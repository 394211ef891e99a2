"""The round contract's blame phase (module doc of `node.contract`): a `fail` ends a secure round's unmask phase,
members of S and holders of R disclose (`blame`), the `verdict` aborts the round, convicts, records disputes, and
the convicted are kept out of later rounds; at N = 4 (f = 1, t = t_v = 1), driven with signed transactions. Without
validation (red team B13) only the weight can fail and S alone discloses, its pair scalars alone; a verdict convicting
members of S then opens the excise phase instead of aborting (`tests/unit/test_contract_excise.py`)."""

from __future__ import annotations

import pytest

from node import contract as rc
from smpc import blame, field
from tests.unit.test_contract import CHAIN, M0, contract, tx, validated_contract, verify
from tests.unit.test_contract_secure_phases import ALL, Driver, secure

S = (0, 1, 2)
"""The accepted set unmasked (member 3 rejected: it still holds sketch shares, so it discloses them)."""


def in_unmask(summed: tuple[int, ...] = ALL) -> Driver:
    d = Driver(validated_contract())
    d.open()
    while d.s.phase != "validate":
        d.close(d.s.phase, d.s.expected)
    d.commit(*d.inputs("validate", d.s.expected), tx("accept", 0, 1, list(summed), [], 0))
    assert (d.s.phase, d.s.expected, d.s.holders) == ("unmask", summed, ALL)
    return d


def disclosure(author: int, summed: tuple[int, ...], with_sketch: bool = True, value: int = 0,
               disputed: tuple[tuple[int, int], ...] = (), round_id: int = 1,
               lie: dict[int, blame.PairScalars] | None = None) -> bytes:
    """`author`'s `blame`: every pair scalar and share `value`, but the pairs in `lie`."""
    pairs = {j: blame.PairScalars(value, value if with_sketch else 0)
             for j in blame.paired_with(author, summed, disputed)} | (lie or {})
    shares = {owner: value for owner in summed} if with_sketch else {}
    return tx("blame", author, round_id, blame.encode_pairs(pairs), blame.encode_shares(shares))


def fail(d: Driver, weight: int = 0, coordinate: int = 3, off: tuple[int, ...] = (),
         shift: dict[int, int] | None = None) -> bytes:
    """The `fail` whose base scalars make every member of S with all-zero pair scalars pass its own check (its
    committed weight; alpha = 0 and zero shares for the sketch), but the members `off` (their base weight off by
    one) and those in `shift` (base weight moved by that much, which a matching pair lie offsets)."""
    bases = {m: blame.PairScalars((d.s.weights[m] + (m in off) + (shift or {}).get(m, 0)) % field.RING_MODULUS, 0)
             for m in d.s.expected}
    return tx("fail", 0, d.s.round, weight, coordinate, blame.encode_pairs(bases))


def in_blame(summed: tuple[int, ...] = S, weight: int = 0, coordinate: int = 3, off: tuple[int, ...] = (),
             shift: dict[int, int] | None = None) -> Driver:
    d = in_unmask(summed)
    d.commit(fail(d, weight, coordinate, off, shift))
    return d


def test_a_fail_closes_unmask_into_blame_after_each_replica_confirms_the_failure_and_its_base_scalars() -> None:
    d = in_unmask(S)
    failing = fail(d, 1, 5)
    entries = d.s.survivor_entries()
    bases = rc.parse_tx(failing, CHAIN, 4, verify).fields[2]
    assert d.check(failing) == [rc.FailureCheck(1, M0, entries, True, 5, bases, ())]
    assert d.commit(failing) == [rc.BlameStarted(1, S, ALL, True, 5, d.s.height)]
    assert (d.s.phase, d.s.expected, d.s.summed, d.s.failure, d.s.inputs) == ("blame", ALL, S, (1, 5), {})
    assert d.s.bases == bases
    d2 = in_unmask(S)
    assert d2.check(fail(d2, 1, -1)) == [rc.FailureCheck(1, M0, entries, True, None, bases, ())]


@pytest.mark.parametrize(("fields", "why"), [((0, -1, bytes(24)), "names no failure"),
                                             ((0, 8, bytes(24)), "outside the sketch"),
                                             ((2, 3, bytes(24)), "malformed"),
                                             ((1, 3, bytes(16)), "base scalars: blame pairs of 16 bytes"),
                                             ((1, -1, bytes(7) + b"\x01" + bytes(16)), "sketch base scalars")])
def test_a_fail_must_name_a_failure_within_the_sketch_with_a_base_per_member_of_s(fields: tuple[int, int, bytes],
                                                                                 why: str) -> None:
    in_unmask(S).refused(why, tx("fail", 0, 1, *fields))


def test_a_fail_only_ends_a_secure_unmask_phase_and_only_from_the_proposer() -> None:
    d = in_unmask(S)
    d.refused("authored by the block proposer", tx("fail", 1, 1, 1, -1, bytes(24)))
    d = Driver(validated_contract()).to("validate")
    d.refused("outside a secure round's unmask phase", tx("fail", 0, 1, 1, -1, bytes(24)))
    d = Driver(secure()).to("inputs")
    d.refused("outside a secure round's unmask phase", tx("fail", 0, 1, 1, -1, bytes(32)))
    d = Driver(contract())
    d.open()
    d.refused("outside a secure round's unmask phase", tx("fail", 0, 1, 1, -1, b""))


def unvalidated_unmask(off: tuple[int, ...] = (), shift: dict[int, int] | None = None) -> tuple[Driver, bytes]:
    """A secure round without validation in its unmask phase, S = every member, and the `fail` [1, -1, bases] whose
    bases pass every member of S with all-zero pair scalars but `off` and `shift` (as `fail`)."""
    d = Driver(secure()).to("unmask")
    assert (d.s.expected, d.s.holders) == (ALL, ())
    return d, fail(d, 1, -1, off, shift)


def test_without_validation_a_fail_names_the_weight_alone_and_s_discloses_its_pairs_alone() -> None:
    """Red team B13: no sketch, so a `fail` is [1, -1, bases with no sketch scalar]; the blame phase expects the
    members of S (there are no holders), each disclosing its pair scalars and no share."""
    d, failing = unvalidated_unmask()
    bases = rc.parse_tx(failing, CHAIN, 4, verify).fields[2]
    assert d.check(failing) == [rc.FailureCheck(1, M0, d.s.survivor_entries(), True, None, bases, ())]
    for fields, why in (((1, 3, bases), "another failure than the weight's"),
                        ((0, 3, bases), "another failure than the weight's"),
                        ((0, -1, bases), "another failure than the weight's"),
                        ((1, -1, bytes(7) + b"\x01" + bytes(24)), "sketch base scalars")):
        d.refused(why, tx("fail", 0, 1, *fields))
    assert d.commit(failing) == [rc.BlameStarted(1, ALL, (), True, None, d.s.height)]
    assert (d.s.phase, d.s.expected, d.s.summed, d.s.failure) == ("blame", ALL, ALL, (1, -1))
    assert d.check(*(disclosure(a, ALL, with_sketch=False) for a in ALL)) == []
    d.refused("does not cover exactly", disclosure(0, ALL))
    d.refused("sketch scalars although no sketch coordinate failed", tx("blame", 1, 1, blame.encode_pairs(
        {j: blame.PairScalars(0, 1) for j in (0, 2, 3)}), b""))


def test_without_validation_the_verdict_convicts_the_weight_liar_and_only_disputes_its_pair_lie() -> None:
    """Member 2's masked weight is off its committed one (convicted); member 0 offsets its own with a lie about its
    pair with 1 (a dispute; member 1, honest, passes). The convicted is expected in no phase of the next round."""
    d, failing = unvalidated_unmask(off=(2,), shift={0: 1})
    d.commit(failing, disclosure(0, ALL, with_sketch=False, lie=LIE),
             *(disclosure(a, ALL, with_sketch=False) for a in (1, 2, 3)))
    judged = d.c.blame_judgement()
    assert (judged.convicted, judged.disputes, judged.absent, judged.undecided) == ((2,), ((0, 1),), (), ())
    for convicted, disputes in (([], b""), ([1, 2], bytes([0, 1])), ([2], b"")):
        d.refused("not the ledger's", tx("verdict", 0, 1, convicted, disputes))
    verdict = tx("verdict", 0, 1, [2], bytes([0, 1]))
    assert d.check(verdict) == []
    # The round is not aborted: it finishes over S \ {2} (`tests/unit/test_contract_excise.py`).
    assert d.commit(verdict) == [rc.ExciseStarted(1, ALL, (2,), d.s.height)]
    assert (d.s.convicted, d.s.disputes, d.s.absent, d.s.suspended) == ((2,), ((0, 1),), (), {})
    d.commit(tx("abort", 0, 1, "no excise reveals"))
    assert d.s.outcomes[-1] == rc.RoundOutcome(1, False, (), M0, d.s.height, missing=(0, 1, 3), convicted=(2,),
                                               disputes=((0, 1),))
    d.open(2)
    assert d.s.expected == (0, 1, 3)


def test_without_validation_a_silent_member_of_s_is_suspended_until_its_late_disclosure_judges_it() -> None:
    d, failing = unvalidated_unmask(off=(2,))
    d.commit(failing, *(disclosure(a, ALL, with_sketch=False) for a in (0, 1, 3)))
    verdict = tx("verdict", 0, 1, [], b"")
    assert isinstance(d.check(verdict)[-1], rc.DeadlineCheck)
    assert d.commit(verdict)[-1].missing == ()  # type: ignore[union-attr]
    assert (d.s.absent, d.s.convicted, d.s.suspended) == ((), (), {2: 1})
    late = disclosure(2, ALL, with_sketch=False)
    assert d.commit(late) == [rc.LateVerdict(1, 2, (2,), ())]
    assert (d.s.convicted, d.s.suspended, d.s.pending) == ((2,), {}, {})


def test_disclosures_must_cover_exactly_s_and_r_needs() -> None:
    d = in_blame()
    assert d.check(*(disclosure(a, S) for a in ALL)) == []
    d.refused("blame pairs of 8 bytes, expected 0", tx("blame", 3, 1, blame.encode_pairs(
        {0: blame.PairScalars(0, 0)}), blame.encode_shares(dict.fromkeys(S, 0))))
    d.refused("does not cover exactly", tx("blame", 3, 1, b"", b""))
    d.refused("blame pairs of 8 bytes", tx("blame", 0, 1, bytes(8), blame.encode_shares(dict.fromkeys(S, 0))))
    d.refused("blame shares of 16 bytes", tx("blame", 0, 1, bytes(16), bytes(16)))
    d.refused("out of range", tx("blame", 3, 1, b"", blame.encode_shares(dict.fromkeys(S, field.P))))
    d.refused("a second input", disclosure(1, S), disclosure(1, S))
    weight_only = in_blame(weight=1, coordinate=-1)
    assert weight_only.check(*(disclosure(a, S, with_sketch=False) for a in ALL)) == []
    lied = blame.encode_pairs({0: blame.PairScalars(0, 1), 2: blame.PairScalars(0, 0)})
    weight_only.refused("sketch scalars although no sketch coordinate failed", tx("blame", 1, 1, lied, b""))


LIE = {1: blame.PairScalars(1, 0)}
"""Member 0's pair scalars with 1 off by one in the weight: with base shift {0: 1} its own check passes."""


def test_the_verdict_is_the_ledgers_own_judgement_and_convicts() -> None:
    """Member 2 fails its own check (convicted), member 0 lies about its pair with 1 to pass its own (dispute):
    the contract computes this from the `fail`'s bases, the weights and the disclosures, and refuses any other."""
    d = in_blame(off=(2,), shift={0: 1})
    d.commit(disclosure(0, S, lie=LIE), *(disclosure(a, S) for a in (1, 2, 3)))
    for convicted, disputes in (([], b""), ([2], b""), ([0, 2], b""), ([], bytes([0, 1])), ([1], bytes([0, 2]))):
        d.refused("not the ledger's", tx("verdict", 0, 1, convicted, disputes))
    verdict = tx("verdict", 0, 1, [2], bytes([0, 1]))
    assert d.check(verdict) == []
    assert d.commit(verdict) == [rc.RoundOutcome(1, False, (), M0, d.s.height, convicted=(2,), disputes=((0, 1),))]
    assert (d.s.open, d.s.convicted, d.s.disputes, d.s.absent, d.s.suspended) == (False, (2,), ((0, 1),), (), {})
    assert d.c.effective_faulty == 0 and d.c.min_inputs("validate") == 3


def test_a_verdict_before_every_holder_disclosed_needs_the_deadline_suspends_s_and_makes_holders_absent() -> None:
    d = in_blame()
    d.commit(*(disclosure(a, S) for a in (0, 1, 3)))
    verdict = tx("verdict", 0, 1, [], b"")
    assert isinstance(d.check(verdict)[-1], rc.DeadlineCheck)
    assert d.commit(verdict)[-1].missing == ()  # type: ignore[union-attr]
    assert (d.s.absent, d.s.convicted, d.s.suspended, set(d.s.pending)) == ((), (), {2: 1}, {1})
    d = in_blame(summed=(0, 1, 3))
    d.commit(*(disclosure(a, (0, 1, 3)) for a in (0, 1, 3)), tx("verdict", 0, 1, [], b""))
    assert (d.s.absent, d.s.suspended, d.s.pending) == ((2,), {}, {})


def sketch_liar_shares(author: int, value: int = 5) -> bytes:
    """A holder's true disclosure when member 2's sketch entry is `value` (a constant polynomial): with alpha = 0,
    member 2 fails its own sketch check, the others (entry 0) pass."""
    pairs = {j: blame.PairScalars(0, 0) for j in blame.paired_with(author, S, ())}
    shares = dict.fromkeys(S, value) if value == blame.MISSING_SHARE else {0: 0, 1: 0, 2: value}
    return tx("blame", author, 1, blame.encode_pairs(pairs), blame.encode_shares(shares))


def test_an_undecodable_sketch_entry_clears_nobody_and_its_silent_holders_owe_their_shares() -> None:
    """Red team B3: z_l[b*] needs t_v + 1 + f_eff = 3 agreeing shares; with holders 0 and 1 only, no member of
    S is cleared on the sketch (undecided, not fail-open: liar 2 withholds every share, `MISSING_SHARE`), and
    silent holder 3 is suspended, not absent. Its late shares decode the entries: sketch liar 2 is convicted, 0
    and 1 are cleared."""
    d = in_blame()
    d.commit(sketch_liar_shares(0), sketch_liar_shares(1), sketch_liar_shares(2, blame.MISSING_SHARE))
    assert d.c.blame_judgement() == blame.Verdict((), (), (), (0, 1, 2))
    d.commit(tx("verdict", 0, 1, [], b""))
    assert (d.s.suspended, d.s.absent, d.s.convicted) == ({3: 1}, (), ())
    assert set(d.s.pending[1].undecided) == {0, 1, 2}
    d.open(2)
    assert d.s.expected == (0, 1, 2)
    assert d.commit(sketch_liar_shares(3, 5)) == [rc.LateVerdict(1, 3, (2,), ())]
    assert (d.s.convicted, d.s.suspended, d.s.pending) == ((2,), {}, {})


def test_a_silent_holder_outside_s_is_released_once_nobody_is_undecided() -> None:
    """Holder 3 (outside S) owes its shares only while a member is undecided: once 2's late shares decode every
    entry, 3 is released without disclosing."""
    d = in_blame()
    d.commit(disclosure(0, S), disclosure(1, S), tx("verdict", 0, 1, [], b""))
    assert (d.s.suspended, set(d.s.pending[1].undecided)) == ({2: 1, 3: 1}, {0, 1})
    assert d.commit(disclosure(2, S)) == [rc.LateVerdict(1, 2, (), ())]
    assert (d.s.suspended, d.s.pending, d.s.convicted) == ({}, {}, ())


def test_a_holder_denied_a_dealers_shares_still_discloses_its_pairs_and_is_never_named() -> None:
    """Red team B4: dealer 2 never sent holder 1 its shares. Holder 1 discloses its pair scalars and the shares it
    has (`MISSING_SHARE` for 2's); 2's entry decodes from the other three; 0's lie with 1 is a dispute."""
    d = in_blame(shift={0: 1})
    partial = tx("blame", 1, 1, blame.encode_pairs({0: blame.PairScalars(0, 0), 2: blame.PairScalars(0, 0)}),
                 blame.encode_shares({0: 0, 1: 0, 2: blame.MISSING_SHARE}))
    d.commit(disclosure(0, S, lie=LIE), partial, disclosure(2, S), disclosure(3, S))
    d.commit(tx("verdict", 0, 1, [], bytes([0, 1])))
    assert (d.s.disputes, d.s.absent, d.s.suspended, d.s.convicted) == (((0, 1),), (), {}, ())


def test_a_silent_liar_stays_out_until_its_late_disclosure_convicts_it() -> None:
    """Red team B1: member 2 lied and does not disclose. Suspended, `ready` does not bring it back: every later
    round runs without it and counts it among the faulty; its `blame`, whenever it comes, is judged."""
    d = in_blame(off=(2,))
    d.commit(*(disclosure(a, S) for a in (0, 1, 3)), tx("verdict", 0, 1, [], b""))
    assert (d.s.suspended, d.s.absent, d.c.effective_faulty) == ({2: 1}, (), 0)
    d.refused("it is not absent", tx("ready", 2, 2))
    d.open(2)
    assert (d.s.expected, d.c.effective_faulty) == ((0, 1, 3), 0)
    d.refused("not expected", *d.inputs("keys", (2,)))
    owed, parse = disclosure(2, S), d.c.parse
    assert d.c.late_disclosure(parse(owed))  # what the proposer puts last in its block, like a `ready`
    assert not any(d.c.late_disclosure(parse(raw)) for raw in (disclosure(2, S, round_id=2), disclosure(1, S),
                                                                tx("ready", 2, 1), tx("ready", 2, 2)))
    d.refused("owes round 1's", disclosure(2, S, round_id=2))
    d.refused("blame pairs of 8 bytes", tx("blame", 2, 1, bytes(8), b""))
    events = d.commit(disclosure(2, S))
    assert events == [rc.LateVerdict(1, 2, (2,), ())]
    assert (d.s.convicted, d.s.suspended, d.s.pending) == ((2,), {}, {})
    d.refused("but round 2 open", disclosure(2, S))


def test_an_honest_member_that_discloses_late_is_released_and_takes_part_again() -> None:
    d = in_blame()
    d.commit(*(disclosure(a, S) for a in (0, 1, 3)), tx("verdict", 0, 1, [], b""))
    d.open(2)
    assert d.commit(disclosure(2, S)) == [rc.LateVerdict(1, 2, (), ())]
    assert (d.s.convicted, d.s.disputes, d.s.suspended, d.s.pending, d.s.expected) == ((), (), {}, {}, (0, 1, 3))
    d.commit(tx("abort", 0, 2, "too few"))
    d.open(3)
    assert d.s.expected == ALL


def test_a_lie_parked_in_the_pair_with_a_silent_accomplice_is_a_dispute_when_the_accomplice_returns() -> None:
    """Red team B1 part B: 0 lies about its pair with 2 and 2 stays silent. The verdict clears 0 but holds 2
    suspended; 2's (true) late disclosure disagrees with 0's, a dispute."""
    d = in_blame(shift={0: 1})
    d.commit(disclosure(0, S, lie={2: blame.PairScalars(1, 0)}), *(disclosure(a, S) for a in (1, 3)),
             tx("verdict", 0, 1, [], b""))
    assert (d.s.suspended, d.s.disputes) == ({2: 1}, ())
    assert d.commit(disclosure(2, S)) == [rc.LateVerdict(1, 2, (), ((0, 2),))]
    assert (d.s.disputes, d.s.suspended) == (((0, 2),), {})


def test_two_silent_members_pairs_are_compared_when_the_second_returns() -> None:
    d = in_blame(shift={1: 1})
    d.commit(disclosure(0, S), disclosure(3, S), tx("verdict", 0, 1, [], b""))
    assert d.s.suspended == {1: 1, 2: 1}
    assert d.commit(disclosure(1, S, lie={2: blame.PairScalars(1, 0)})) == [rc.LateVerdict(1, 1, (), ())]
    assert d.commit(disclosure(2, S)) == [rc.LateVerdict(1, 2, (), ((1, 2),))]
    assert (d.s.disputes, d.s.pending) == (((1, 2),), {})


def test_an_abort_of_the_unmask_phase_waits_the_deadline_and_each_replica_judges_it() -> None:
    """Red team B6, unmask half: a primary holding back a due `fail` (or `result`) cannot turn it into an unnamed
    abort; a replica votes for the abort only if its own unmasking has neither (`UnmaskAbortCheck`)."""
    d = in_unmask(S)
    assert d.check(tx("abort", 0, 1, "stuck")) == [rc.DeadlineCheck(1, "unmask"),
                                                   rc.UnmaskAbortCheck(1, M0, d.s.survivor_entries(), ())]


def test_a_verdict_only_from_the_proposer_with_well_formed_disputes_and_never_an_abort() -> None:
    """Red team B6 (blame phase): the verdict is always computable from the ledger, so nothing may abort it."""
    d = in_blame()
    d.refused("abort of a blame phase", tx("abort", 0, 1, "stuck"))
    d.refused("authored by the block proposer", tx("verdict", 1, 1, [], b""))
    for bad in (bytes([0, 1, 2]), bytes([1, 0]), bytes([0, 1, 0, 1]), bytes([1, 2, 0, 3]), bytes([0, 4])):
        d.refused("sorted, distinct pairs i < j of members", tx("verdict", 0, 1, [], bad))


def test_the_convicted_are_expected_in_no_phase_of_later_rounds_and_count_among_the_faulty() -> None:
    d = in_blame(off=(1,))
    d.commit(*(disclosure(a, S) for a in ALL), tx("verdict", 0, 1, [1], b""))
    assert (d.s.convicted, d.s.absent, d.c.effective_faulty) == ((1,), (), 0)
    d.open(2)
    assert (d.s.participants, d.s.phase, d.s.expected, d.s.excluded) == (ALL, "keys", (0, 2, 3), ())
    d.refused("not expected in phase keys", *d.inputs("keys", (1,)))
    d.close("keys", (0, 2, 3))
    assert (d.s.u1, d.s.absent) == ((0, 2, 3), ())
    d.refused("not expected in phase keys ahead", *d.inputs("keys", (1,), round_id=3))
    d.commit(*d.inputs("keys", (0, 2, 3), round_id=3))
    assert d.check(tx("close", 0, 3, "keys")) == []
    d.close("shares", (0, 2, 3))
    d.close("inputs", (0, 2, 3))
    assert (d.s.excluded, d.s.absent, d.s.expected, d.c.min_inputs("seed")) == ((), (), (0, 2, 3), 3)


def test_a_member_in_disputes_with_more_than_f_distinct_members_is_convicted() -> None:
    d = in_blame(shift={0: 1})
    d.commit(disclosure(0, S, lie={2: blame.PairScalars(1, 0)}), *(disclosure(a, S) for a in (1, 2, 3)),
             tx("verdict", 0, 1, [], bytes([0, 2])))
    assert (d.s.convicted, d.s.disputes) == ((), ((0, 2),))
    opened = d.commit(tx("open", 0, 2, M0, list(ALL)))
    assert opened == [rc.RoundOpened(2, ALL, M0, d.s.height, ((0, 2),))]  # red team B12: fixed at the open
    while d.s.phase != "validate":
        d.close(d.s.phase, d.s.expected)
    d.commit(*d.inputs("validate", d.s.expected), tx("accept", 0, 2, list(S), [], 0))
    d.commit(fail(d, 1, -1, shift={2: -1}))
    disclosures = [disclosure(a, S, with_sketch=False, disputed=d.s.disputes, round_id=2,
                              lie={1: blame.PairScalars(1, 0)} if a == 2 else None) for a in ALL]
    d.refused("blame pairs of 16 bytes, expected 8", tx("blame", 0, 2, bytes(16), b""))
    outcome = d.commit(*disclosures, tx("verdict", 0, 2, [], bytes([1, 2])))[-1]
    assert outcome == rc.RoundOutcome(2, False, (), M0, d.s.height, convicted=(2,), disputes=((1, 2),))
    assert (d.s.convicted, d.s.disputes) == ((2,), ((0, 2), (1, 2)))


def test_a_member_convicted_after_its_keys_ran_ahead_is_not_expected_when_the_next_round_takes_them_over() -> None:
    d = in_blame(off=(1,))
    d.commit(*d.inputs("keys", ALL, round_id=2), tx("close", 0, 2, "keys"))
    d.commit(*d.inputs("shares", ALL, round_id=2), tx("close", 0, 2, "shares"))
    d.commit(*(disclosure(a, S) for a in ALL), tx("verdict", 0, 1, [1], b""))
    d.open(2)
    assert (d.s.phase, d.s.u1, d.s.expected) == ("inputs", ALL, (0, 2, 3))
    d.refused("not expected", *d.inputs("inputs", (1,)))


def test_a_member_suspended_after_its_keys_ran_ahead_is_not_expected_when_the_next_round_takes_them_over() -> None:
    d = in_blame()
    d.commit(*d.inputs("keys", ALL, round_id=2), tx("close", 0, 2, "keys"))
    d.commit(*d.inputs("shares", ALL, round_id=2), tx("close", 0, 2, "shares"))
    d.commit(*(disclosure(a, S) for a in (0, 2, 3)), tx("verdict", 0, 1, [], b""))
    assert d.s.suspended == {1: 1}
    d.open(2)
    assert (d.s.phase, d.s.u1, d.s.expected) == ("inputs", ALL, (0, 2, 3))
    d.refused("not expected", *d.inputs("inputs", (1,)))
