"""Benchmark what validation on shares costs one node per round, against its secure-aggregation work.

Drives N real `node.secure_round.SecureRound`s through N real round contracts (`node.contract`) in one
process, in validated mode, exactly as the daemon does without its I/O: blocks are built by hand from
the pending transactions, and every output a node returns is delivered to its peers by a queue, so each
call is timed on the node that makes it (time.perf_counter around the call) and every byte it sends is
counted by kind. Per node per round:

- validation time: `on_phase_closed(inputs)` (its seed reveal) and `on_phase_closed(seed)` (build the
  round's count sketch, sketch the masked update, Shamir-share it, draw and commit to the PRZS
  contributions, sign N - 1 messages), every `on_sketch_shares` (decode, verify and check the N - 1
  payloads it receives; the last one also computes the local statistic shares with the PRZS zero share)
  and `on_phase_closed(sketch)`, and `decide_accepted`
  (reconstruct all statistics with cross-checks, apply the robust rule), which every node runs to check
  the primary's accepted set, and the linear-identity check: `on_sketch_sum` for the N - 1 holders'
  shares of the accepted sketches' sum, then `_identity_deviation`, which the second `try_sum` calls to
  reconstruct that sum and compare it with the sketch of the unmasked sum (those shares are held back
  until the first `try_sum` has unmasked; the check is timed on its own, by a wrapper);
- secure-aggregation time (the baseline): `set_update` (quantize + mask + sign), and unmasking:
  `on_phase_closed(validate)` (its reveal, and its own sketch-sum share: k additions, negligible),
  receiving the other reveals, the first `try_sum` and the rest of the second (dequantizing the sum and
  checking its norm). Key agreement
  (`start`, keys and shares phases) and receiving the N - 1 masked inputs are reported as well, and a
  second ratio is taken against the whole secure-aggregation work;
- validation bytes: the sketch-share payloads it sends to the N - 1 other holders, its `stats` tx, its
  `dealt` and `reveal` txs and its sketch-sum share sent to the N - 1 others; the baseline is its masked input
  sent to the N - 1 peers.

Byte formulas (msgpack framing; a bin of n bytes costs n + 2 below 256, n + 3 below 65536, else n + 5),
with H the holders, V the candidates (both N here), k the sketch width, t_v the sharing degree,
P(m) = m (m + 1) / 2 statistics, C(n, r) binomial coefficients:

    share payload = 5 + bin(8 k) + bin(32 C(|H| - 2, t_v)) + bin(32 C(|H| - 1, t_v)) + bin(64)
                    (array, tag, round, dealer, holder; share, PRZS contributions, commitments, signature)
    stats tx      = 1 + bin(body) + bin(64),  body = 1 + 6 + bin(32) + 1 + 1 + bin(8 P(|V|))
    dealt tx      = 1 + bin(1 + 6 + bin(32) + 1 + 1 + bin(32)) + bin(64) = 146
    reveal tx     = 1 + bin(1 + 7 + bin(32) + 1 + 1 + bin(32)) + bin(64) = 147
    sketch-sum    = 4 + bin(8 k) + bin(64)                            (its share of the accepted sum, to all)
    validation bytes per node = (N - 1) (share payload + sketch-sum) + stats tx + dealt tx + reveal tx

A transaction is counted once (the node sends it to the primary; the primary's block broadcast is
consensus traffic, the same for every kind of tx).

Usage: python -m scripts.bench_validation [--nodes 10 7] [--length 1000000] [--width 1000]
                                          [--validation-degree 1] [--repeats 3] [--json] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from math import comb
from typing import Any, TypeVar

import numpy as np
from nacl.signing import SigningKey

from consensus.block import Block
from ml.robust import RobustRule
from node import contract as rc
from node.secure_round import (
    Output,
    SecureRound,
    SendShares,
    SendSketchSum,
    SubmitTx,
    ValidationSetup,
    Weighting,
    decide_accepted,
    quant_params,
)
from smpc.prg import SeededRandomBytes
from smpc.validation import SketchParams

CHAIN = hashlib.sha256(b"bench validation").digest()
VALIDATION_STEPS = ("sketch_deal", "receive_shares", "local_stats", "decide", "linear_identity")
SECAGG_STEPS = ("quantize_mask", "unmask", "key_agreement", "receive_masked")
BASELINE_STEPS = ("quantize_mask", "unmask")
T = TypeVar("T")


def bin_bytes(n: int) -> int:
    """Size of a msgpack bin of n bytes, header included."""
    return n + (2 if n < 256 else 3 if n < 65536 else 5)


def pair_count(m: int) -> int:
    return m * (m + 1) // 2


def share_payload_bytes(holders: int, width: int, degree: int) -> int:
    contributions, commitments = 32 * comb(holders - 2, degree), 32 * comb(holders - 1, degree)
    return 5 + bin_bytes(8 * width) + bin_bytes(contributions) + bin_bytes(commitments) + bin_bytes(64)


def sketch_sum_payload_bytes(width: int) -> int:
    return 4 + bin_bytes(8 * width) + bin_bytes(64)


def stats_tx_bytes(candidates: int) -> int:
    body = 1 + 6 + bin_bytes(32) + 1 + 1 + bin_bytes(8 * pair_count(candidates))
    return 1 + bin_bytes(body) + bin_bytes(64)


def dealt_tx_bytes(holders: int) -> int:
    """A `dealt`: the hash of the PRZS commitments, and one ciphertext hash per holder (answers to complaints)."""
    return 1 + bin_bytes(1 + 6 + bin_bytes(32) + 1 + 1 + bin_bytes(32) + bin_bytes(32 * holders)) + bin_bytes(64)


def reveal_tx_bytes(members: int) -> int:
    """A `reveal`: the seed reveal, and a channel public key per member (complaints' answers are sealed to it)."""
    return 1 + bin_bytes(1 + 7 + bin_bytes(32) + 1 + 1 + bin_bytes(32) + bin_bytes(32 * members)) + bin_bytes(64)


def validation_bytes_formula(nodes: int, width: int, degree: int) -> int:
    """Bytes one node sends for validation when all N members hold shares and are candidates."""
    return ((nodes - 1) * (share_payload_bytes(nodes, width, degree) + sketch_sum_payload_bytes(width))
            + stats_tx_bytes(nodes) + dealt_tx_bytes(nodes) + reveal_tx_bytes(nodes))


class Round:
    """N nodes of one validated round, with per-node timers and byte counters."""

    def __init__(self, nodes: int, length: int, width: int, degree: int, seed: int) -> None:
        self.n = nodes
        f = (nodes - 1) // 3
        self.keys = [SigningKey(hashlib.sha256(f"bench {seed} {i}".encode()).digest()) for i in range(nodes)]
        self.weighting = Weighting(clip_l2=10.0, sample_cap=1000)
        self.setup = ValidationSetup(degree, SketchParams.for_clip(self.weighting.total_bound, width),
                                     RobustRule(kind="median_distance", f=f, factor=2.0))
        self.quant = quant_params(self.weighting, nodes, self.setup.sketch)  # as the daemon's validated rounds
        self.params = rc.ContractParams(CHAIN, nodes, rounds=1, initial_model_hash=b"\x00" * 32,
                                        min_updates=2 * f + 1, secure=True, degree=nodes - f - 1,
                                        vector_length=length + 1, validate=True, validation_degree=degree,
                                        sketch_width=width, sketch_scale_ratio=self.setup.sketch.scale / self.quant.scale)
        self.contracts = [rc.Contract(self.params, self.verify) for _ in range(nodes)]
        self.rounds: dict[int, SecureRound] = {}
        self.seed = seed
        self.mempool: list[bytes] = []
        self.queue: list[tuple[int, Output]] = []
        self.sketch_sums: list[tuple[int, SendSketchSum]] = []  # held back until the sum is unmasked
        self.height = 0
        self.ms: dict[int, dict[str, float]] = {i: defaultdict(float) for i in range(nodes)}
        self.cpu_ms: dict[int, dict[str, float]] = {i: defaultdict(float) for i in range(nodes)}
        self.sent: dict[int, dict[str, int]] = {i: defaultdict(int) for i in range(nodes)}
        self.accepted: tuple[int, ...] = ()
        self._nested: list[tuple[float, float]] = []

    def verify(self, i: int, data: bytes, sig: bytes) -> bool:
        try:
            self.keys[i].verify_key.verify(data, sig)
        except Exception:  # noqa: BLE001 - any failure is an invalid signature
            return False
        return True

    def sign(self, i: int) -> Callable[[bytes], bytes]:
        return lambda data: self.keys[i].sign(data).signature

    def timed(self, node: int, step: str, call: Callable[..., T], *args: Any) -> T:
        """Run `call` on behalf of `node`, adding its wall time and this process's CPU time to `step`; a timed
        call nested in it (`time_inner`) counts for its own step only."""
        self._nested.append((0.0, 0.0))
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return call(*args)
        finally:
            wall, cpu = (time.perf_counter() - start) * 1000, (time.process_time() - cpu_start) * 1000
            inner_wall, inner_cpu = self._nested.pop()
            self.ms[node][step] += wall - inner_wall
            self.cpu_ms[node][step] += cpu - inner_cpu
            if self._nested:
                outer_wall, outer_cpu = self._nested[-1]
                self._nested[-1] = (outer_wall + wall, outer_cpu + cpu)

    def time_inner(self, node: int, step: str, method: Callable[..., T]) -> Callable[..., T]:
        """`method`, timed for `step` whenever it is called, also from inside another timed call."""
        return lambda *args: self.timed(node, step, method, *args)

    def emit(self, sender: int, outputs: list[Output]) -> None:
        self.queue += [(sender, out) for out in outputs]

    def deliver(self) -> None:
        """Carry out every queued output; deliveries may queue more (shares trigger statistics)."""
        while self.queue:
            sender, out = self.queue.pop(0)
            others = [j for j in range(self.n) if j != sender]
            if isinstance(out, SendShares):
                self.sent[sender]["sketch_shares"] += len(out.payload)
                self.emit(out.to, self.timed(out.to, "receive_shares", self.rounds[out.to].on_sketch_shares,
                                             sender, out.payload))
            elif isinstance(out, SendSketchSum):
                self.sent[sender]["sketch_sum"] += len(out.payload) * len(others)
                self.sketch_sums.append((sender, out))
            elif isinstance(out, SubmitTx):
                kind = self.contracts[sender].parse(out.raw).kind
                self.sent[sender][f"tx_{kind}"] += len(out.raw)
                self.mempool.append(out.raw)
            else:
                self.sent[sender]["masked"] += len(out.message) * len(others)
                for j in others:
                    self.timed(j, "receive_masked", self.receive, j, out.message)

    def receive(self, node: int, message: bytes) -> None:
        self.rounds[node].on_message(self.rounds[node].decode(message))

    def commit(self, *extra: bytes, step: str = "") -> None:
        """Commit the pending valid txs plus `extra` at every node; `step` names its PhaseClosed work."""
        contract = self.contracts[0]
        txs = [raw for raw in self.mempool if contract.tx_valid_now(contract.parse(raw))] + list(extra)
        self.mempool = [raw for raw in self.mempool if raw not in txs]
        self.height += 1
        block = Block(CHAIN, self.height, CHAIN, 0, 0, tuple(txs))
        for i in range(self.n):
            for event in self.contracts[i].apply_block(block):
                self.on_event(i, event, step)
        self.deliver()

    def on_event(self, i: int, event: rc.Event, step: str) -> None:
        if isinstance(event, rc.RoundOpened):
            self.rounds[i] = SecureRound(self.params, event, i, self.sign(i), self.verify,
                                         SeededRandomBytes(hashlib.sha256(f"rand {self.seed} {i}".encode()).digest()),
                                         self.quant, self.setup)
            check = self.rounds[i]._identity_deviation  # called from `try_sum`: its own step
            self.rounds[i]._identity_deviation = self.time_inner(  # type: ignore[method-assign]
                i, "linear_identity", check)
            self.emit(i, self.timed(i, "key_agreement", self.rounds[i].start))
        elif isinstance(event, rc.SecAggCommitted):
            self.timed(i, "key_agreement", self.rounds[i].on_committed, event)
        elif isinstance(event, rc.PhaseClosed):
            self.emit(i, self.timed(i, step, self.rounds[i].on_phase_closed, event))

    def close(self, kind: str, fields: list[object], step: str) -> None:
        self.commit(rc.make_tx(CHAIN, kind, 0, 1, fields, self.sign(0)), step=step)

    def run(self, updates: dict[int, np.ndarray]) -> None:
        """One whole validated round; checks that every node unmasks the same sum of the accepted set."""
        self.close("open", [b"\x00" * 32, list(range(self.n))], "key_agreement")
        self.close("close", ["keys"], "key_agreement")
        self.close("close", ["shares"], "key_agreement")
        for i in range(self.n):
            vector = self.weighting.vector(updates[i], 500)
            self.emit(i, self.timed(i, "quantize_mask", self.rounds[i].set_update, vector))
        self.deliver()
        self.close("close", ["inputs"], "sketch_deal")
        self.close("close", ["seed"], "sketch_deal")
        self.close("close", ["sketch"], "local_stats")
        contract = self.contracts[0]
        self.commit()
        check = contract.validation_check(None)
        assert [a for a, _ in check.published] == list(range(self.n)), f"missing statistics: {check.published}"
        outcomes = [self.timed(i, "decide", decide_accepted, check, self.setup, self.quant) for i in range(self.n)]
        assert all(o.accepted == outcomes[0].accepted for o in outcomes), "nodes disagree on the accepted set"
        assert outcomes[0].statistics.checked, "statistics were not cross-checked"
        self.accepted = outcomes[0].accepted
        self.close("accept", [list(self.accepted), [], 0], "unmask")
        self.commit(step="unmask")  # the reveals, unmask-phase transactions
        unmasked = [self.timed(i, "unmask", self.rounds[i].try_sum, False) for i in range(self.n)]
        assert not any(t is not None for t in unmasked), "the sum was released before the linear-identity check"
        for sender, out in self.sketch_sums:
            for j in range(self.n):
                if j != sender:
                    self.timed(j, "linear_identity", self.rounds[j].on_sketch_sum, sender, out.payload)
        totals = [self.timed(i, "unmask", self.rounds[i].try_sum, False) for i in range(self.n)]
        expected = np.sum([self.weighting.vector(updates[i], 500) for i in self.accepted], axis=0)
        for total in totals:
            assert total is not None and np.allclose(total, expected, atol=self.n / self.quant.scale), "wrong sum"


def honest_updates(nodes: int, length: int, seed: int) -> dict[int, np.ndarray]:
    """Similar updates (a common direction plus noise) of L2 norm about 1, below the clip bound."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(length) / np.sqrt(length)
    return {i: base + 0.3 * rng.standard_normal(length) / np.sqrt(length) for i in range(nodes)}


def measure(nodes: int, length: int, width: int, degree: int | None, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Run `repeats` rounds; per node per round times (ms) and bytes, medians over nodes and rounds.
    `degree` None: t_v = f, the genesis default."""
    degree = (nodes - 1) // 3 if degree is None else degree
    samples: list[dict[str, float]] = []
    sent: dict[str, int] = {}
    accepted = 0
    for r in range(repeats):
        bench = Round(nodes, length, width, degree, seed + r)
        bench.run(honest_updates(nodes, length, seed + r))
        accepted = len(bench.accepted)
        for i in range(nodes):
            ms = {step: bench.ms[i][step] for step in VALIDATION_STEPS + SECAGG_STEPS}
            ms["validation"] = sum(ms[s] for s in VALIDATION_STEPS)
            ms["secure"] = sum(ms[s] for s in BASELINE_STEPS)
            ms["secagg_all"] = sum(ms[s] for s in SECAGG_STEPS)
            ms["ratio"] = ms["validation"] / ms["secure"]
            ms["ratio_all"] = ms["validation"] / ms["secagg_all"]
            cpu = bench.cpu_ms[i]
            ms["cpu_ratio"] = sum(cpu[s] for s in VALIDATION_STEPS) / sum(cpu[s] for s in BASELINE_STEPS)
            ms["cpu_ratio_all"] = sum(cpu[s] for s in VALIDATION_STEPS) / sum(cpu[s] for s in SECAGG_STEPS)
            for step in VALIDATION_STEPS + SECAGG_STEPS:
                ms[f"cpu_{step}"] = cpu[step]
            ms["cpu_validation"] = sum(cpu[s] for s in VALIDATION_STEPS)
            ms["cpu_secure"] = sum(cpu[s] for s in BASELINE_STEPS)
            samples.append(ms)
        sent = dict(bench.sent[nodes - 1])  # not the author of the close txs
        del bench
    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    validation_bytes = (sent["sketch_shares"] + sent["tx_stats"] + sent["tx_dealt"] + sent["tx_reveal"]
                        + sent["sketch_sum"])
    return {
        "nodes": nodes, "length": length, "width": width, "validation_degree": degree,
        "secagg_degree": nodes - (nodes - 1) // 3 - 1, "repeats": repeats, "accepted": accepted,
        "median_ms": median, "max_ratio": max(s["ratio"] for s in samples),
        "bytes": {"sketch_shares": sent["sketch_shares"], "tx_stats": sent["tx_stats"], "tx_dealt": sent["tx_dealt"],
                  "tx_reveal": sent["tx_reveal"], "sketch_sum": sent["sketch_sum"],
                  "validation": validation_bytes, "masked": sent["masked"],
                  "secagg_all": sent["masked"] + sent["tx_sa"] + sent["tx_input"],
                  "formula": validation_bytes_formula(nodes, width, degree)},
        "bytes_ratio": validation_bytes / sent["masked"],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print("| N | validation ms (sketch+deal / shares in / stats / decide / linear identity) | secure ms (quantize+mask / unmask) "
          "| time ratio (max) | CPU-time ratio | key agreement + masked in ms | ratio vs all secagg | validation bytes "
          "| masked bytes to N-1 | bytes ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for res in results:
        m, b = res["median_ms"], res["bytes"]
        print(f"| {res['nodes']} | {m['validation']:.1f} ({m['sketch_deal']:.1f} / {m['receive_shares']:.1f} / "
              f"{m['local_stats']:.1f} / {m['decide']:.1f} / {m['linear_identity']:.1f}) | {m['secure']:.1f} ({m['quantize_mask']:.1f} / "
              f"{m['unmask']:.1f}) | {m['ratio']:.1%} ({res['max_ratio']:.1%}) | {m['cpu_ratio']:.1%} | {m['key_agreement']:.1f} + "
              f"{m['receive_masked']:.1f} | {m['ratio_all']:.1%} | {b['validation']:,} | {b['masked']:,} | "
              f"{res['bytes_ratio']:.2%} |")


def print_cpu_table(results: list[dict[str, Any]]) -> None:
    """The same steps in CPU time (this process's, around each call): less sensitive to other load."""
    print("| N | validation CPU ms (sketch+deal / shares in / stats / decide / linear identity) "
          "| secure CPU ms (quantize+mask / unmask) | CPU ratio | key agreement + masked in CPU ms | CPU ratio vs all secagg |")
    print("|---|---|---|---|---|---|")
    for res in results:
        m = res["median_ms"]
        steps = " / ".join(f"{m['cpu_' + s]:.1f}" for s in VALIDATION_STEPS)
        print(f"| {res['nodes']} | {m['cpu_validation']:.1f} ({steps}) | {m['cpu_secure']:.1f} ({m['cpu_quantize_mask']:.1f} / "
              f"{m['cpu_unmask']:.1f}) | {m['cpu_ratio']:.1%} | {m['cpu_key_agreement']:.1f} + {m['cpu_receive_masked']:.1f} "
              f"| {m['cpu_ratio_all']:.1%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 7])
    parser.add_argument("--length", type=int, default=1_000_000, help="model parameters (the vector has one more)")
    parser.add_argument("--width", type=int, default=1000, help="count-sketch width k")
    parser.add_argument("--validation-degree", type=int, default=None, help="t_v (default f, as genesis)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per N; medians over nodes x rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of the whole run to FILE "
                        "(read it with python -m pstats FILE)")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return run(args)
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return run(args)


def run(args: argparse.Namespace) -> int:
    load_start = os.getloadavg()[0]
    print(f"# validation vs secure aggregation per node per round: L = {args.length:,}, k = {args.width}, "
          f"t_v = {args.validation_degree or 'f'}, t = N - f - 1, repeats = {args.repeats}")
    results = []
    for n in args.nodes:
        results.append(measure(n, args.length, args.width, args.validation_degree, args.repeats))
        print(f"  N={n} done, load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()[0]
    print(f"cpu count: {os.cpu_count()}, load average (1 min): {load_start:.1f} at start, {load_end:.1f} at end\n")
    print_table(results)
    print()
    print_cpu_table(results)
    for res in results:
        met_time, met_bytes = res["median_ms"]["ratio"] < 0.10, res["bytes_ratio"] < 0.05
        print(f"\nN={res['nodes']}: time target (< 10%) {'met' if met_time else 'NOT met'}, bytes target (< 5%) "
              f"{'met' if met_bytes else 'NOT met'}; accepted {res['accepted']} of {res['nodes']}; validation bytes "
              f"= {res['bytes']['sketch_shares']:,} shares + {res['bytes']['tx_stats']:,} stats tx + "
              f"{res['bytes']['tx_dealt']} dealt tx + {res['bytes']['tx_reveal']} reveal tx + "
              f"{res['bytes']['sketch_sum']:,} sketch-sum shares (formula: {res['bytes']['formula']:,})", end="")
    print()
    if args.json:
        print(json.dumps({"validation": results, "load_start": load_start, "load_end": load_end}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
