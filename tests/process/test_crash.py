"""A hospital SIGKILLed right after it sent its masked update: the round commits exactly the others' sum.

Real daemons on loopback (`fednode cluster --crash 3@2`). The crashed node's masked input is committed on
the ledger (it is in U3), so the survivors must leave it out and remove its pairwise masks from their own
inputs by reconstructing its masking key. The test recomputes, outside the cluster, every included member's
local training from the committed global model and checks the committed new model against the plain FedAvg
of exactly those members: a sum still carrying the crashed node's input or any unremoved mask would be off
by orders of magnitude more than quantization.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from node import contract as rc
from node.config import load_genesis, load_node_config
from node.learning import Learner, LearningPlan, vector_from_bytes
from node.secure_round import apply_sum
from node.settings import round_settings
from node.store import Store
from tests.process.test_cluster import fednode

CRASHED, CRASH_ROUND, NODES = 4, 2, 5
"""Five hospitals: a validated round needs 2t_v + 1 + f = 4 statistics publishers (t_v = f = 1), so the round
survives one crashed member; at N = 3f + 1 = 4 it would abort instead (docs/validation.md)."""


def committed_results(home: Path, genesis_path: Path) -> dict[int, tuple[tuple[int, ...], bytes]]:
    """round -> (included members, new model hash), read from a node's ledger."""
    genesis = load_genesis(genesis_path)
    store = Store.open(home / "ledger", genesis.chain_id, create=False)
    try:
        out = {}
        for block, _cert in store.blocks(1):
            for raw in block.txs:
                tx = rc.parse_tx(raw, genesis.chain_id, genesis.n, genesis.verify)
                if tx.kind == "result":
                    out[tx.round] = (tuple(tx.fields[0]), tx.fields[1])  # type: ignore[arg-type]
        return out
    finally:
        store.close()


def model_blob(home: Path, genesis_path: Path, model_hash: bytes, n_params: int) -> np.ndarray:
    genesis = load_genesis(genesis_path)
    store = Store.open(home / "ledger", genesis.chain_id, create=False)
    try:
        blob = store.blob(model_hash)
        assert blob is not None, "the committed model is not stored"
        return vector_from_bytes(blob, n_params)
    finally:
        store.close()


def test_round_commits_the_survivors_sum_after_a_crash_following_the_masked_input(tmp_path: Path) -> None:
    work = tmp_path / "run"
    result = fednode("cluster", "--nodes", str(NODES), "--rounds", "3", "--crash", f"{CRASHED}@{CRASH_ROUND}",
                     "--phase-deadline", "4", "--workdir", str(work), "--json", "--stall-timeout", "180",
                     timeout_s=420)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 3 and len(set(summary["head_hashes"])) == 1
    [crash] = summary["faults"]
    assert crash["kind"] == "crash" and crash["node"] == CRASHED and crash["recovery_s"] is not None
    assert "SIGKILL after sending the masked input" in (work / f"node-{CRASHED}" / "daemon.log").read_text()

    genesis_path = work / "genesis.json"
    genesis = load_genesis(genesis_path)
    plan = LearningPlan.from_genesis(genesis)
    weighting = round_settings(genesis, plan).weighting
    results = committed_results(work / "node-0", genesis_path)
    included, new_hash = results[CRASH_ROUND]
    assert CRASHED not in included and len(included) == NODES - 1, included
    previous_hash = results[CRASH_ROUND - 1][1]
    global_vec = model_blob(work / "node-0", genesis_path, previous_hash, plan.n_params)
    committed = model_blob(work / "node-0", genesis_path, new_hash, plan.n_params)

    def fedavg(members: tuple[int, ...]) -> np.ndarray:
        total = np.zeros(plan.n_params + 1)
        for i in members:
            site = load_node_config(work / f"node-{i}" / "config.json")
            trained = Learner(plan, genesis.n, i, site.data_path, site.data_format).train(global_vec, CRASH_ROUND)
            total += weighting.vector(trained.update, trained.n_samples)
        return apply_sum(global_vec, total)

    expected = fedavg(included)
    error = float(np.max(np.abs(committed - expected)))
    with_crashed = float(np.max(np.abs(fedavg((*included, CRASHED)) - expected)))
    assert error < 1e-4, f"committed model is {error:g} away from the survivors' FedAvg"
    assert with_crashed > 100 * error, "the check could not tell the crashed node's update apart"
