"""Benchmark whole clusters of real daemons on loopback: start-up, round time split, secure vs plain, transports.

Every figure comes from real `fednode start` processes (node.cluster_processes.start_cluster) observed only
through their /status endpoints, like `fednode cluster`. The machine is shared and loaded, so every configuration
is repeated, the variants being compared run interleaved in the same invocation (A, B, A, B, ...), medians
are reported, ratios are taken against the baseline measured in the same invocation, and the load average
is printed with every figure.

Subcommands (each prints a table to stderr and, with --json, one JSON object as the last stdout line):

    startup          time from process start to the first committed block (and to the first committed round)
    split            one round's wall time split into training, masking, transfer, validation, consensus
    secure-vs-plain  secure / plain round wall time, bytes sent per node per round, masking time
    validation-cost  secure rounds with / without validation: CPU and bytes validation adds per node per round
    transport        consensus_transport gossip vs direct: round time (commit latency: bench_commit_latency.py)

Usage examples:

    python scripts/bench_cluster.py startup --nodes 4 --repeats 3
    python scripts/bench_cluster.py split --nodes 4 --rounds 4 --repeats 2
    python scripts/bench_cluster.py secure-vs-plain --nodes 5 7 --model mlp --hidden 30300 --repeats 2
    python scripts/bench_cluster.py validation-cost --nodes 7 10 --model mlp --hidden 30300 --rounds 6 --repeats 2
    python scripts/bench_cluster.py transport --nodes 4 --repeats 2
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml import data as mldata
from ml.train import TrainConfig
from node.cluster import wait_for_finish
from node.cluster_processes import ClusterError, ClusterProcess, start_cluster
from node.status import fetch_status
from node.testnet import create_testnet

STARTUP_POLL_S = 0.1
STALL_TIMEOUT_S = 180.0


def load() -> str:
    """The 1-minute load average and core count, printed beside every figure (the machine is shared)."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


@dataclass(frozen=True)
class Setup:
    """One cluster configuration to measure."""

    nodes: int
    rounds: int
    secure: bool = True
    validate: bool = True
    model_kind: str = "logreg"
    hidden: int = 32
    protocol: tuple[tuple[str, Any], ...] = ()
    seed: int = 1
    trivial_training: bool = False
    """One full-batch SGD step per round instead of the genesis default (2 epochs of batches of 32): the
    "trivial local training" of the Flower figures the issue compares against."""

    def label(self) -> str:
        model = self.model_kind if self.model_kind == "logreg" else f"mlp{self.hidden}"
        proto = ",".join(f"{k}={v}" for k, v in self.protocol)
        mode = ("secure+validation" if self.validate else "secure") if self.secure else "plain"
        return (f"N={self.nodes} {model} {mode}" + (f" {proto}" if proto else "")
                + (" trivial-training" if self.trivial_training else ""))

    def training(self) -> TrainConfig:
        return TrainConfig(epochs=1, batch_size=1 << 20) if self.trivial_training else TrainConfig()


@dataclass
class Run:
    """What one cluster run measured (per node lists are indexed by member)."""

    setup: Setup
    first_block_s: float
    first_round_s: float
    wall_s: float
    round_s: list[float]
    phase_s: list[dict[str, float]]
    bytes_sent: list[dict[str, int]]
    commit_latency_ms: list[float]
    load_start: float
    load_end: float
    extra: dict[str, Any] = field(default_factory=dict)
    period_s: list[float] = field(default_factory=list)
    """Seconds between consecutive committed rounds' commits (rounds 2..): what each round adds to a run."""
    round_cpu_s: list[float] = field(default_factory=list)
    """CPU seconds of each node between consecutive commits (all nodes, rounds 2..): the steady-state cost."""

    def per_round(self, key: str) -> float:
        """Median over nodes of a cumulative phase_s entry divided by the number of committed rounds."""
        return statistics.median(p.get(key, 0.0) for p in self.phase_s) / max(1, len(self.round_s))

    def bytes_per_node_round(self, kinds: tuple[str, ...] | None = None) -> float:
        totals = [sum(v for k, v in b.items() if kinds is None or k in kinds) for b in self.bytes_sent]
        return statistics.median(totals) / max(1, len(self.round_s))


