"""A member that misses a round's first phase is absent: later phases close without it and without a deadline
check, until a transaction it signed (such as `ready`) is committed."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from node import contract as rc
from tests.unit.test_contract import M0, N, block, contract, tx, upd


def _result(round_id: int, included: list[int]) -> bytes:
    return tx("result", 0, round_id, included, hashlib.sha256(b"model %d" % round_id).digest())


def _model(round_id: int) -> bytes:
    return hashlib.sha256(b"model %d" % round_id).digest()


def _round(c: rc.Contract, height: int, round_id: int, authors: list[int], model: bytes) -> list[rc.Check]:
    """Open `round_id` with every member, commit `authors`' updates, return the checks its result needs."""
    c.apply_block(block(height, 0, tx("open", 0, round_id, model, list(range(N))),
                        *(upd(a, round_id) for a in authors)))
    result = block(height + 1, 0, _result(round_id, authors))
    checks = c.check_block(result)
    c.apply_block(result)
    return checks


def test_missing_member_costs_one_deadline_then_is_not_waited_for() -> None:
    c = contract(rounds=4)
    assert any(isinstance(ch, rc.DeadlineCheck) for ch in _round(c, 1, 1, [0, 1, 2], M0))
    assert c.state.absent == (3,)
    for round_id in (2, 3):
        checks = _round(c, 2 * round_id - 1, round_id, [0, 1, 2], _model(round_id - 1))
        assert not any(isinstance(ch, rc.DeadlineCheck) for ch in checks), round_id
    assert c.state.absent == (3,)


def test_ready_from_the_round_it_went_missing_to_the_next_one() -> None:
    c = contract(rounds=6)
    _round(c, 1, 1, [0, 1, 2], M0)
    _round(c, 3, 2, [0, 1, 2], _model(1))
    assert c.state.absent_since == {3: 2}
    assert [c.tx_valid_now(c.parse(tx("ready", 3, r))) for r in (1, 2, 3, 4)] == [False, True, True, False]


def test_ready_brings_a_member_back_and_is_waited_for_again() -> None:
    c = contract(rounds=4)
    _round(c, 1, 1, [0, 1, 2], M0)
    ready = tx("ready", 3, 2)
    assert c.tx_valid_now(c.parse(ready))
    c.apply_block(block(3, 1, ready))
    assert c.state.absent == ()
    checks = _round(c, 4, 2, [0, 1, 2], _model(1))
    assert any(isinstance(ch, rc.DeadlineCheck) for ch in checks)


@pytest.mark.parametrize("author, round_id, why", [(2, 2, "not absent"), (3, 3, "a future round")])
def test_ready_only_from_an_absent_member_for_the_current_round(author: int, round_id: int, why: str) -> None:
    c = contract(rounds=4)
    _round(c, 1, 1, [0, 1, 2], M0)
    ready = tx("ready", author, round_id)
    assert not c.tx_valid_now(c.parse(ready)), why
    with pytest.raises(rc.TxError, match="ready"):
        c.check_block(block(3, 0, ready))


def test_an_old_ready_cannot_be_replayed_after_the_member_left_again() -> None:
    c = contract(rounds=5)
    _round(c, 1, 1, [0, 1, 2], M0)
    ready = tx("ready", 3, 2)
    c.apply_block(block(3, 0, ready))
    _round(c, 4, 2, [0, 1, 2], _model(1))
    _round(c, 6, 3, [0, 1, 2], _model(2))
    assert c.state.absent == (3,)
    with pytest.raises(rc.TxError, match="ready"):
        c.check_block(block(8, 0, ready))


def test_any_committed_transaction_of_an_absent_member_makes_it_present() -> None:
    c = contract(rounds=4)
    _round(c, 1, 1, [0, 1, 2], M0)
    c.apply_block(block(3, 0, tx("open", 0, 2, _model(1), list(range(N))), upd(3, 2)))
    assert c.state.absent == ()


def test_ahead_phase_completes_without_absent_members() -> None:
    c = rc.Contract(rc.ContractParams(b"c" * 32, N, 4, M0, 3, secure=True, degree=2), lambda *_: True)
    c.state.open, c.state.round, c.state.phase, c.state.ahead_phase = True, 1, "inputs", "keys"
    c.state.ahead_inputs = {0: b"", 1: b"", 2: b""}
    assert not c.ahead_complete()
    c.state.absent = (3,)
    assert c.ahead_complete()
    assert c.awaited(range(N)) == (0, 1, 2)


