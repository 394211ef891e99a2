"""Benchmark the secure-aggregation core: masking, unmasking with dropouts, bytes per node.

Runs in-process rounds of N participants on a vector of L parameters and prints markdown tables
with the median and the best of --repeats runs (the best approximates an idle machine; the load
average is printed because the development VMs are shared):

- quantize: clip + stochastic rounding of one float32 update into Z_2^32 (ChaCha20 randomness);
- mask arithmetic: y_i = q_i + PRG(b_i) +- sum_j PRG(s_ij), i.e. N mask expansions and additions;
- mask() call: the above plus serialisation and the Ed25519 signature over the vector's digest;
- pair keys: the N - 1 X25519 agreements + HKDF and share decryptions when U2 is committed;
- unmask: try_finish() with D dropped nodes (reconstructions, D (N - D) pair keys, N + D (N - D)
  mask expansions, the sum), as every node does it;
- bytes published per node per round against a plain float32 update, and the ledger bytes of the
  round's unmask reveals (each survivor's, as the `sa` transaction the contract commits);
- validation primitives (smpc/validation.py) at sketch width k: building the round's count
  sketch, sketching one update, dealing sketch and zero shares, the holder's local statistics,
  reconstructing all statistics, and the payload bytes a node sends for them.

Usage: python scripts/bench_secagg.py [--nodes 10] [--length 1000000] [--dropped 3] [--repeats 7]
                                      [--width 1000] [--validation-degree 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from math import comb

import nacl.signing
import numpy as np

from node.contract_tx import make_tx
from smpc import przs
from smpc.masking import mask_input
from smpc.messages import MaskedInput, Message, UnmaskShares, encode
from smpc.prg import MaskGenerator, SeededRandomBytes
from smpc.quantize import QuantParams, quantize
from smpc.secagg import RoundConfig, SecAggParticipant
from smpc.signing import ed25519_signer, ed25519_verifier
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    local_statistics,
    reconstruct_statistics,
    share_sketch,
    sketch_update,
    statistic_pairs,
)


def samples_ms(action: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def row(measure: str, samples: list[float]) -> str:
    return f"| {measure} | {statistics.median(samples):.1f} ms | {min(samples):.1f} ms |"


class Cluster:
    """N machines with a perfect ledger, driven up to the masked-input phase."""

    def __init__(self, nodes: int, length: int, round_id: int) -> None:
        self.config = RoundConfig(b"bench", round_id, tuple(range(1, nodes + 1)), (nodes - 1) // 2, length)
        keys = {i: nacl.signing.SigningKey(os.urandom(32)) for i in self.config.participants}
        verifier = ed25519_verifier({i: bytes(k.verify_key) for i, k in keys.items()})
        generator = MaskGenerator(length)
        self.machines = {
            i: SecAggParticipant(self.config, i, ed25519_signer(keys[i]), verifier, os.urandom, generator)
            for i in self.config.participants
        }
        self.sent: dict[int, list[Message]] = {i: [] for i in self.machines}
        members = frozenset(self.machines)
        self.broadcast({i: m.start() for i, m in self.machines.items()})
        self.broadcast({i: m.on_keys_committed(members) for i, m in self.machines.items()})
        self.pair_keys_ms = samples_ms(lambda: self.machines[1].on_shares_committed(members), 1)[0]
        for i, machine in self.machines.items():
            if i != 1:
                machine.on_shares_committed(members)

    def broadcast(self, outgoing: dict[int, Message | None]) -> None:
        for sender, message in outgoing.items():
            if message is None:
                continue
            self.sent[sender].append(message)
            for receiver, machine in self.machines.items():
                if receiver != sender:
                    machine.receive(message)


def one_round(cluster: Cluster, quantized: np.ndarray, dropped: int) -> tuple[float, float, int]:
    """Mask on every survivor, unmask on one; returns (mask ms per node, unmask ms, survivor id)."""
    survivors = [i for i in cluster.machines if i > dropped]
    start = time.perf_counter()
    masked = {i: cluster.machines[i].mask(quantized) for i in survivors}
    mask_ms = (time.perf_counter() - start) * 1000 / len(survivors)
    cluster.broadcast(dict(masked.items()))
    digests = {i: message.digest() for i, message in masked.items()}
    cluster.broadcast({i: m.on_inputs_committed(digests) for i, m in cluster.machines.items() if i in survivors})
    start = time.perf_counter()
    result = cluster.machines[survivors[0]].try_finish()
    unmask_ms = (time.perf_counter() - start) * 1000
    expected = (quantized.astype(np.uint64) * len(survivors)).astype(np.uint32)
    assert result is not None and np.array_equal(result.total, expected), "wrong aggregate"
    return mask_ms, unmask_ms, survivors[0]


def run(nodes: int, length: int, dropped: int, repeats: int) -> np.ndarray:
    """Print the secure-aggregation table; return the quantized update used (for validation)."""
    params = QuantParams.for_participants(clip_l2=1.0, max_participants=nodes)
    update = np.random.default_rng(0).standard_normal(length).astype(np.float32) * 1e-3
    rounding_rand = SeededRandomBytes(os.urandom(32))
    quantized = quantize(update, params, rounding_rand)
    generator = MaskGenerator(length)
    pair_seeds = {j: os.urandom(32) for j in range(2, nodes + 1)}
    self_seed = os.urandom(32)
    quantize_ms = samples_ms(lambda: quantize(update, params, rounding_rand), repeats)
    arithmetic_ms = samples_ms(lambda: mask_input(quantized, self_seed, pair_seeds, 1, generator), repeats)
    rounds, pair_keys_ms = [], []
    for round_id in range(1, repeats + 1):
        cluster = Cluster(nodes, length, round_id)
        rounds.append(one_round(cluster, quantized, dropped))
        pair_keys_ms.append(cluster.pair_keys_ms)
    sent = cluster.sent[rounds[-1][2]]
    published = sum(len(encode(m)) for m in sent)
    masked_bytes = sum(len(encode(m)) for m in sent if isinstance(m, MaskedInput))
    plain_bytes = 4 * length
    print(f"# secure aggregation core: N = {nodes}, L = {length:,}, t = {(nodes - 1) // 2}, dropped = {dropped}")
    print(f"cpu count: {os.cpu_count()}, repeats: {repeats}, load average: {os.getloadavg()[0]:.1f}\n")
    print("| measure | median | best |")
    print("|---|---|---|")
    print(row("quantize (clip + stochastic rounding)", quantize_ms))
    print(row(f"mask arithmetic ({nodes} PRG expansions + adds)", arithmetic_ms))
    print(row("mask() incl. serialisation + signature", [r[0] for r in rounds]))
    print(row(f"pair keys + share decryption on U2 commit ({nodes - 1} peers)", pair_keys_ms))
    print(row(f"unmask with {dropped} dropped (try_finish)", [r[1] for r in rounds]))
    print(f"\nbytes published per node per round: {published:,} (masked vector message: {masked_bytes:,}); ", end="")
    print(f"plain float32 update: {plain_bytes:,}; ratio secure / plain: {published / plain_bytes:.4f}")
    reveals = [m for sent in cluster.sent.values() for m in sent if isinstance(m, UnmaskShares)]
    ledger = [len(make_tx(bytes(32), "sa", m.sender - 1, m.round_id, [encode(m)], lambda _: bytes(64))) for m in reveals]
    print(f"ledger bytes of the unmask reveals per round: {sum(ledger):,} ({len(ledger)} `sa` txs of {max(ledger):,})")
    return quantized


def run_validation(
    nodes: int, quantized: np.ndarray, quant: QuantParams, width: int, degree: int, repeats: int
) -> None:
    length = quantized.size
    rand = SeededRandomBytes(os.urandom(32))
    params = SketchParams.for_clip(quant.clip_l2, width)
    holders = list(range(1, nodes + 1))
    count = len(statistic_pairs(holders))
    build_ms = samples_ms(lambda: CountSketch(os.urandom(32), length, width), repeats)
    sketch = CountSketch(os.urandom(32), length, width)
    sketch_ms = samples_ms(lambda: sketch_update(quantized, sketch, params, quant, rand), repeats)
    fixed = sketch_update(quantized, sketch, params, quant, rand)
    deal_ms = samples_ms(lambda: share_sketch(fixed, degree, holders, rand), repeats)
    dealt = {i: share_sketch(fixed, degree, holders, rand) for i in holders}
    keys = {a: rand(przs.KEY_BYTES) for a in przs.subsets([h - 1 for h in holders], degree)}
    zeros = {h: przs.zero_share({a: k for a, k in keys.items() if h - 1 not in a}, h - 1, degree, count)
             for h in holders}
    held = {h: {i: dealt[i][h] for i in holders} for h in holders}
    local_ms = samples_ms(lambda: local_statistics(held[1], zeros[1]), repeats)
    published = {h: local_statistics(held[h], zeros[h]) for h in holders}
    f = (nodes - 1) // 3
    reconstruct_ms = samples_ms(lambda: reconstruct_statistics(published, holders, degree, params, f), repeats)
    przs_bytes = 32 * (comb(nodes - 2, degree) + comb(nodes - 1, degree))
    sent = (nodes - 1) * (8 * width + przs_bytes + 8 * width + 160) + 8 * count + 2 * 146
    print(f"\n# validation primitives: N = {nodes}, L = {length:,}, k = {width}, sharing degree t = {degree}\n")
    print("| measure | median | best |")
    print("|---|---|---|")
    print(row("build the round's count sketch", build_ms))
    print(row("sketch one quantized update", sketch_ms))
    print(row(f"deal sketch shares to {nodes} holders", deal_ms))
    print(row(f"holder: {count} statistic shares (norms + distances)", local_ms))
    print(row("reconstruct all statistics with cross-check", reconstruct_ms))
    print(f"\npayload sent per node (sketch shares and PRZS keys, statistics, sketch-sum share, dealt and reveal "
          f"txs, about): {sent:,} bytes, ", end="")
    print(f"{sent / (4 * length):.2%} of a plain update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--length", type=int, default=1_000_000)
    parser.add_argument("--dropped", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--validation-degree", type=int, default=2)
    args = parser.parse_args()
    quantized = run(args.nodes, args.length, args.dropped, args.repeats)
    params = QuantParams.for_participants(clip_l2=1.0, max_participants=args.nodes)
    run_validation(args.nodes, quantized, params, args.width, args.validation_degree, args.repeats)


if __name__ == "__main__":
    main()