def cpu_s(procs: list[ClusterProcess]) -> list[float]:
    """CPU seconds (user + system) each daemon process has used so far, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = []
    for p in procs:
        try:
            fields = Path(f"/proc/{p.proc.pid if p.proc else 0}/stat").read_text().rsplit(")", 1)[1].split()
            out.append((int(fields[11]) + int(fields[12])) / ticks)
        except (OSError, IndexError, ValueError):
            out.append(float("nan"))
    return out


def _statuses(procs: list[ClusterProcess]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for p in procs:
        try:
            out.append(fetch_status(p.status_port, timeout_s=1.0))
        except (OSError, ValueError):
            out.append(None)
    return out


def run_cluster(setup: Setup, workdir: Path, *, stop_when: Any = None, timeout_s: float = 600.0,
                poll_s: float = STARTUP_POLL_S) -> Run:
    """Start the cluster, time the first committed block, wait for all rounds, collect statuses, stop it.

    `stop_when(statuses)` (optional) ends the run early once it returns True, before the rounds finish.
    Status polling costs the daemons a little CPU: `poll_s` trades start-up timing resolution for that.
    """
    dataset = mldata.DatasetSpec(name="breast_cancer", csv_path=None, label_column=None, seed=setup.seed)
    split = mldata.SplitSpec(kind="iid", alpha=0.5, column=None)
    configs = create_testnet(workdir, setup.nodes, rounds=setup.rounds, seed=setup.seed, dataset=dataset,
                             split=split, model_kind=setup.model_kind, hidden=setup.hidden,
                             training=setup.training(), protocol=dict(setup.protocol), secure=setup.secure,
                             validate=setup.validate)
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    procs = start_cluster(configs)
    try:
        first_block_s = first_round_s = float("nan")
        cpu_at_first_block: list[float] = []
        statuses: list[dict[str, Any] | None] = []
        while time.monotonic() - started < timeout_s:
            time.sleep(poll_s)
            for p in procs:
                if not p.alive():
                    raise ClusterError(f"node {p.index} exited; see {p.log_path}")
            statuses = _statuses(procs)
            live = [s for s in statuses if s is not None]
            now = time.monotonic() - started
            if len(live) == len(procs) and math.isnan(first_block_s) and all(s["height"] >= 1 for s in live):
                first_block_s = now
                cpu_at_first_block = cpu_s(procs)
            if len(live) == len(procs) and all(any(e["committed"] for e in s["evaluations"]) for s in live):
                first_round_s = now
                break
            if stop_when is not None and len(live) == len(procs) and stop_when(live):
                break
        else:
            raise ClusterError(f"no committed round within {timeout_s:.0f}s; logs in {workdir}")
        if stop_when is None or not stop_when([s for s in statuses if s is not None]):
            wait_for_finish(procs, setup.rounds, stall_timeout_s=STALL_TIMEOUT_S, out=io.StringIO())
        wall_s = time.monotonic() - started
        final = [s for s in _statuses(procs) if s is not None]
        cpu_after_first_block = [b - a for a, b in zip(cpu_at_first_block, cpu_s(procs))]
    finally:
        for p in procs:
            p.stop()
    first = final[0]
    committed = [e for e in first["evaluations"] if e.get("committed") and "round_s" in e]
    latencies = [ms for s in final for ms in s.get("commit_latency_ms", [])]
    commits = sorted(e["committed_at"] for e in first["evaluations"] if e.get("committed") and "committed_at" in e)
    return Run(setup, first_block_s, first_round_s, wall_s, [e["round_s"] for e in committed],
               [s["phase_s"] for s in final], [s["bytes_sent"] for s in final], latencies, load_start,
               os.getloadavg()[0],
               {"accuracy": committed[-1]["accuracy"] if committed else None,
                "views": [s["view"] for s in final], "cpu_after_first_block_s": cpu_after_first_block,
                "heights": [s["height"] for s in final], "heads_equal": len({s["head_hash"] for s in final}) == 1},
               [b - a for a, b in itertools.pairwise(commits)],
               [b - a for s in final for a, b in itertools.pairwise(
                   [e["cpu_at_commit_s"] for e in s["evaluations"] if e.get("committed") and "cpu_at_commit_s" in e])])


def run_repeated(setups: list[Setup], repeats: int, root: Path, *, keep: bool = False,
                 **kw: Any) -> dict[Setup, list[Run]]:
    """Run every setup `repeats` times, interleaved (A, B, A, B...), so drifting load hits all alike."""
    results: dict[Setup, list[Run]] = {s: [] for s in setups}
    for r in range(repeats):
        for i, setup in enumerate(setups):
            work = root / f"r{r}-s{i}"
            print(f"  [{time.strftime('%H:%M:%S')}] {setup.label()} repeat {r + 1}/{repeats} ({load()})",
                  file=sys.stderr, flush=True)
            run = run_cluster(setup, work, **kw)
            results[setup].append(run)
            print(f"      first block {run.first_block_s:.2f}s, round_s {[round(x, 2) for x in run.round_s]}, "
                  f"period_s {[round(x, 2) for x in run.period_s]}, "
                  f"wall {run.wall_s:.1f}s, load {run.load_start:.2f}->{run.load_end:.2f}", file=sys.stderr,
                  flush=True)
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    return results


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def round_median(runs: list[Run]) -> float:
    """Median round wall time over every committed round of every repeat, the first round excluded.

    The first round also pays for connection set-up and cold caches, so it is reported separately.
    """
    return med([x for r in runs for x in (r.round_s[1:] if len(r.round_s) > 1 else r.round_s)])


def loads(runs: list[Run]) -> str:
    values = [r.load_start for r in runs] + [r.load_end for r in runs]
    return f"{min(values):.1f}-{max(values):.1f}"


def summary_row(runs: list[Run]) -> dict[str, Any]:
    return {
        "label": runs[0].setup.label(),
        "repeats": len(runs),
        "first_block_s": med([r.first_block_s for r in runs]),
        "first_round_s": med([r.first_round_s for r in runs]),
        "round1_s": med([r.round_s[0] for r in runs if r.round_s]),
        "round_s": round_median(runs),
        "period_s": med([x for r in runs for x in r.period_s]),
        "round_cpu_s": med([x for r in runs for x in r.round_cpu_s]),
        "training_s": med([r.per_round("training") for r in runs]),
        "masking_s": med([r.per_round("masking") for r in runs]),
        "transfer_s": med([r.per_round("transfer") for r in runs]),
        "transfer_wall_s": med([r.per_round("transfer") / max(1, r.setup.nodes - 1) for r in runs]),
        "validation_s": med([r.per_round("validation") for r in runs]),
        "consensus_send_s": med([r.per_round("consensus_send") for r in runs]),
        "cpu_per_node_round_s": med([statistics.median(r.extra["cpu_after_first_block_s"]) / max(1, len(r.round_s))
                                     for r in runs]),
        "training_cpu_s": med([r.per_round("training_cpu") for r in runs]),
        "quantizing_cpu_s": med([r.per_round("quantizing_cpu") for r in runs]),
        "bytes_per_node_round": med([r.bytes_per_node_round() for r in runs]),
        "bytes_by_kind_per_node_round": {k: med([statistics.median(b.get(k, 0) for b in r.bytes_sent)
                                                 / max(1, len(r.round_s)) for r in runs])
                                         for k in sorted({k for r in runs for b in r.bytes_sent for k in b})},
        "accuracy": med([r.extra["accuracy"] for r in runs if r.extra["accuracy"] is not None]),
        "max_view": max(max(r.extra["views"]) for r in runs),
        "load": loads(runs),
    }


# ---------------------------------------------------------------------------------------------- commands


def cmd_startup(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    setups = [Setup(n, 1, secure=not args.plain, validate=not args.no_validation, protocol=_protocol(args),
                    trivial_training=args.trivial_training)
              for n in args.nodes]
    results = run_repeated(setups, args.repeats, root, keep=args.keep)
    rows = [summary_row(runs) for runs in results.values()]
    print(f"\nstart-up: process start -> first committed block on every node ({args.repeats} repeats, median)",
          file=sys.stderr)
    for row in rows:
        print(f"  {row['label']:<40} first block {row['first_block_s']:6.2f}s   first round committed "
              f"{row['first_round_s']:6.2f}s   (load {row['load']})", file=sys.stderr)
    return {"startup": rows}


def cmd_split(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    setups = [Setup(n, args.rounds, secure=not args.plain, validate=not args.no_validation,
                    model_kind=args.model, hidden=args.hidden, protocol=_protocol(args),
                    trivial_training=args.trivial_training) for n in args.nodes]
    results = run_repeated(setups, args.repeats, root, keep=args.keep)
    rows = [summary_row(runs) for runs in results.values()]
    print("\nround time split (per node per round, median over nodes and repeats; rounds 2.. for round_s)",
          file=sys.stderr)
    for row in rows:
        known = row["training_s"] + row["masking_s"] + row["transfer_wall_s"] + row["validation_s"]
        rest = row["round_s"] - known
        print(f"  {row['label']}: round {row['round_s']:.2f}s (round 1: {row['round1_s']:.2f}s) = training "
              f"{row['training_s']:.3f}s + masking {row['masking_s']:.3f}s + transfer {row['transfer_wall_s']:.3f}s + "
              f"validation/aggregation {row['validation_s']:.3f}s + consensus and waiting {rest:.3f}s "
              f"(of which consensus sends {row['consensus_send_s']:.3f}s)   (load {row['load']})", file=sys.stderr)
        row["consensus_and_waiting_s"] = rest
    return {"split": rows}


def cmd_secure_vs_plain(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    out = []
    for n in args.nodes:
        pair = [Setup(n, args.rounds, secure=s, validate=not args.no_validation, model_kind=args.model,
                      hidden=args.hidden, protocol=_protocol(args), trivial_training=args.trivial_training)
                for s in (False, True)]
        results = run_repeated(pair, args.repeats, root / f"n{n}", keep=args.keep)
        plain, secure = (summary_row(results[s]) for s in pair)
        ratio = secure["round_s"] / plain["round_s"]
        period_ratio = secure["period_s"] / plain["period_s"]
        bytes_ratio = secure["bytes_per_node_round"] / plain["bytes_per_node_round"]
        model_bytes = {"plain": plain["bytes_by_kind_per_node_round"].get("blob", 0),
                       "secure": secure["bytes_by_kind_per_node_round"].get("masked", 0)}
        print(f"\n{pair[1].label()} vs plain ({args.repeats} repeats interleaved, median; load "
              f"{plain['load']} / {secure['load']})\n"
              f"  round period (commit to next commit): plain {plain['period_s']:.2f}s, secure "
              f"{secure['period_s']:.2f}s, ratio {period_ratio:.2f}; CPU per node per round then: plain "
              f"{plain['round_cpu_s']:.3f}s, secure {secure['round_cpu_s']:.3f}s\n"
              f"  round wall time (open to evaluated): plain {plain['round_s']:.2f}s, secure {secure['round_s']:.2f}s, "
              f"ratio {ratio:.2f}  (round 1: {plain['round1_s']:.2f}s / {secure['round1_s']:.2f}s)\n"
              f"  bytes sent per node per round: plain {plain['bytes_per_node_round']:,.0f}, secure "
              f"{secure['bytes_per_node_round']:,.0f}, ratio {bytes_ratio:.3f}\n"
              f"    model-sized payloads only: plain blob {model_bytes['plain']:,.0f}, secure masked "
              f"{model_bytes['secure']:,.0f}\n"
              f"  masking per node per round {secure['masking_s'] * 1000:.1f} ms; training {secure['training_s']:.3f}s;"
              f" accuracy plain {plain['accuracy']:.4f} secure {secure['accuracy']:.4f}\n"
              f"  CPU per node per round (from the first block on): plain {plain['cpu_per_node_round_s']:.2f}s, "
              f"secure {secure['cpu_per_node_round_s']:.2f}s; of which training plain {plain['training_cpu_s']:.2f}s, "
              f"secure {secure['training_cpu_s']:.2f}s; max view plain {plain['max_view']}, secure "
              f"{secure['max_view']}", file=sys.stderr)
        out.append({"nodes": n, "plain": plain, "secure": secure, "round_ratio": ratio, "period_ratio": period_ratio,
                    "bytes_ratio": bytes_ratio})
    return {"secure_vs_plain": out}


def cmd_validation_cost(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Secure rounds with and without validation on shares, interleaved: what validation adds to the secure round's
    CPU per node per round (between consecutive commits, training included, and with each run's training CPU taken
    out) and to its bytes sent per node per round."""
    out = []
    for n in args.nodes:
        pair = [Setup(n, args.rounds, secure=True, validate=v, model_kind=args.model, hidden=args.hidden,
                      protocol=_protocol(args), trivial_training=args.trivial_training) for v in (False, True)]
        results = run_repeated(pair, args.repeats, root / f"n{n}", keep=args.keep)
        secure, validated = (summary_row(results[s]) for s in pair)
        cpu = validated["round_cpu_s"] / secure["round_cpu_s"] - 1.0
        untrained = [row["round_cpu_s"] - row["training_cpu_s"] for row in (secure, validated)]
        cpu_untrained = untrained[1] / untrained[0] - 1.0
        bytes_share = validated["bytes_per_node_round"] / secure["bytes_per_node_round"] - 1.0
        period_ratio = validated["period_s"] / secure["period_s"]
        print(f"\n{pair[1].label()} vs {pair[0].label()} ({args.repeats} repeats interleaved, median; load "
              f"{secure['load']} / {validated['load']})\n"
              f"  CPU per node per round (commit to next commit): secure {secure['round_cpu_s']:.3f}s, validated "
              f"{validated['round_cpu_s']:.3f}s: validation adds {100 * cpu:.1f}%; without training (secure "
              f"{untrained[0]:.3f}s, validated {untrained[1]:.3f}s) {100 * cpu_untrained:.1f}%\n"
              f"  bytes sent per node per round: secure {secure['bytes_per_node_round']:,.0f}, validated "
              f"{validated['bytes_per_node_round']:,.0f}: validation adds {100 * bytes_share:.2f}%\n"
              f"  round period: secure {secure['period_s']:.2f}s, validated {validated['period_s']:.2f}s, ratio "
              f"{period_ratio:.2f}; accuracy {secure['accuracy']:.4f} / {validated['accuracy']:.4f}; max view "
              f"{secure['max_view']} / {validated['max_view']}", file=sys.stderr)
        out.append({"nodes": n, "secure": secure, "validated": validated, "cpu_added": cpu,
                    "cpu_added_without_training": cpu_untrained, "bytes_added": bytes_share,
                    "period_ratio": period_ratio})
    return {"validation_cost": out}