@pytest.mark.parametrize(("authors", "missing"), [([0, 1], (2, 3)), ([0, 1, 2], ())])
def test_an_abort_names_the_missing_only_when_too_few_inputs_came(authors: list[int], missing: tuple[int, ...]) -> None:
    """With min_updates = 3, two updates leave the round short of the others'; with three, the round had
    enough and its abort (statistics nobody could decide, a primary out of time) waited for nobody in vain."""
    c = contract(rounds=2, min_updates=3)
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, list(range(N))), *(upd(a) for a in authors)))
    events = c.apply_block(block(2, 0, tx("abort", 0, 1, "deadline")))
    assert events == [rc.RoundOutcome(1, False, (), M0, 2, missing=missing)]
    assert c.state.absent == missing


def test_an_absent_proposer_opening_a_round_stays_absent() -> None:
    """The primary's open is its duty, not a sign that it takes part again."""
    c = contract(rounds=4)
    _round(c, 1, 1, [1, 2, 3], M0)
    assert c.state.absent == (0,)
    c.apply_block(block(3, 0, tx("open", 0, 2, _model(1), list(range(N)))))
    assert c.state.absent == (0,)


@pytest.mark.parametrize("closing", ["result", "abort"])
def test_an_absent_proposer_closing_a_round_stays_absent_since_the_round_it_went_missing(closing: str) -> None:
    c = contract(rounds=4, min_updates=3)
    _round(c, 1, 1, [1, 2, 3], M0)
    assert c.state.absent_since == {0: 2}
    c.apply_block(block(3, 0, tx("open", 0, 2, _model(1), list(range(N))), *(upd(a, 2) for a in (1, 2, 3))))
    c.apply_block(block(4, 0, _result(2, [1, 2, 3]) if closing == "result" else tx("abort", 0, 2, "deadline")))
    assert (c.state.absent, c.state.absent_since) == ((0,), {0: 2})


class _Consortium:
    """Rounds of a plain contract driven block by block; member 3 may come back with `ready` when the contract
    lets it (`tx_valid_now`, which is what the mempool asks)."""

    def __init__(self, rounds: int, exclude_late: bool = True, min_updates: int = 3) -> None:
        self.c, self.height, self.model = contract(rounds=rounds, min_updates=min_updates), 1, M0
        self.c.params = dataclasses.replace(self.c.params, exclude_late=exclude_late)

    def ready_if_valid(self, member: int) -> bool:
        ready = tx("ready", member, self.c.ready_round)
        if not self.c.tx_valid_now(self.c.parse(ready)):
            return False
        self.c.apply_block(block(self.height, 0, ready))
        self.height += 1
        return True

    def round(self, round_id: int, leaves: set[int]) -> tuple[int, ...]:
        """Open `round_id`; every expected member but those in `leaves` sends its update; commit. Returns the
        members the round expected."""
        self.c.apply_block(block(self.height, 0, tx("open", 0, round_id, self.model, list(range(N)))))
        expected = self.c.state.expected
        authors = [a for a in expected if a not in leaves]
        self.c.apply_block(block(self.height + 1, 0, *(upd(a, round_id) for a in authors)))
        self.c.apply_block(block(self.height + 2, 0, _result(round_id, authors)))
        self.height, self.model = self.height + 3, _model(round_id)
        return expected


def test_a_member_that_leaves_whenever_it_is_back_is_benched_longer_each_time() -> None:
    """The attack: member 3 says `ready` as soon as it may and is missing from every round that expects it (in a
    validated round, a withholder aborts each such round). Without a bench it is expected in every round; with
    it, in rounds 1, 2, 4, 8, 16, 32, 64 and 96 of 100 (benches 0, 1, 3, 7, 15, 31, 31)."""
    run = _Consortium(rounds=100)
    expecting = []
    for round_id in range(1, 101):
        run.ready_if_valid(3)
        if 3 in run.round(round_id, leaves={3}):
            expecting.append(round_id)
    assert expecting == [1, 2, 4, 8, 16, 32, 64, 96]
    assert run.c.state.strikes[3] == 8


def test_a_benched_member_is_refused_until_its_bench_is_over_and_counts_as_excluded() -> None:
    run = _Consortium(rounds=6)
    run.round(1, leaves={3})
    assert run.ready_if_valid(3), "the first absence has no bench"
    run.round(2, leaves={3})
    assert run.c.state.absent_since == {3: 4}, "the second absence: one round on the bench"
    assert not run.ready_if_valid(3)
    expected = run.round(3, leaves=set())
    assert 3 not in expected and 3 in run.c.state.excluded, "benched: not expected, counted among the faulty"
    with pytest.raises(rc.TxError, match="ready"):
        run.c.check_block(block(run.height, 0, tx("ready", 3, 3)))
    assert run.ready_if_valid(3)
    assert 3 in run.round(4, leaves=set())


