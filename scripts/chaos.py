"""Chaos on real processes: a local cluster under a random, seeded schedule of process faults.

    /tmp/venv/bin/python scripts/chaos.py --seed 7 [--nodes 4] [--rounds 4] [--workdir DIR] [--json]

The schedule drawn from the seed always contains a SIGKILL of the primary in the middle of a round (a
random fraction of a second to a few seconds after the round opened), a node restarted with an empty
ledger that must catch up from its peers, and a SIGSTOP/SIGCONT pause; a few more kills of random members
at random moments follow. Killed nodes are restarted. At most f nodes are disrupted at once (the runner
delays a fault that would exceed f), because beyond f the protocol promises nothing.

The run goes through `fednode cluster` exactly as a user would start it, then checks, from the outside:
every round committed, every node's head hash equal, and `fednode audit` passing on every node home.
The seed is printed first; any failure exits 1 with the seed, so `--seed SEED` replays the same schedule
(the moments are the same relative to the rounds; the machine's timing is not reproducible).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXTRA_KILLS_MAX = 2


@dataclass(frozen=True)
class Schedule:
    """Fault options for `fednode cluster`, as (option, value) pairs, and the f they respect."""

    options: tuple[tuple[str, str], ...]
    max_down: int

    def argv(self) -> list[str]:
        out = [item for pair in self.options for item in pair]
        return out + ["--max-down", str(self.max_down)]


def draw_schedule(seed: int, nodes: int, rounds: int) -> Schedule:
    """The seed's fault schedule: primary killed mid-round, a wipe, a pause, then extra random kills."""
    rng = random.Random(seed)
    f = max(1, (nodes - 1) // 3)

    def moment() -> str:
        return f"{rng.randint(1, rounds)}+{rng.uniform(0.2, 3.0):.2f}"

    def member() -> str:
        return str(rng.randrange(nodes))

    options = [("--kill", f"primary@{moment()}"),
               ("--wipe", f"{member()}@{moment()}"),
               ("--pause", f"{member()}@{moment()}:{rng.uniform(1.0, 6.0):.1f}")]
    for _ in range(rng.randint(0, EXTRA_KILLS_MAX)):
        options.append(("--kill", f"{rng.choice([member(), 'primary'])}@{moment()}"))
    rng.shuffle(options)
    return Schedule(tuple(options), f)


def fednode(*args: str, capture_stderr: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI; no timeout here, because killing `fednode cluster` hard would orphan its daemons (its own
    stall timeout ends a stuck run and stops them)."""
    return subprocess.run([sys.executable, "-m", "node.cli", *args], check=False, cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture_stderr else None,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def check_run(summary: dict[str, Any], workdir: Path, nodes: int, rounds: int) -> list[str]:
    """Everything that must hold after the chaos; an empty list means the run passed."""
    problems = []
    if summary["rounds_committed"] < rounds:
        problems.append(f"only {summary['rounds_committed']}/{rounds} rounds committed")
    if len(summary["head_hashes"]) != nodes or len(set(summary["head_hashes"])) != 1:
        problems.append(f"head hashes differ: {summary['head_hashes']}")
    for fault in summary["faults"]:
        if "skipped" in fault:
            problems.append(f"fault {fault['fault']} was skipped: {fault['skipped']}")
        elif fault["recovery_s"] is None:
            problems.append(f"node {fault['node']} never recovered from {fault['fault']}")
    for i in range(nodes):
        audit = fednode("audit", str(workdir / f"node-{i}"))
        if audit.returncode != 0:
            problems.append(f"audit of node-{i} failed: {(audit.stdout + audit.stderr).strip()[-500:]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="Schedule seed (default: random, printed).")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workdir", type=Path, help="Where node homes go (default: a new temporary directory).")
    parser.add_argument("--restart-after", type=float, default=2.0)
    parser.add_argument("--stall-timeout", type=float, default=180.0)
    parser.add_argument("--phase-deadline", type=float, default=10.0,
                        help="Genesis phase deadline: how long a round waits for a member that went down.")
    parser.add_argument("--json", action="store_true", help="Print a JSON report as the last stdout line.")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    schedule = draw_schedule(seed, args.nodes, args.rounds)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"fednode-chaos-{seed}-"))
    print(f"chaos seed {seed}: {' '.join(schedule.argv())}", flush=True)
    print(f"node homes in {workdir}", flush=True)
    started = time.monotonic()
    run = fednode("cluster", "--nodes", str(args.nodes), "--rounds", str(args.rounds), "--workdir", str(workdir),
                  "--json", "--restart-after", str(args.restart_after), "--stall-timeout", str(args.stall_timeout),
                  "--phase-deadline", str(args.phase_deadline),
                  *schedule.argv(), capture_stderr=False)
    lines = run.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        summary = None
    if summary is None:
        problems = [f"fednode cluster failed (exit {run.returncode}) without a summary"]
    else:
        problems = check_run(summary, workdir, args.nodes, args.rounds)
    report = {"seed": seed, "passed": not problems, "problems": problems, "schedule": schedule.argv(),
              "wall_s": round(time.monotonic() - started, 1), "workdir": str(workdir),
              "faults": summary["faults"] if summary else []}
    for problem in problems:
        print(f"FAILED (seed {seed}): {problem}", flush=True)
    if not problems:
        print(f"chaos seed {seed}: passed: {args.rounds} rounds committed, heads equal, audit clean on "
              f"{args.nodes} homes", flush=True)
    if args.json:
        print(json.dumps(report), flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
