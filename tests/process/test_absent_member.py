"""A hospital that never started costs the others one phase deadline, not one per round, and joins later.

Four real daemons with validation on (N = 3f + 1 = 4, t_v = f = 1), member 3 not started. Round 1 waits out
its keys deadline; member 3 is then absent, counted as the one faulty member and left out of validation, and
every round commits with the three others at the pace of a round with every member up. Then member 3 starts,
catches up, says `ready`, takes part again (the robust rule may still reject its update, as any member's) and
its update is accepted in a later round. The round periods (between consecutive
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
from node.testnet import free_ports
from tests.process.test_cluster import fednode

N, ABSENT, ROUNDS_WITHOUT, PHASE_DEADLINE_S, VIEW_TIMEOUT_MS, TIMEOUT_S = 4, 3, 5, 8.0, 1000, 150
BASELINE_ROUNDS = 3
"""The last rounds with all four up that the baseline takes (member 3's first rounds are slower: it is still
catching up, and its transactions take seconds to reach the primary until the gossip mesh includes it)."""


def _testnet(work: Path) -> list[Path]:
    """`fednode testnet`, with a short phase deadline written into genesis (and its new hash into each config),
    and more rounds than the test waits for: member 3 may take half a minute to start on a loaded machine.
    The ports are reserved by this process (`free_ports`), which outlives member 3's late start: the `testnet`
    subprocess's reservation ends with it, and another process (or one of the daemons' outgoing connections)
    took member 3's port before it started in one run.
    The deadline (8 s) outlasts a censoring primary (2 x 1 s view timeouts, doubled once: 6 s), so an absent
    member may be counted among the faulty (`node.settings.censorship_bound_s`).

    The robust rule is `none` (validation still runs on shares, rejecting only what the statistics prove):
    this test is about who takes part, and the default rule's norm ratio rejects a newcomer's update for
    ever once the others have converged (their updates' norms are near 0, the newcomer's is not).
    """
    result = fednode("testnet", "--nodes", str(N), "--rounds", "500", "--out", str(work), timeout_s=120)
    assert result.returncode == 0, result.stderr[-2000:]
    genesis = json.loads((work / "genesis.json").read_text())
    ports = free_ports(2 * N)
    for i, member in enumerate(genesis["members"]):
        member["address"] = f"/ip4/127.0.0.1/tcp/{ports[i]}"
    genesis["protocol"] |= {"phase_deadline_s": PHASE_DEADLINE_S, "view_timeout_ms": VIEW_TIMEOUT_MS}
    genesis["validation"]["rule"] = {"kind": "none"}
    (work / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    chain_id = genesis_from_dict(genesis).chain_id.hex()
    configs = [work / f"node-{i}" / "config.json" for i in range(N)]
    for i, path in enumerate(configs):
        config = json.loads(path.read_text()) | {"genesis_hash": chain_id, "listen_port": ports[i],
                                                 "status_port": ports[N + i]}
        path.write_text(json.dumps(config, indent=2) + "\n")
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


def _all_up(evaluations: list[dict[str, Any]]) -> list[int]:
    """Committed rounds in which member 3 took part (its update accepted or rejected by the rule), preceded by
    another such round: their periods are those of rounds with every member up."""
    up = {e["round"] for e in evaluations if e["committed"] and ABSENT in e["included"] + e["rejected"]}
    return sorted(r for r in up if r - 1 in up)


def _joined(evaluations: list[dict[str, Any]]) -> bool:
    return len(_all_up(evaluations)) >= BASELINE_ROUNDS and any(ABSENT in e["included"] for e in evaluations
                                                                if e["committed"])


def test_a_hospital_never_started_costs_one_deadline_then_joins_and_contributes(tmp_path: Path) -> None:
    configs = _testnet(tmp_path / "net")
    procs = start_cluster(configs[:ABSENT])
    late: list[ClusterProcess] = []
    try:
        without = _wait(procs, lambda ev: len(ev) >= ROUNDS_WITHOUT, f"{ROUNDS_WITHOUT} rounds without member 3")
        started = time.monotonic()
        late = start_cluster([configs[ABSENT]])
        final = _wait(procs + late, _joined, "member 3 taking part in three rounds, its update accepted in one")
        joined_s = time.monotonic() - started
    finally:
        for p in procs + late:
            p.stop()

    first, later = without[0], without[1:ROUNDS_WITHOUT]
    assert first["committed"] or first["missing"] == [ABSENT], first
    assert [(e["committed"], e["included"]) for e in later] == [(True, [0, 1, 2])] * (ROUNDS_WITHOUT - 1), later
    periods = _periods(final)
    without_s = [periods[e["round"]] for e in later]
    with_s = [periods[r] for r in _all_up(final)[-BASELINE_ROUNDS:]]
    baseline = statistics.median(with_s)
    print(f"\nround 1: {first['round_s']:.2f} s (phase deadline {PHASE_DEADLINE_S} s); periods of rounds 2-"
          f"{ROUNDS_WITHOUT} without member 3: {[round(s, 2) for s in without_s]} s; of rounds with all four: "
          f"{[round(s, 2) for s in with_s]} s (median {baseline:.2f} s); member 3 took part {joined_s:.0f} s "
          f"after it was started; rounds including it: "
          f"{[e['round'] for e in final if e['committed'] and ABSENT in e['included']]}; aborted after it "
          f"started: {[e['round'] for e in final[ROUNDS_WITHOUT:] if not e['committed']]}")
    assert max(without_s) <= 2 * baseline + 0.5, (without_s, with_s)
    back = [e for e in final[ROUNDS_WITHOUT:] if not e["committed"]]
    assert all(e["missing"] == [ABSENT] for e in back), back  # a comeback that fails costs a round, naming it
