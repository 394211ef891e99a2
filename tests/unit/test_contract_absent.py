"""A member that misses a round's first phase is absent: later phases close without it and without a deadline
check, until a transaction it signed (such as `ready`) is committed."""

from __future__ import annotations

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
