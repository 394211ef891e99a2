"""A replica's vote on a `fail` (`BlockValidator._failure_ok`): only for the failure its own unmasking found, with
the same base scalars of S's members, from which the contract alone then computes the verdict; and on an abort of
the unmask phase (`_unmask_abort_ok`): only if its own unmasking has neither a result nor a failure; on an abort of
the excise phase, only if its own excision has no result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from node import contract as rc
from node.block_validation import BlockValidator
from node.daemon import Daemon
from node.hooks import NO_FAULTS
from node.rounds import DISCLOSURE_KEY, RoundDriver
from node.secure_round import SubmitTx
from tests.unit.test_contract import tx
from tests.unit.test_contract_blame import S, disclosure, in_blame
from tests.unit.test_contract_reveals import unmasking
from tests.unit.test_contract_secure_phases import ALL

BASES = bytes(range(16))
FAILURE = rc.FailureCheck(1, b"m" * 32, ((0, b"d" * 32, 0), (1, b"e" * 32, 0)), False, 7, BASES)


def vote(check: rc.FailureCheck, failure: object) -> bool:
    """The replica's vote with an aggregator whose unmasking found `failure`."""
    async def found(_check: object) -> object:
        return failure

    validator = BlockValidator.__new__(BlockValidator)
    validator.aggregator = SimpleNamespace(failure=found)  # type: ignore[assignment]
    return trio.run(validator._failure_ok, SimpleNamespace(height=9), check)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ours", "ok"), [((False, 7, BASES), True), ((False, 8, BASES), False),
                                          ((True, 7, BASES), False), ((False, 7, bytes(16)), False), (None, False)])
def test_a_fail_gets_a_vote_only_for_the_failure_and_base_scalars_this_replica_found(ours: object, ok: bool) -> None:
    """Another b*, weight flag, or any base scalar (which would convict an honest member or spare the culprit in the
    ledger's verdict): refused."""
    assert vote(FAILURE, ours) is ok


@pytest.mark.parametrize(("result", "failure", "ok"), [(None, None, True), (b"h" * 32, None, False),
                                                      (None, (False, 7, BASES), False)])
def test_an_unmask_abort_gets_a_vote_only_from_a_replica_with_neither_a_result_nor_a_failure(
        result: object, failure: object, ok: bool) -> None:
    async def aggregate(_check: object, wait_s: float) -> object:
        return result

    validator = BlockValidator.__new__(BlockValidator)
    validator.aggregator = SimpleNamespace(aggregate=aggregate,  # type: ignore[assignment]
                                           known_failure=lambda _round: failure)
    validator.settings = SimpleNamespace(phase_deadline_s=1.0)  # type: ignore[assignment]
    check = rc.UnmaskAbortCheck(1, b"m" * 32, FAILURE.included)
    assert trio.run(validator._unmask_abort_ok, SimpleNamespace(height=9), check) is ok


@pytest.mark.parametrize(("result", "ok"), [(None, True), (b"h" * 32, False)])
def test_an_excise_abort_gets_a_vote_from_a_replica_without_an_excision_whatever_its_failure_over_s(
        result: object, ok: bool) -> None:
    """In the excise phase the failure of S found at unmasking is why the phase exists: only a result of the
    excision over S \\ L (asked for with L and the excise reveals) withholds the vote."""
    asked: list[rc.AggregateCheck] = []

    async def aggregate(check: rc.AggregateCheck, wait_s: float) -> object:
        asked.append(check)
        return result

    validator = BlockValidator.__new__(BlockValidator)
    validator.aggregator = SimpleNamespace(aggregate=aggregate,  # type: ignore[assignment]
                                           known_failure=lambda _round: (True, None, BASES))
    validator.settings = SimpleNamespace(phase_deadline_s=1.0)  # type: ignore[assignment]
    check = rc.UnmaskAbortCheck(1, b"m" * 32, FAILURE.included[:1], (b"r",), (1,), (b"x",))
    assert trio.run(validator._unmask_abort_ok, SimpleNamespace(height=9), check) is ok
    assert [(c.included, c.reveals, c.excised, c.excise_reveals) for c in asked] == [
        (FAILURE.included[:1], (b"r",), (1,), (b"x",))]


