"""Benchmark PBFT commit latency of empty blocks on a real cluster of daemons (loopback), gossip vs direct.

The genesis protocol setting `bench_empty_blocks: K` (benchmarks only) makes the primary propose K empty
blocks, one after another, before it opens round 1. Each daemon records, for every block it proposed, the
time from just before `Replica.propose` (signing, the synced write of what it signed, the pre-prepare
broadcast) until it delivers the block itself (2f+1 prepares and 2f+1 commits received, block appended
with a synced write): `commit_latency_ms` in its /status. Blocks follow one another, so this is latency
with one block in flight, not throughput.

The first WARMUP blocks are left out (connections and the gossipsub mesh are still forming). Both
transports run interleaved in the same invocation (gossip, direct, gossip, direct...) so that the load
of the shared machine hits both alike; the load average is printed with every figure.

Usage: python -m scripts.bench_commit_latency [--nodes 4 7] [--blocks 200] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from node.cluster_processes import ClusterError
from scripts.bench_cluster import Run, Setup, load, run_cluster

WARMUP = 10
POLL_S = 0.5


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); with 200 samples p99 is the second largest."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure(n: int, transport: str, blocks: int, work: Path, extra: dict[str, Any]) -> Run:
    protocol = {"bench_empty_blocks": blocks + WARMUP, "consensus_transport": transport, **extra}
    setup = Setup(n, 1, secure=False, protocol=tuple(sorted(protocol.items())))
    return run_cluster(setup, work, poll_s=POLL_S,
                       stop_when=lambda statuses: all(s["height"] >= blocks + WARMUP for s in statuses))


def cpu_ms_per_block(run: Run) -> float:
    """Median over nodes of the CPU time a daemon spent per committed block after the first block."""
    heights = run.extra["heights"]
    per_node = [1000 * c / max(1, h - 1) for c, h in zip(run.extra["cpu_after_first_block_s"], heights)]
    return statistics.median(per_node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--blocks", type=int, default=200, help="measured empty blocks per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transports", nargs="+", default=["gossip", "direct"], choices=["gossip", "direct"])
    parser.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                        help="extra genesis protocol setting (repeatable, JSON value), e.g. view_timeout_ms=4000")
    parser.add_argument("--workdir", help="where node homes go (kept); default: a temporary directory, removed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    extra = {k: json.loads(v) for k, _, v in (p.partition("=") for p in args.protocol)}
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fednode-latency-"))
    print(f"[{time.strftime('%H:%M:%S')}] commit latency of empty blocks: {load()}", file=sys.stderr)
    samples: dict[tuple[int, str], list[float]] = {}
    loads: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    try:
        for n in args.nodes:
            for r in range(args.repeats):
                for transport in args.transports:
                    run = measure(n, transport, args.blocks, root / f"n{n}-{transport}-{r}", extra)
                    got = run.commit_latency_ms[WARMUP:]
                    samples.setdefault((n, transport), []).extend(got)
                    loads.setdefault((n, transport), []).extend([run.load_start, run.load_end])
                    cpu_ms = cpu_ms_per_block(run)
                    cpu.setdefault((n, transport), []).append(cpu_ms)
                    print(f"  N={n} {transport:<6} repeat {r + 1}: {len(got)} blocks, p50 "
                          f"{statistics.median(got):.1f} ms, p99 {percentile(got, 99):.1f} ms, max view "
                          f"{max(run.extra['views'])}, CPU {cpu_ms:.1f} ms per block per node (load {run.load_start:.2f}->{run.load_end:.2f})",
                          file=sys.stderr, flush=True)
    except ClusterError as exc:
        print(f"error: {exc} (node homes kept in {root})", file=sys.stderr)
        return 1
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    print("\ncommit latency of an empty block (propose -> delivered at the primary), all repeats pooled:",
          file=sys.stderr)
    for (n, transport), got in samples.items():
        row = {"nodes": n, "transport": transport, "blocks": len(got), "p50_ms": statistics.median(got),
               "p90_ms": percentile(got, 90), "p99_ms": percentile(got, 99), "max_ms": max(got),
               "cpu_ms_per_block_per_node": statistics.median(cpu[(n, transport)]),
               "load": f"{min(loads[(n, transport)]):.1f}-{max(loads[(n, transport)]):.1f}"}
        rows.append(row)
        base = samples.get((n, args.transports[0]))
        ratio = row["p50_ms"] / statistics.median(base) if base else float("nan")
        print(f"  N={n} {transport:<6} {row['blocks']:4d} blocks  p50 {row['p50_ms']:7.1f} ms  p90 "
              f"{row['p90_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  max {row['max_ms']:7.1f} ms  "
              f"p50 vs {args.transports[0]} {ratio:.2f}  CPU/block/node {row['cpu_ms_per_block_per_node']:.1f} ms  (load {row['load']})", file=sys.stderr)
    if args.json:
        print(json.dumps({"commit_latency": rows, "load_end": load()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
