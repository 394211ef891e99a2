"""A replica's vote on the blame phase's closing transactions (`BlockValidator._blame_ok`): a `fail` only for the
failure its own unmasking found, a `verdict` only for its own judgement, an abort only if it cannot judge either."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from node import contract as rc
from node.block_validation import BlockValidator

FAILURE = rc.FailureCheck(1, b"m" * 32, ((0, b"d" * 32, 0),), False, 7)


def verdict_check(convicted: tuple[int, ...] = (3,), disputes: tuple[tuple[int, int], ...] = (),
                  abort: bool = False) -> rc.VerdictCheck:
    return rc.VerdictCheck(1, b"m" * 32, (), (0, 1, 2, 3), (0, 1, 2, 3), False, 7, (), convicted, disputes, 1, abort)


def vote(check: rc.FailureCheck | rc.VerdictCheck, failure: object, judged: object) -> bool:
    """The replica's vote with an aggregator whose unmasking found `failure` and whose judgement is `judged`."""
    async def found(_check: object) -> object:
        return failure

    async def judge(_check: object) -> object:
        return judged

    validator = BlockValidator.__new__(BlockValidator)
    validator.aggregator = SimpleNamespace(failure=found, verdict=judge)  # type: ignore[assignment]
    return trio.run(validator._blame_ok, SimpleNamespace(height=9), check)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ours", "ok"), [((False, 7), True), ((False, 8), False), ((True, 7), False), (None, False)])
def test_a_fail_gets_a_vote_only_for_the_failure_this_replica_found(ours: object, ok: bool) -> None:
    assert vote(FAILURE, ours, None) is ok


@pytest.mark.parametrize(("ours", "ok"), [(((3,), ()), True), (((0, 3), ()), False), (((), ()), False),
                                          (((), ((0, 3),)), False), (None, False)])
def test_a_verdict_gets_a_vote_only_if_it_is_this_replicas_judgement(ours: object, ok: bool) -> None:
    """Naming an honest member (0), omitting the culprit (3), or turning its conviction into a dispute: refused."""
    assert vote(verdict_check(), None, ours) is ok


def test_an_abort_of_the_blame_phase_gets_a_vote_only_from_a_replica_that_cannot_judge_either() -> None:
    assert vote(verdict_check((), (), abort=True), None, None)
    assert not vote(verdict_check((), (), abort=True), None, ((3,), ()))
