"""A chain that can only abort must not spin (node.proposer `retry_backoff_s`).

The attack: at N = 3f + 1 with t_v = f one member publishing wrong statistic shares (`--validator-fault forge-stats`
or `corrupt`) makes every round's statistics undecidable; the round aborts at once naming nobody, and the retry the
same way. Before the backoff a 7-node cluster opened and aborted two rounds a second, 8 blocks a second synced to
every member's disk, for as long as the liar kept lying (822 rounds in 7 minutes, docs/chaos.md). Now, after the
second unnamed abort in a row the primary holds the next `open` 1 s, then 2, 4... up to the phase deadline, and no
replica counts that open as work it is owed (no view change for it). A round that names anyone, or commits, ends the
streak. The validated contract is driven block by block with signed transactions
(`tests.unit.test_contract_secure_phases.Driver`); every statistic share published, none decidable (the Driver's
shares are not of real sketches), so each abort names nobody.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import trio

from node import contract as rc
from node.daemon import Daemon
from node.proposer import Proposer, Signer, retry_backoff_s, unnamed_abort_streak
from tests.unit.test_contract import CHAIN, KEYS, M0, tx, validated_contract
from tests.unit.test_contract_secure_phases import ALL, Driver

DEADLINE_S = 30.0


def abort_unnamed(d: Driver, round_id: int) -> rc.RoundOutcome:
    """Open `round_id`, close its phases with every member, publish every statistic share and abort: nobody named."""
    d.open(round_id)
    while d.s.phase != "validate":
        d.commit(*d.inputs(d.s.phase, d.s.expected), tx("close", 0, round_id, d.s.phase))
    d.commit(*d.inputs("validate", d.s.expected))
    [outcome] = [e for e in d.commit(tx("abort", 0, round_id, "statistics undecidable")) if isinstance(e, rc.RoundOutcome)]
    assert (outcome.committed, outcome.missing, outcome.convicted) == (False, (), ()), outcome
    return outcome


def primary(d: Driver, closed_at: dict[int, float]) -> Proposer:
    """Member 0 as primary, nothing pending, having seen the rounds in `closed_at` end then."""
    settings = SimpleNamespace(phase_deadline_s=DEADLINE_S, batch_window_s=1.0, contract=d.c.params)
    mempool = SimpleNamespace(txs={}, arrival={}, any_valid_now=lambda kinds=None: False)
    timings = SimpleNamespace(phase_elapsed_s=lambda round_id, phase: 0.0, round_closed_at=closed_at)
    me = Signer(CHAIN, len(ALL), 0, lambda b: KEYS[0].sign(b).signature)
    return Proposer(d.c, settings, mempool, SimpleNamespace(), timings, me, lambda: False, lambda: 0, 0)  # type: ignore[arg-type]


def opens(proposer: Proposer, d: Driver) -> bool:
    txs, _ = trio.run(proposer._phase_txs, d.c.shadow())
    return [d.c.parse(raw).kind for raw in txs] == ["open"]


def owed(d: Driver, proposer: Proposer) -> bool:
    """`Daemon._work_pending` of a replica that delivered what `d` did, nothing pending."""
    daemon = Daemon.__new__(Daemon)
    daemon.contract, daemon.proposer = d.c, proposer
    daemon.mempool = SimpleNamespace(any_valid_now=lambda kinds=None: False)  # type: ignore[assignment]
    daemon.settings = SimpleNamespace(phase_deadline_s=DEADLINE_S)  # type: ignore[assignment]
    daemon.transport = SimpleNamespace(net=None)  # type: ignore[assignment]
    return daemon._work_pending()


def test_the_backoff_doubles_from_the_second_unnamed_abort_up_to_the_deadline() -> None:
    assert [retry_backoff_s(k, DEADLINE_S) for k in range(9)] == [0, 0, 1, 2, 4, 8, 16, 30, 30]


def test_a_named_or_committed_round_ends_the_streak() -> None:
    unnamed = rc.RoundOutcome(1, False, (), M0, 1)
    named = rc.RoundOutcome(1, False, (), M0, 1, missing=(3,))
    committed = rc.RoundOutcome(1, True, ALL, M0, 1)
    assert unnamed_abort_streak([unnamed, unnamed, unnamed]) == 3
    for other in (named, committed, rc.RoundOutcome(1, False, (), M0, 1, convicted=(2,)),
                  rc.RoundOutcome(1, False, (), M0, 1, disputes=((0, 2),)), rc.RoundOutcome(1, False, (), M0, 1, liars=(1,))):
        assert unnamed_abort_streak([unnamed, other, unnamed, unnamed]) == 2
        assert unnamed_abort_streak([unnamed, unnamed, other]) == 0


def test_after_two_unnamed_aborts_the_primary_holds_the_open_and_no_replica_is_owed_it() -> None:
    d = Driver(validated_contract())
    closed_at: dict[int, float] = {}
    proposer = primary(d, closed_at)
    abort_unnamed(d, 1)
    closed_at[1] = time.monotonic()
    assert opens(proposer, d) and owed(d, proposer), "one unnamed abort: retried at once, as before"
    abort_unnamed(d, 2)
    closed_at[2] = time.monotonic()
    assert not opens(proposer, d) and not owed(d, proposer), "the second in a row: 1 s before the open"
    closed_at[2] -= 1.01
    assert opens(proposer, d) and owed(d, proposer)
    abort_unnamed(d, 3)
    closed_at[3] = time.monotonic() - 1.5
    assert not opens(proposer, d) and not owed(d, proposer), "the third: 2 s"
    closed_at[3] -= 0.6
    assert opens(proposer, d)


def test_the_open_does_not_join_the_block_that_ends_the_streak() -> None:
    """The primary builds the block with the second unnamed abort: this process has not seen that round end yet,
    so the backoff counts from now and the next `open` waits for a later block (it used to join the abort's)."""
    d = Driver(validated_contract())
    abort_unnamed(d, 1)
    proposer = primary(d, {1: time.monotonic() - 60})
    d.open(2)
    while d.s.phase != "validate":
        d.commit(*d.inputs(d.s.phase, d.s.expected), tx("close", 0, 2, d.s.phase))
    d.commit(*d.inputs("validate", d.s.expected))
    shadow = d.c.shadow()
    shadow.extend([d.c.parse(tx("abort", 0, 2, "statistics undecidable"))], proposer=0)
    assert not shadow.state.open and unnamed_abort_streak(shadow.state.outcomes) == 2
    assert proposer.backing_off(shadow)


def test_a_restarted_process_waits_one_backoff_from_its_start_not_for_ever() -> None:
    """After a restart nothing says when the streak's last round ended: the wait counts from the first time the
    process asks, so a consortium restarted in a streak opens the next round one backoff later."""
    d = Driver(validated_contract())
    for round_id in (1, 2, 3):
        abort_unnamed(d, round_id)
    closed_at: dict[int, float] = {}
    proposer = primary(d, closed_at)
    assert not opens(proposer, d) and 3 in closed_at
    closed_at[3] -= 2.01
    assert opens(proposer, d)
