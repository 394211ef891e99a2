"""Benchmark `smpc.beaver` (statistics correcting f liars at N = 3f + 1) against today's degree-2t statistics.

Per holder per round, CPU ms (median of --repeats, time.process_time around each call, one process) and bytes
sent, with m = N owners (every member deals a sketch), k the sketch width, t = f, s = m (m + 1) / 2 statistics,
C(n, r) binomial coefficients:

- today: `przs.zero_share` (its C(N - 1, t) keys hashed and expanded) + `validation.local_statistics`, then
  `validation.reconstruct_statistics` (run by every node and the contract); bytes: its `stats` vector, 8 s (the
  PRZS contributions, 32 C(N - 2, t) to each other holder plus 32 C(N - 1, t) of commitments, are counted for
  both paths and are the same size);
- beaver: preprocessing (`holder_keys`: 2 C(N - 1, t) keys; `holder_randomness`: C(N - 1, t) streams of m k + s
  elements and the PRZS coefficients; `preprocessing_share`), the opening (`open_preprocessing`, every node),
  online (`difference_share`; `decode_differences`, every receiver; `statistic_share`), and
  `beaver.reconstruct_statistics` (every node and the contract); bytes: e_h (8 s) and the statistic share (8 s) on
  the ledger, D_h (8 m k) to each of the N - 1 others; the audit (only after a failed opening) is timed apart.

Usage: python -m scripts.bench_beaver [--nodes 7 10] [--width 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from math import comb

from smpc import beaver, przs
from smpc.validation import local_statistics, reconstruct_statistics
from tests.beaver_helpers import Consortium


def cpu_ms(call: Callable[[], object], repeats: int) -> float:
    """Median CPU time of `call` in milliseconds."""
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        samples.append(1000 * (time.process_time() - start))
    return statistics.median(samples)


def measure(n: int, width: int, repeats: int) -> dict[str, float]:
    f = (n - 1) // 3
    c = Consortium(n, f, width, seed=n)
    h, s, m = 0, c.layout.statistic_count, n
    zero_keys = {a: c.rand(32) for a in przs.dealt_subsets(c.members, f, h)}
    today = c.today()
    keys = c.keys(h)
    rand = c.randomness[h]
    published_e = c.preprocessing()
    opened = c.opened()
    published_d = c.differences()
    decoded = c.decoded(published_d).values
    shares = c.statistic_shares(decoded)
    figures = {
        "today holder": cpu_ms(lambda: local_statistics(c.held[h], przs.zero_share(zero_keys, h, f, s)), repeats),
        "today reconstruct": cpu_ms(lambda: reconstruct_statistics(today, c.ids, f, c.params, f), repeats),
        "keys": cpu_ms(lambda: c.keys(h), repeats),
        "randomness": cpu_ms(lambda: beaver.holder_randomness(keys, h, c.layout, f), repeats),
        "e_h": cpu_ms(lambda: beaver.preprocessing_share(rand, c.layout), repeats),
        "open E": cpu_ms(lambda: beaver.open_preprocessing(published_e, c.layout, f, f), repeats),
        "D_h": cpu_ms(lambda: beaver.difference_share(c.held[h], rand, c.layout), repeats),
        "decode D": cpu_ms(lambda: beaver.decode_differences(published_d, c.layout, f, f), repeats),
        "statistic share": cpu_ms(lambda: beaver.statistic_share(decoded, rand, opened, c.layout), repeats),
        "reconstruct": cpu_ms(lambda: beaver.reconstruct_statistics(shares, c.ids, f, c.params, f), repeats),
        "audit (failed opening only)": cpu_ms(lambda: beaver.audit(c.attempt, c.members, f, c.layout, c.commitments,
                                                                   c.reveals(), published_e), 1),
    }
    figures["today total"] = figures["today holder"] + figures["today reconstruct"]
    figures["beaver total"] = sum(figures[k] for k in ("keys", "randomness", "e_h", "open E", "D_h", "decode D",
                                                        "statistic share", "reconstruct"))
    contributions = 32 * comb(n - 2, f) * (n - 1) + 32 * comb(n - 1, f)
    figures["bytes today"] = 8 * s + contributions
    figures["bytes beaver"] = 8 * s + 8 * s + 8 * m * width * (n - 1) + contributions
    figures["bytes beaver, D once on the ledger"] = 8 * s + 8 * s + 8 * m * width + contributions
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[7, 10])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for n in args.nodes:
        print(f"N = {n}, f = t = {(n - 1) // 3}, k = {args.width}, m = {n} owners (per holder per round)")
        for name, value in measure(n, args.width, args.repeats).items():
            unit = "B" if name.startswith("bytes") else "ms CPU"
            print(f"  {name:36s} {value:12,.1f} {unit}")


if __name__ == "__main__":
    main()
