"""Which rounds a daemon joins after taking blocks from peers (RoundDriver.join_found_open).

A node that lags takes committed blocks from a peer instead of voting on them. In secure mode a round
opens in the same block that closes its keys phase (keys are advertised ahead), so that node first sees
the round in its shares phase: it must still train while its update can count, or every round it lags
into waits out an inputs deadline for it (seen in 7-node clusters before the fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ml import data as mldata
from node.config import load_genesis, load_node_config
from node.daemon import Daemon
from node.identity import load as load_identity
from node.learning import Learner, LearningPlan
from node.store import Store
from node.testnet import create_testnet

N = 4
ME = 3


class RecordingNursery:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start_soon(self, fn: Any, *args: Any) -> None:
        self.started.append(fn.__name__)
        if hasattr(args[0] if args else None, "__await__"):
            args[0].close()


def _member_config(tmp_path: Path) -> Path:
    """Member ME's config in a fresh 4-member testnet (secure, validated: the testnet defaults)."""
    configs = create_testnet(tmp_path / "net", N, rounds=3, seed=1,
                             dataset=mldata.DatasetSpec(name="breast_cancer", seed=1),
                             split=mldata.SplitSpec(kind="iid"))
    return configs[ME]


@contextmanager
def _running(config_path: Path) -> Iterator[Daemon]:
    """A daemon on the node home of `config_path`, with a nursery that only records what it is asked to start."""
    cfg = load_node_config(config_path)
    genesis = load_genesis(cfg.genesis_path)
    plan = LearningPlan.from_genesis(genesis)
    store = Store.open(cfg.db_path, genesis.chain_id)
    try:
        d = Daemon(cfg, genesis, load_identity(cfg.key_path), store, plan,
                   Learner(plan, genesis.n, ME, cfg.data_path))
        d.rounds.nursery = RecordingNursery()  # type: ignore[assignment]
        yield d
    finally:
        store.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with _running(_member_config(tmp_path)) as d:
        yield d


def _found_open(d: Daemon, phase: str, expected: tuple[int, ...], inputs: tuple[int, ...] = (),
                keys_ahead: bool = True) -> list[str]:
    """Put the contract in round 1's `phase` as fetched blocks left it, call the join, return what started."""
    s = d.contract.state
    s.round, s.open, s.phase, s.participants = 1, True, phase, tuple(range(N))
    s.expected, s.inputs = expected, {a: (b"", 0) for a in inputs}
    if keys_ahead:
        d.rounds.prepare_next_round(1)
    d.rounds.nursery.started.clear()  # type: ignore[union-attr]
    d.rounds.join_found_open()
    return d.rounds.nursery.started  # type: ignore[union-attr]


def test_a_node_in_u1_that_finds_the_shares_phase_open_still_trains(daemon: Daemon) -> None:
    assert "train_round" in _found_open(daemon, "shares", expected=tuple(range(N)))
    assert 2 in daemon.secure, "and it advertises keys for the next round ahead"


def test_a_node_in_u2_that_has_not_sent_its_input_still_trains(daemon: Daemon) -> None:
    assert "train_round" in _found_open(daemon, "inputs", expected=tuple(range(N)), inputs=(0, 1))


@pytest.mark.parametrize(("phase", "expected", "inputs"), [
    ("shares", (0, 1, 2), ()),            # our keys missed U1
    ("inputs", (0, 1, 2), ()),            # we are not in U2
    ("inputs", tuple(range(N)), (ME,)),   # our input is already on the ledger
    ("sketch", tuple(range(N)), ()),      # the inputs phase is over
])
def test_a_node_whose_update_can_no_longer_count_prepares_the_next_round(
        daemon: Daemon, phase: str, expected: tuple[int, ...], inputs: tuple[int, ...]) -> None:
    started = _found_open(daemon, phase, expected, inputs)
    assert "train_round" not in started
    assert 2 in daemon.secure


def test_without_keys_of_its_own_a_node_past_the_keys_phase_does_not_train(daemon: Daemon) -> None:
    assert "train_round" not in _found_open(daemon, "shares", expected=tuple(range(N)), keys_ahead=False)


def test_a_restarted_node_does_not_advertise_again_for_a_round_it_advertised_for(tmp_path: Path) -> None:
    """Two different advertisements for one round are equivocation, and the ledger may commit the first,
    whose secrets died with the process: the round would abort at unmasking (seen with `--crash 3@2`).
    A synced marker written before the advertisement leaves makes the restarted node sit that round out."""
    config_path = _member_config(tmp_path)
    started = []
    for _life in range(2):  # before and after a restart, on the same ledger directory
        with _running(config_path) as d:
            d.rounds.prepare_next_round(1)
            started.append((list(d.rounds.nursery.started), 1 in d.secure, 1 in d.rounds.sat_out))  # type: ignore[union-attr]
    assert started == [(["submit"], True, False), ([], False, True)]


def test_in_secure_mode_an_update_without_its_round_is_never_sent_in_the_clear(daemon: Daemon) -> None:
    """If the round ended (or was sat out) while the node trained, the update stays on the node: the plain
    path (a blob to every peer) must be unreachable in secure mode."""
    import trio

    sent: list[tuple[str, object]] = []

    async def record_send_to_all(kind: str, height: int, payload: bytes) -> None:
        sent.append((kind, height))

    async def record_submit(outputs: Any, round_id: int) -> None:
        sent.append(("submit", round_id))

    daemon.transport.send_to_all = record_send_to_all  # type: ignore[method-assign]
    daemon.rounds.submit = record_submit  # type: ignore[method-assign]
    assert daemon.settings.contract.secure and 1 not in daemon.secure
    trio.run(daemon.rounds.train_round, 1, daemon.contract.state.model_hash)
    assert sent == []


def _opened(d: Daemon, phase: str, u1: tuple[int, ...]) -> list[str]:
    """Round 1 opened (as the RoundOpened event reports it) in `phase`, its key phases run ahead with U1 = `u1`."""
    s = d.contract.state
    s.round, s.open, s.phase, s.participants, s.u1 = 1, True, phase, tuple(range(N)), u1
    s.expected = u1
    d.rounds.nursery.started.clear()  # type: ignore[union-attr]
    d.rounds._join_round(1, s.participants, s.model_hash, ())
    return d.rounds.nursery.started  # type: ignore[union-attr]


def test_a_node_whose_keys_missed_the_rounds_key_phases_sits_it_out_and_advertises_for_the_next(
        daemon: Daemon) -> None:
    """A member absent (or benched) while the next round's key phases ran ahead without it: that round opens
    in its shares or inputs phase. A secure-aggregation machine started then would be driven from a phase it
    never reached (an AssertionError stopped both such members of a 7-node cluster)."""
    started = _opened(daemon, "inputs", u1=(0, 1, 2))
    assert "train_round" not in started and 1 not in daemon.secure
    assert 2 in daemon.secure, "it advertises its keys for the next round ahead"


def test_a_benched_node_does_not_join_and_advertises_ahead_for_the_round_its_bench_ends(daemon: Daemon) -> None:
    s = daemon.contract.state
    s.absent, s.absent_since, s.strikes = (ME,), {ME: 2}, {ME: 2}
    started = _opened(daemon, "keys", u1=())
    assert "train_round" not in started and 1 not in daemon.secure
    assert 2 in daemon.secure, "round 2 takes it back: its keys go ahead"
