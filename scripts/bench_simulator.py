"""Consensus benchmarks on the pure core: simulator throughput/soak, primary fail-over, catch-up rate.

    python scripts/bench_simulator.py --nodes 4 --byzantine 1 --seeds 2000 --json      # soak (exit 1 on failure)
    python scripts/bench_simulator.py --nodes 7 --byzantine 2 --seeds 2000 --workers 2 # same, on 2 cores
    python scripts/bench_simulator.py --failover --seeds 40    # time to a new view after the primary dies
    python scripts/bench_simulator.py --catchup --blocks 500   # add_committed rate with real Ed25519

The simulation never reads a clock; this script passes the wall clock in. The last stdout line is JSON
when --json is given. Failing seeds are printed on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey

from consensus import messages
from consensus.block import Block, CommitCertificate, commit_statement
from consensus.quorum import max_faulty, quorum_size
from consensus.replica import Replica, ReplicaConfig
from consensus.simulation import SimConfig, SimReport, primary_failover_ms, run_simulations


def _run_chunk(args: tuple[int, int, list[int]]) -> SimReport:
    nodes, byzantine, seeds = args
    return run_simulations(nodes, byzantine, seeds, out=sys.stderr)


def soak(nodes: int, byzantine: int, seeds: list[int], workers: int) -> dict[str, object]:
    started = time.perf_counter()
    chunks = [(nodes, byzantine, seeds[i::workers]) for i in range(workers)]
    if workers == 1:
        reports = [_run_chunk(chunks[0])]
    else:
        with ProcessPoolExecutor(workers) as pool:
            reports = list(pool.map(_run_chunk, chunks))
    elapsed = time.perf_counter() - started
    failing = sorted(s for r in reports for s in r.failing_seeds)
    recovery = sorted(ms for r in reports for ms in r.recovery_ms)
    return {"nodes": nodes, "byzantine": byzantine, "runs": sum(r.runs for r in reports),
            "safety_violations": sum(r.safety_violations for r in reports),
            "liveness_failures": sum(r.liveness_failures for r in reports),
            "runs_per_s": round(sum(r.runs for r in reports) / elapsed, 2), "workers": workers,
            "recovery_ms_p50": recovery[len(recovery) // 2] if recovery else None,
            "recovery_ms_max": recovery[-1] if recovery else None,
            "failing_seeds": failing}


def failover(seeds: int) -> dict[str, object]:
    timeout_ms = SimConfig().view_timeout_ms
    out: dict[str, object] = {"view_timeout_ms": timeout_ms}
    for nodes in (4, 7):
        results = [primary_failover_ms(nodes, seed) for seed in range(seeds)]
        views = [v / timeout_ms for v, _ in results]
        commits = [c / timeout_ms for _, c in results]
        out[f"n{nodes}"] = {"new_view_timeouts_p50": round(statistics.median(views), 2),
                            "new_view_timeouts_max": round(max(views), 2),
                            "next_commit_timeouts_p50": round(statistics.median(commits), 2),
                            "next_commit_timeouts_max": round(max(commits), 2)}
    return out


def catchup(blocks: int) -> dict[str, object]:
    """Blocks per second that Replica.add_committed verifies and delivers with real Ed25519 certificates."""
    out: dict[str, object] = {}
    for nodes in (4, 7):
        keys = [SigningKey(bytes([i + 1]) * 32) for i in range(nodes)]

        def verify(index: int, data: bytes, sig: bytes, keys: list[SigningKey] = keys) -> bool:
            try:
                keys[index].verify_key.verify(data, sig)
            except Exception:  # noqa: BLE001 - any failure means "invalid" for the benchmark
                return False
            return True

        chain_id = bytes(32)
        quorum = quorum_size(nodes, max_faulty(nodes))
        chain: list[tuple[Block, CommitCertificate]] = []
        prev = chain_id
        for height in range(1, blocks + 1):
            block = Block(chain_id, height, prev, 0, 0, tuple(bytes([height % 256]) * 32 for _ in range(4)))
            block_hash = messages.hash_block(block)
            statement = commit_statement(chain_id, 0, height, block_hash)
            cert = CommitCertificate(height, 0, block_hash,
                                     tuple((i, keys[i].sign(statement).signature) for i in range(quorum)))
            chain.append((block, cert))
            prev = block_hash
        config = ReplicaConfig(chain_id, nodes, max_faulty(nodes))
        replica = Replica(config, nodes - 1, keys[nodes - 1].sign, verify)
        started = time.perf_counter()
        for block, cert in chain:
            replica.add_committed(block, cert, 0)
        elapsed = time.perf_counter() - started
        assert replica.committed_height == blocks
        out[f"n{nodes}_blocks_per_s"] = round(blocks / elapsed, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--byzantine", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--catchup", action="store_true")
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.failover:
        summary = failover(args.seeds)
    elif args.catchup:
        summary = catchup(args.blocks)
    else:
        summary = soak(args.nodes, args.byzantine, list(range(args.first_seed, args.first_seed + args.seeds)),
                       args.workers)
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 1 if summary.get("failing_seeds") else 0


if __name__ == "__main__":
    sys.exit(main())
