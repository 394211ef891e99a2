"""A local multi-hospital cluster: N real daemons as separate processes on 127.0.0.1, with fault injection.

The cluster runner is only a launcher and an observer: the daemons find each other over libp2p exactly as
they would across hospitals, and the runner learns what happened only through their local status
endpoints. Progress goes to stderr; the summary (and, with --json, one JSON object as the last line)
goes to stdout.

This module is the run itself: the poll loop that waits until every node finished, driving the fault
schedule as it goes. The parts it ties together each have a module: the daemons' processes and their
statuses (`node.cluster_processes`), the faults (`node.cluster_chaos`, docs/chaos.md), and the progress
line and summary (`node.cluster_report`).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from node.cluster_chaos import FaultInjector
from node.cluster_processes import ClusterError, ClusterProcess, Observation
from node.cluster_report import progress_line

POLL_S = 0.25
STARTUP_GRACE_S = 180.0  # extra patience before any node first answers: many daemons importing torch at once


def node_finished(status: dict[str, Any], rounds: int) -> bool:
    """All rounds committed, no round open, and every round either evaluated here or replayed from the
    node's own ledger at start-up (see `unfinished_reason`)."""
    return unfinished_reason(status, rounds) is None


def unfinished_reason(status: dict[str, Any], rounds: int) -> str | None:
    """Why a node has not finished all `rounds`, or None once it has: its rounds committed, no round open, and
    every round either evaluated here or replayed from the node's own ledger at start-up (a node restarted
    after the last round replays them all and evaluates none). Judged from the evaluations rather than the
    daemon's `finished` flag, which turns true as soon as the last result block is applied, before that
    round's evaluation (a worker thread) is listed. The node's own `eval` of the last round must be committed
    too, so that the ledger holds the consortium accuracy. The reason is printed when a cluster stalls."""
    evaluations = status["evaluations"]
    committed = sum(1 for e in evaluations if e["committed"])
    if status["round_open"]:
        return f"round {status.get('round', '?')} open"
    if committed < rounds:
        return f"{committed} of {rounds} rounds committed"
    waiting = [e.get("round") for e in evaluations if "accuracy" not in e and not e.get("replayed")]
    if waiting:
        return f"evaluation of round(s) {waiting} not done"
    if status.get("evals_pending"):
        return f"{status['evals_pending']} own eval transaction(s) not on the ledger"
    return None


def stall_report(obs: Observation, procs: list[ClusterProcess], rounds: int) -> str:
    """One clause per node that keeps the cluster from finishing: silent, unfinished, or on another head."""
    heads = Counter(s["head_hash"] for s in obs.statuses.values())
    common = heads.most_common(1)[0][0] if heads else None
    clauses = []
    for p in procs:
        s = obs.statuses.get(p.index)
        if s is None:
            clauses.append(f"node {p.index}: no status")
            continue
        reason = unfinished_reason(s, rounds)
        if reason is None and s["head_hash"] != common:
            reason = f"head {str(s['head_hash'])[:12]} at height {s['height']} differs"
        if reason is not None:
            clauses.append(f"node {p.index} (height {s['height']}, view {s['view']}): {reason}")
    return "; ".join(clauses) or "every node finished"


def wait_for_finish(procs: list[ClusterProcess], rounds: int, *, stall_timeout_s: float, out: TextIO,
                    injector: FaultInjector | None = None,
                    on_poll: Callable[[Observation, float], None] | None = None) -> tuple[Observation, float]:
    """Poll until every node finished all rounds, all heads agree and every fault was injected and recovered.

    A fault whose round came keeps firing after the rounds are done (the nodes keep running until this
    returns), so a late kill or wipe still exercises restart and catch-up against a finished chain.
    """
    obs = Observation()
    started = time.monotonic()
    last_progress, last_line = started, ""
    heights_seen: dict[int, int] = {}
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        obs.poll(procs)
        if injector is not None:
            injector.step(procs, obs, now - started)
        if on_poll is not None:
            on_poll(obs, now - started)
        for p in procs:
            if p.proc is not None and p.proc.poll() not in (None, -signal.SIGKILL):
                raise ClusterError(f"node {p.index} exited with code {p.proc.returncode}; see {p.log_path}")
        line = progress_line(obs, len(procs), rounds, now - started)
        if line.split("]", 1)[1] != last_line.split("]", 1)[-1]:
            print(line, file=out, flush=True)
            last_line = line
        for i, s in obs.statuses.items():
            if s["height"] != heights_seen.get(i):
                heights_seen[i], last_progress = s["height"], now
        if len(obs.statuses) == len(procs) and all(node_finished(s, rounds) for s in obs.statuses.values()) \
                and len({s["head_hash"] for s in obs.statuses.values()}) == 1 \
                and (injector is None or injector.done):
            return obs, now - started
        if now - last_progress > stall_timeout_s + (0.0 if heights_seen else STARTUP_GRACE_S):
            raise ClusterError(f"no progress for {stall_timeout_s:.0f}s ({stall_report(obs, procs, rounds)}); "
                               f"node logs are in {procs[0].log_path.parent.parent}")
