"""A local multi-hospital cluster: N real daemons as separate processes on 127.0.0.1.

The cluster runner is only a launcher and an observer: the daemons find each other over libp2p exactly as
they would across hospitals, and the runner learns what happened only through their local status
endpoints. Progress goes to stderr; the summary (and, with --json, one JSON object as the last line)
goes to stdout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from node.config import load_node_config
from node.status import fetch_status

POLL_S = 0.25


class ClusterError(Exception):
    """The cluster did not finish (a daemon died, or no progress before the stall timeout)."""


@dataclass
class ClusterProcess:
    index: int
    config_path: Path
    status_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it exits
        cmd = [sys.executable, "-m", "node.cli", "start", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Observation:
    statuses: dict[int, dict[str, Any]] = field(default_factory=dict)

    def poll(self, procs: list[ClusterProcess]) -> None:
        for p in procs:
            try:
                self.statuses[p.index] = fetch_status(p.status_port, timeout_s=1.0)
            except (OSError, ValueError):
                self.statuses.pop(p.index, None)


def start_cluster(configs: list[Path]) -> list[ClusterProcess]:
    procs = []
    for i, path in enumerate(configs):
        cfg = load_node_config(path)
        procs.append(ClusterProcess(i, path, cfg.status_port, cfg.home / "daemon.log"))
    for p in procs:
        p.start()
    return procs


def progress_line(obs: Observation, n: int, rounds: int, elapsed_s: float) -> str:
    if not obs.statuses:
        return f"[{elapsed_s:6.1f}s] starting {n} nodes..."
    heights = [s["height"] for s in obs.statuses.values()]
    done = min(sum(1 for e in s["evaluations"] if e["committed"]) for s in obs.statuses.values())
    accs = [s["evaluations"][-1]["accuracy"] for s in obs.statuses.values() if s["evaluations"]]
    acc = f"{accs[0]:.4f}" if accs else "  -   "
    peers = min(s["peers"] for s in obs.statuses.values())
    view = max(s["view"] for s in obs.statuses.values())
    return (f"[{elapsed_s:6.1f}s] round {done}/{rounds} committed | height {min(heights)}-{max(heights)} | "
            f"accuracy {acc} | nodes up {len(obs.statuses)}/{n} | peers {peers}/{n - 1} | view {view}")


def wait_for_finish(procs: list[ClusterProcess], rounds: int, *, stall_timeout_s: float, out: TextIO,
                    events: list[tuple[float, Any]] | None = None) -> tuple[Observation, float]:
    """Poll until every node finished all rounds and all heads agree; run scheduled fault `events`."""
    obs = Observation()
    started = time.monotonic()
    last_progress, last_key, last_line = started, None, ""
    pending = sorted(events or [], key=lambda e: e[0])
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        while pending and pending[0][0] <= now - started:
            pending.pop(0)[1](procs)
        obs.poll([p for p in procs if p.alive()])
        for p in procs:
            if p.proc is not None and p.proc.poll() not in (None, -signal.SIGKILL, -signal.SIGSTOP):
                raise ClusterError(f"node {p.index} exited with code {p.proc.returncode}; see {p.log_path}")
        line = progress_line(obs, len(procs), rounds, now - started)
        if line.split("]", 1)[1] != last_line.split("]", 1)[-1]:
            print(line, file=out, flush=True)
            last_line = line
        key = tuple(sorted((i, s["height"]) for i, s in obs.statuses.items()))
        if key != last_key:
            last_key, last_progress = key, now
        if len(obs.statuses) == len(procs) and not pending and all(s["finished"] for s in obs.statuses.values()) \
                and len({s["head_hash"] for s in obs.statuses.values()}) == 1:
            return obs, now - started
        if now - last_progress > stall_timeout_s:
            raise ClusterError(f"no progress for {stall_timeout_s:.0f}s; node logs are in "
                               f"{procs[0].log_path.parent.parent}")


def summarize(obs: Observation, wall_s: float, rounds: int, workdir: Path) -> dict[str, Any]:
    statuses = [obs.statuses[i] for i in sorted(obs.statuses)]
    first = statuses[0]
    committed = [e for e in first["evaluations"] if e["committed"]]
    return {
        "rounds_requested": rounds,
        "rounds_committed": len(committed),
        "rounds_aborted": sum(1 for e in first["evaluations"] if not e["committed"]),
        "accuracy": committed[-1]["accuracy"] if committed else None,
        "accuracy_by_round": [round(e["accuracy"], 4) for e in committed],
        "round_s": [round(e["round_s"], 3) for e in committed],
        "height": first["height"],
        "head_hashes": [s["head_hash"] for s in statuses],
        "heads_equal": len({s["head_hash"] for s in statuses}) == 1,
        "views": [s["view"] for s in statuses],
        "phase_s": {i: s["phase_s"] for i, s in enumerate(statuses)},
        "rejected": {i: s["rejected"] for i, s in enumerate(statuses) if s["rejected"]},
        "wall_s": round(wall_s, 3),
        "workdir": str(workdir),
    }


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    print(f"\nfednode cluster: {summary['rounds_committed']}/{summary['rounds_requested']} rounds committed "
          f"in {summary['wall_s']:.1f}s, height {summary['height']}", file=out)
    for i, (acc, secs) in enumerate(zip(summary["accuracy_by_round"], summary["round_s"]), start=1):
        print(f"  round {i}: accuracy {acc:.4f}  ({secs:.2f}s)", file=out)
    state = "all equal" if summary["heads_equal"] else "DIFFERENT"
    print(f"  head hashes: {state} ({summary['head_hashes'][0][:16]}...)", file=out)
    print(f"  node homes: {summary['workdir']}  (inspect with: fednode audit {summary['workdir']}/node-0)",
          file=out)
