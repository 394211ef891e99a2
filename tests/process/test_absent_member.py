"""A hospital that never started costs the others one phase deadline, not one per round, and joins later.

Four real daemons with validation on (N = 3f + 1 = 4, t_v = f = 1), member 3 not started. Round 1 waits out
its keys deadline; member 3 is then absent, counted as the one faulty member and left out of validation, and
every round commits with the three others at the pace of a round with every member up. Then member 3 starts,
catches up, says `ready`, and its update is accepted in a later round. The round periods (between consecutive
commits, from node 0's `/status` evaluations) of the rounds without member 3 are compared with those of the
rounds with all four, measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from node.cluster_processes import ClusterProcess, start_cluster
from node.config import genesis_from_dict
from node.status import fetch_status
from tests.process.test_cluster import fednode

N, ABSENT, ROUNDS_WITHOUT, PHASE_DEADLINE_S, TIMEOUT_S = 4, 3, 5, 3.0, 150


def _testnet(work: Path) -> list[Path]:
    """`fednode testnet`, with a short phase deadline written into genesis (and its new hash into each config)."""
    result = fednode("testnet", "--nodes", str(N), "--rounds", "30", "--out", str(work), timeout_s=120)
    assert result.returncode == 0, result.stderr[-2000:]
    genesis = json.loads((work / "genesis.json").read_text())
    genesis["protocol"]["phase_deadline_s"] = PHASE_DEADLINE_S
    (work / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    chain_id = genesis_from_dict(genesis).chain_id.hex()
    configs = [work / f"node-{i}" / "config.json" for i in range(N)]
    for path in configs:
        config = json.loads(path.read_text())
        path.write_text(json.dumps(config | {"genesis_hash": chain_id}, indent=2) + "\n")
    return configs


def _evaluations(proc: ClusterProcess) -> list[dict[str, Any]]:
    try:
        return list(fetch_status(proc.status_port, timeout_s=1.0)["evaluations"])
    except (OSError, ValueError, KeyError):
        return []


def _wait(procs: list[ClusterProcess], until: Any, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    evaluations: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        assert all(p.alive() for p in procs), f"a daemon died while waiting for {what}"
        evaluations = _evaluations(procs[0])
        if until(evaluations):
            return evaluations
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {TIMEOUT_S} s: {[(e['round'], e['included']) for e in evaluations]}")


def _periods(evaluations: list[dict[str, Any]]) -> dict[int, float]:
    """round -> seconds from the previous round's commit to its own."""
    at = {e["round"]: e["committed_at"] for e in evaluations}
    return {r: at[r] - at[r - 1] for r in at if r - 1 in at}


def test_a_hospital_never_started_costs_one_deadline_then_joins_and_contributes(tmp_path: Path) -> None:
    configs = _testnet(tmp_path / "net")
    procs = start_cluster(configs[:ABSENT])
    late: list[ClusterProcess] = []
    try:
        without = _wait(procs, lambda ev: len(ev) >= ROUNDS_WITHOUT, f"{ROUNDS_WITHOUT} rounds without member 3")
        late = start_cluster([configs[ABSENT]])
        everyone = procs + late

        def all_up_rounds(ev: list[dict[str, Any]]) -> list[int]:
            full = {e["round"] for e in ev if e["committed"] and ABSENT in e["included"]}
            return sorted(r for r in full if r - 1 in full)

        final = _wait(everyone, lambda ev: len(all_up_rounds(ev)) >= 2, "two consecutive rounds with member 3")
    finally:
        for p in procs + late:
            p.stop()

    first, later = without[0], without[1:ROUNDS_WITHOUT]
    assert first["committed"] or first["missing"] == [ABSENT], first
    assert [(e["committed"], e["included"]) for e in later] == [(True, [0, 1, 2])] * (ROUNDS_WITHOUT - 1), later
    periods = _periods(final)
    without_s = [periods[e["round"]] for e in later]
    with_s = [periods[r] for r in all_up_rounds(final)]
    baseline = statistics.median(with_s)
    print(f"round 1: {first['round_s']:.2f} s (deadline {PHASE_DEADLINE_S} s); rounds 2-{ROUNDS_WITHOUT} without "
          f"member 3: {[round(s, 2) for s in without_s]} s; with all four: {[round(s, 2) for s in with_s]} s")
    assert max(without_s) <= 2 * baseline + 0.5, (without_s, with_s)
    joined = [e for e in final if e["committed"] and ABSENT in e["included"]]
    assert joined and joined[0]["round"] > ROUNDS_WITHOUT, "member 3's update was accepted after it started"