def work_pending(contract: rc.Contract) -> bool:
    """`Daemon._work_pending` with no pending transaction and the phase just started."""
    daemon = Daemon.__new__(Daemon)
    daemon.contract = contract
    daemon.mempool = SimpleNamespace(any_valid_now=lambda kinds=None: False)  # type: ignore[assignment]
    daemon.timings = SimpleNamespace(phase_elapsed_s=lambda round_id, phase: 0.0)  # type: ignore[assignment]
    daemon.settings = SimpleNamespace(phase_deadline_s=30.0)  # type: ignore[assignment]
    daemon.transport = SimpleNamespace(net=None)  # type: ignore[assignment]
    return daemon._work_pending()


def test_a_due_verdict_is_pending_work_so_a_withholding_primary_is_replaced_before_the_deadline() -> None:
    """Red team B6 (withholding): once every holder disclosed, the verdict is owed."""
    d = in_blame()
    assert not work_pending(d.c)
    d.commit(*(disclosure(a, S) for a in ALL))
    assert work_pending(d.c)


def test_a_due_convicting_abort_is_pending_work_so_a_withholding_primary_is_replaced_before_the_deadline() -> None:
    """G9: once the committed reveals prove a dealer faulty, the abort that convicts it is owed at once."""
    d = unmasking(shifted=(2, 3))
    d.commit(d.reveal(0), d.reveal(3))
    assert not d.c.proven_dealers() and not work_pending(d.c), "the shares committed so far fit the advert"
    d.commit(d.reveal(1))
    assert d.c.proven_dealers() and work_pending(d.c)


class _Store(dict):  # type: ignore[type-arg]
    def put_sync(self, key: bytes, value: bytes) -> None:
        self[key] = value


def test_a_member_suspended_after_a_restart_submits_the_disclosure_it_stored_once() -> None:
    """The brief's crashed honest member: its pair keys are gone after a restart, but the `blame` it stored when
    the phase started is submitted again while it is suspended, and the contract releases it."""
    d = in_blame()
    stored = disclosure(2, S)
    d.commit(*(disclosure(a, S) for a in (0, 1, 3)), tx("verdict", 0, 1, [], b""))
    submitted: list[object] = []
    driver = RoundDriver.__new__(RoundDriver)
    driver.contract, driver.index, driver.disclosed_late = d.c, 2, set()
    driver.store = _Store({DISCLOSURE_KEY % 1: stored})  # type: ignore[assignment]
    driver.nursery = SimpleNamespace(start_soon=lambda fn, outputs, round_id: submitted.append(outputs))  # type: ignore[assignment]
    driver.disclose_owed()
    driver.disclose_owed()
    assert submitted == [[SubmitTx(stored)]]
    assert d.commit(stored) == [rc.LateVerdict(1, 2, (), ())] and d.s.suspended == {}
    driver.disclose_owed()
    assert len(submitted) == 1


def test_our_disclosure_is_stored_before_it_is_submitted() -> None:
    submitted: list[object] = []
    driver = RoundDriver.__new__(RoundDriver)
    driver.store = _Store()  # type: ignore[assignment]
    driver.timings = SimpleNamespace(phase_started={})  # type: ignore[assignment]
    driver.hooks = NO_FAULTS
    driver.secure = {4: SimpleNamespace(on_blame_started=lambda event, disclosed: [SubmitTx(b"ours")])}  # type: ignore[assignment]
    driver.nursery = SimpleNamespace(start_soon=lambda fn, outputs, round_id: submitted.append(outputs))  # type: ignore[assignment]
    driver._on_blame_started(rc.BlameStarted(4, S, ALL, False, 3, 9), 0.0)
    assert driver.store == {DISCLOSURE_KEY % 4: b"ours"} and submitted == [[SubmitTx(b"ours")]]
