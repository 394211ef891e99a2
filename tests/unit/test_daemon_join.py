"""Which rounds a daemon joins after taking blocks from peers (Daemon._join_round_found_open).

A node that lags takes committed blocks from a peer instead of voting on them. In secure mode a round
opens in the same block that closes its keys phase (keys are advertised ahead), so that node first sees
the round in its shares phase: it must still train while its update can count, or every round it lags
into waits out an inputs deadline for it (seen in 7-node clusters before the fix).
"""

from __future__ import annotations

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


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    configs = create_testnet(tmp_path / "net", N, rounds=3, seed=1,
                             dataset=mldata.DatasetSpec(name="breast_cancer", seed=1),
                             split=mldata.SplitSpec(kind="iid"))
    cfg = load_node_config(configs[ME])
    genesis = load_genesis(cfg.genesis_path)
    plan = LearningPlan.from_genesis(genesis)
    store = Store.open(cfg.db_path, genesis.chain_id)
    d = Daemon(cfg, genesis, load_identity(cfg.key_path), store, plan, Learner(plan, genesis.n, ME))
    d.nursery = RecordingNursery()  # type: ignore[assignment]
    yield d
    store.close()


def _found_open(d: Daemon, phase: str, expected: tuple[int, ...], inputs: tuple[int, ...] = (),
                keys_ahead: bool = True) -> list[str]:
    """Put the contract in round 1's `phase` as fetched blocks left it, call the join, return what started."""
    s = d.contract.state
    s.round, s.open, s.phase, s.participants = 1, True, phase, tuple(range(N))
    s.expected, s.inputs = expected, {a: (b"", 0) for a in inputs}
    if keys_ahead:
        d._prepare_next_round(1)
    d.nursery.started.clear()  # type: ignore[union-attr]
    d._join_round_found_open()
    return d.nursery.started  # type: ignore[union-attr]


def test_a_node_in_u1_that_finds_the_shares_phase_open_still_trains(daemon: Daemon) -> None:
    assert "_train_round" in _found_open(daemon, "shares", expected=tuple(range(N)))
    assert 2 in daemon.secure, "and it advertises keys for the next round ahead"


def test_a_node_in_u2_that_has_not_sent_its_input_still_trains(daemon: Daemon) -> None:
    assert "_train_round" in _found_open(daemon, "inputs", expected=tuple(range(N)), inputs=(0, 1))


@pytest.mark.parametrize(("phase", "expected", "inputs"), [
    ("shares", (0, 1, 2), ()),            # our keys missed U1
    ("inputs", (0, 1, 2), ()),            # we are not in U2
    ("inputs", tuple(range(N)), (ME,)),   # our input is already on the ledger
    ("sketch", tuple(range(N)), ()),      # the inputs phase is over
])
def test_a_node_whose_update_can_no_longer_count_prepares_the_next_round(
        daemon: Daemon, phase: str, expected: tuple[int, ...], inputs: tuple[int, ...]) -> None:
    started = _found_open(daemon, phase, expected, inputs)
    assert "_train_round" not in started
    assert 2 in daemon.secure


def test_without_keys_of_its_own_a_node_past_the_keys_phase_does_not_train(daemon: Daemon) -> None:
    assert "_train_round" not in _found_open(daemon, "shares", expected=tuple(range(N)), keys_ahead=False)