def test_strikes_are_forgiven_one_per_forgive_after_rounds_that_included_the_member() -> None:
    from node.contract_membership import FORGIVE_AFTER

    run = _Consortium(rounds=2 * FORGIVE_AFTER + 10)
    run.round(1, leaves={3})
    run.ready_if_valid(3)
    run.round(2, leaves={3})
    assert run.c.state.strikes == {3: 2}
    round_id = 3
    while not run.ready_if_valid(3):
        run.round(round_id, leaves=set())
        round_id += 1
    for _ in range(FORGIVE_AFTER - 1):
        run.round(round_id, leaves=set())
        round_id += 1
    assert run.c.state.strikes == {3: 2}
    run.round(round_id, leaves=set())
    assert run.c.state.strikes == {3: 1}, "one strike forgiven after FORGIVE_AFTER rounds that included it"
    run.round(round_id + 1, leaves={3})
    assert run.c.state.absent_since[3] == round_id + 3, "the bench follows the strikes left: 2 strikes, 1 round"


def test_no_bench_where_the_absent_do_not_count_as_faulty() -> None:
    """With a phase deadline shorter than the censorship bound, censoring primaries could make an honest member
    absent, and at N = 3f + 1 a benched member would veto every validated round it misses: no bench."""
    run = _Consortium(rounds=10, exclude_late=False)
    expecting = []
    for round_id in range(1, 11):
        run.ready_if_valid(3)
        if 3 in run.round(round_id, leaves={3}):
            expecting.append(round_id)
    assert expecting == list(range(1, 11))


@pytest.mark.parametrize("strikes, bench", [(0, 0), (1, 0), (2, 1), (3, 3), (4, 7), (6, 31), (7, 31), (40, 31)])
def test_the_bench_doubles_up_to_its_cap(strikes: int, bench: int) -> None:
    assert rc.Contract.bench_rounds(strikes) == bench


def test_each_forgiveness_takes_one_strike_after_forgive_after_more_included_rounds() -> None:
    """Three strikes, then rounds that include the member: one strike goes after FORGIVE_AFTER of them and the
    next after FORGIVE_AFTER more, not sooner."""
    from node.contract_membership import FORGIVE_AFTER

    run = _Consortium(rounds=2 * FORGIVE_AFTER + 40)
    round_id = 1
    for _ in range(3):
        while not run.ready_if_valid(3) and 3 in run.c.state.absent:
            run.round(round_id, leaves=set())
            round_id += 1
        while 3 not in run.round(round_id, leaves={3}):
            round_id += 1
        round_id += 1
    assert run.c.state.strikes == {3: 3}
    while not run.ready_if_valid(3):
        run.round(round_id, leaves=set())
        round_id += 1
    strikes = []
    for _ in range(2 * FORGIVE_AFTER):
        run.round(round_id, leaves=set())
        round_id += 1
        strikes.append(run.c.state.strikes.get(3, 0))
    assert strikes == [3] * (FORGIVE_AFTER - 1) + [2] * FORGIVE_AFTER + [1], strikes


def test_every_member_newly_missing_takes_a_strike_whoever_else_was_absent_already() -> None:
    run = _Consortium(rounds=4, min_updates=2)
    run.round(1, leaves={2})
    run.round(2, leaves={2, 3})  # the round's result names 2 (absent already) before 3
    assert run.c.state.strikes == {2: 1, 3: 1}


@pytest.mark.parametrize("back_from, expected", [(5, True), (6, False)])
def test_the_next_rounds_key_phases_ahead_expect_a_benched_member_from_the_round_its_bench_ends(
        back_from: int, expected: bool) -> None:
    """Round 4 is open; its successor's keys (and then shares) run ahead: they expect member 3 only if its bench
    ends by round 5."""
    c = contract(rounds=8)
    s = c.state
    s.round, s.open, s.absent, s.absent_since = 4, True, (3,), {3: back_from}
    s.ahead_phase = "keys"
    assert (3 in c._ahead_expected()) is expected
    s.ahead_phase, s.ahead_u1 = "shares", (0, 1, 2, 3)
    assert (3 in c._ahead_expected()) is expected
