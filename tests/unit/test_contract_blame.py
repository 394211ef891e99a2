"""The round contract's blame phase (module doc of `node.contract`): a `fail` ends a validated round's unmask phase,
members of S and holders of R disclose (`blame`), the `verdict` aborts the round, convicts, records disputes, and
the convicted are kept out of later rounds; at N = 4 (f = 1, t = t_v = 1), driven with signed transactions."""

from __future__ import annotations

import dataclasses

import pytest

from node import contract as rc
from smpc import blame, field
from tests.unit.test_contract import M0, tx, validated_contract
from tests.unit.test_contract_secure_phases import ALL, Driver

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


def disclosure(author: int, summed: tuple[int, ...], with_sketch: bool = True, value: int = 0) -> bytes:
    pairs = {j: blame.PairScalars(value, value if with_sketch else 0) for j in summed if j != author} \
        if author in summed else {}
    shares = {owner: value for owner in summed} if with_sketch else {}
    return tx("blame", author, 1, blame.encode_pairs(pairs), blame.encode_shares(shares))


def in_blame(summed: tuple[int, ...] = S, weight: int = 0, coordinate: int = 3) -> Driver:
    d = in_unmask(summed)
    d.commit(tx("fail", 0, 1, weight, coordinate))
    return d


def test_a_fail_closes_unmask_into_blame_after_each_replica_confirms_the_failure() -> None:
    d = in_unmask(S)
    fail = tx("fail", 0, 1, 1, 5)
    entries = d.s.survivor_entries()
    assert d.check(fail) == [rc.FailureCheck(1, M0, entries, True, 5)]
    assert d.commit(fail) == [rc.BlameStarted(1, S, ALL, True, 5, d.s.height)]
    assert (d.s.phase, d.s.expected, d.s.summed, d.s.failure, d.s.inputs) == ("blame", ALL, S, (1, 5), {})
    d2 = in_unmask(S)
    assert d2.check(tx("fail", 0, 1, 1, -1)) == [rc.FailureCheck(1, M0, entries, True, None)]


@pytest.mark.parametrize(("fields", "why"), [((0, -1), "names no failure"), ((0, 8), "outside the sketch"),
                                             ((2, 3), "malformed")])
def test_a_fail_must_name_a_failure_within_the_sketch(fields: tuple[int, int], why: str) -> None:
    in_unmask(S).refused(why, tx("fail", 0, 1, *fields))


def test_a_fail_only_ends_a_validated_unmask_phase_and_only_from_the_proposer() -> None:
    d = in_unmask(S)
    d.refused("authored by the block proposer", tx("fail", 1, 1, 1, -1))
    d = Driver(validated_contract()).to("validate")
    d.refused("outside a validated round's unmask phase", tx("fail", 0, 1, 1, -1))
    d = in_unmask(S)
    d.c.params = dataclasses.replace(d.c.params, validate=False)
    d.refused("outside a validated round's unmask phase", tx("fail", 0, 1, 1, -1))


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


def test_a_verdict_with_every_disclosure_is_checked_by_recomputation_and_convicts() -> None:
    d = in_blame()
    d.commit(*(disclosure(a, S) for a in ALL))
    verdict = tx("verdict", 0, 1, [2], bytes([0, 1]))
    check = d.check(verdict)
    included = tuple((a, d.s.digests[a], 0) for a in S)
    assert check == [rc.VerdictCheck(1, M0, included, S, ALL, False, 3, tuple(
        (a, *d.s.disclosures[a]) for a in ALL), (2,), ((0, 1),), 1)]
    assert d.commit(verdict) == [rc.RoundOutcome(1, False, (), M0, d.s.height, convicted=(2,), disputes=((0, 1),))]
    assert (d.s.open, d.s.convicted, d.s.disputes, d.s.absent) == (False, (2,), ((0, 1),), ())
    assert d.c.effective_faulty == 0 and d.c.min_inputs("validate") == 3


def test_a_verdict_before_every_holder_disclosed_needs_the_deadline_and_makes_them_absent() -> None:
    d = in_blame()
    d.commit(*(disclosure(a, S) for a in (0, 1, 3)))
    verdict = tx("verdict", 0, 1, [], b"")
    assert isinstance(d.check(verdict)[-1], rc.DeadlineCheck)
    assert d.commit(verdict)[-1].missing == (2,)  # type: ignore[union-attr]
    assert (d.s.absent, d.s.convicted) == ((2,), ())


@pytest.mark.parametrize(("convicted", "disputes", "why"), [
    ([3], b"", "outside S"), ([], bytes([1, 3]), "outside S"), ([1], bytes([0, 1]), "convicts a disputing one")])
def test_a_verdict_names_only_members_of_s_and_never_convicts_a_disputing_one(convicted: list[int], disputes: bytes,
                                                                             why: str) -> None:
    d = in_blame()
    d.refused(why, tx("verdict", 0, 1, convicted, disputes))


def test_a_verdict_only_from_the_proposer_with_well_formed_disputes_and_an_abort_waits_and_is_judged() -> None:
    d = in_blame()
    assert d.check(tx("abort", 0, 1, "stuck")) == [rc.DeadlineCheck(1, "blame", 3),
                                                   d.c.verdict_check((), (), abort=True)]
    d.refused("authored by the block proposer", tx("verdict", 1, 1, [], b""))
    for bad in (bytes([0, 1, 2]), bytes([1, 0]), bytes([0, 1, 0, 1]), bytes([1, 2, 0, 3]), bytes([0, 4])):
        d.refused("sorted, distinct pairs i < j of members", tx("verdict", 0, 1, [], bad))


def test_the_convicted_are_expected_in_no_phase_of_later_rounds_and_count_among_the_faulty() -> None:
    d = in_blame()
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
    d = in_blame()
    d.commit(*(disclosure(a, S) for a in ALL), tx("verdict", 0, 1, [], bytes([0, 2])))
    assert (d.s.convicted, d.s.disputes) == ((), ((0, 2),))
    d.commit(tx("open", 0, 2, M0, list(ALL)))
    while d.s.phase != "validate":
        d.close(d.s.phase, d.s.expected)
    d.commit(*d.inputs("validate", d.s.expected), tx("accept", 0, 2, list(S), [], 0), tx("fail", 0, 2, 1, -1))
    disclosures = [tx("blame", a, 2, blame.encode_pairs({j: blame.PairScalars(0, 0)
                                                         for j in blame.paired_with(a, S, d.s.disputes)}), b"")
                   for a in ALL]
    d.refused("blame pairs of 16 bytes, expected 8", tx("blame", 0, 2, bytes(16), b""))
    outcome = d.commit(*disclosures, tx("verdict", 0, 2, [], bytes([1, 2])))[-1]
    assert outcome == rc.RoundOutcome(2, False, (), M0, d.s.height, convicted=(2,), disputes=((1, 2),))
    assert (d.s.convicted, d.s.disputes) == ((2,), ((0, 2), (1, 2)))


def test_a_member_convicted_after_its_keys_ran_ahead_is_not_expected_when_the_next_round_takes_them_over() -> None:
    d = in_blame()
    d.commit(*d.inputs("keys", ALL, round_id=2), tx("close", 0, 2, "keys"))
    d.commit(*d.inputs("shares", ALL, round_id=2), tx("close", 0, 2, "shares"))
    d.commit(*(disclosure(a, S) for a in ALL), tx("verdict", 0, 1, [1], b""))
    d.open(2)
    assert (d.s.phase, d.s.u1, d.s.expected) == ("inputs", ALL, (0, 2, 3))
    d.refused("not expected", *d.inputs("inputs", (1,)))