def cmd_transport(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    out = []
    for n in args.nodes:
        pair = [Setup(n, args.rounds, secure=not args.plain, validate=not args.no_validation,
                      model_kind=args.model, hidden=args.hidden, trivial_training=args.trivial_training,
                      protocol=tuple(sorted({**dict(_protocol(args)), "consensus_transport": t}.items())))
                for t in ("gossip", "direct")]
        results = run_repeated(pair, args.repeats, root / f"n{n}", keep=args.keep)
        gossip, direct = (summary_row(results[s]) for s in pair)
        print(f"\nN={n} consensus transport ({args.repeats} repeats interleaved, median; load {gossip['load']} / "
              f"{direct['load']})\n  round wall time: gossip {gossip['round_s']:.2f}s, direct {direct['round_s']:.2f}s, "
              f"direct/gossip {direct['round_s'] / gossip['round_s']:.2f}\n  first block: gossip "
              f"{gossip['first_block_s']:.2f}s, direct {direct['first_block_s']:.2f}s; pbft bytes per node per round: "
              f"gossip {gossip['bytes_by_kind_per_node_round'].get('pbft', 0):,.0f}, direct "
              f"{direct['bytes_by_kind_per_node_round'].get('pbft', 0):,.0f}", file=sys.stderr)
        out.append({"nodes": n, "gossip": gossip, "direct": direct,
                    "round_ratio_direct_over_gossip": direct["round_s"] / gossip["round_s"]})
    return {"transport": out}


def _protocol(args: argparse.Namespace) -> tuple[tuple[str, Any], ...]:
    items = {}
    for item in args.protocol:
        key, _, value = item.partition("=")
        try:
            items[key] = json.loads(value)
        except json.JSONDecodeError:
            items[key] = value
    return tuple(sorted(items.items()))


COMMANDS = {"startup": cmd_startup, "split": cmd_split, "secure-vs-plain": cmd_secure_vs_plain,
            "validation-cost": cmd_validation_cost, "transport": cmd_transport}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--nodes", type=int, nargs="+", default=[4], help="cluster sizes (each measured)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run (round 1 is reported apart)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (medians are reported)")
    parser.add_argument("--model", choices=["logreg", "mlp"], default="logreg")
    parser.add_argument("--hidden", type=int, default=32, help="mlp hidden units (30300 = ~1,000,000 params)")
    parser.add_argument("--plain", action="store_true", help="no secure aggregation (startup, split, transport)")
    parser.add_argument("--trivial-training", action="store_true",
                        help="one full-batch SGD step per round (the issue's Flower comparison) instead of 2 epochs")
    parser.add_argument("--no-validation", action="store_true",
                        help="secure rounds without validation on shares (the poisoning defence; on by default)")
    parser.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                        help="genesis protocol setting (repeatable), e.g. batch_window_s=0.2")
    parser.add_argument("--workdir", help="where node homes go (default: a temporary directory, removed)")
    parser.add_argument("--keep", action="store_true", help="keep every run's node homes (logs) under --workdir")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    args = parser.parse_args(argv)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fednode-bench-"))
    print(f"[{time.strftime('%H:%M:%S')}] {args.command}: {load()}; uptime: {os.popen('uptime').read().strip()}",
          file=sys.stderr)
    try:
        result = COMMANDS[args.command](args, root)
    except ClusterError as exc:
        print(f"error: {exc} (node homes kept in {root})", file=sys.stderr)
        return 1
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    result["load_end"] = load()
    if args.json:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
