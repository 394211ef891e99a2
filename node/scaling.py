"""Feature scaling the consortium agrees on without revealing any site's statistics: a secure sum.

Each site encodes, per feature, its count, sum and sum of squares (fixed point, `ml.sitedata.site_statistics`)
as a vector of ring coordinates (`smpc.limbs`: 8 limbs of 16 bits per statistic, so the sum of up to 65536
sites is exact). Secure aggregation sums the members' vectors (`smpc.secagg`, the protocol every training
round uses): a member learns the consortium's totals and nothing about any one site beyond what the totals
and its own vector imply. `scaling_from_sum` turns the totals into the genesis `scaling` section: mean and
(population) standard deviation per feature, computed from the exact integer totals, so there is no
cancellation in sum(x^2)/n - mean^2 even for a large mean and a small spread.

A round of this sum uses round id 0 (`STATISTICS_ROUND`), which no training round uses, so its masks and key
material never meet a training round's. `simulated_secure_sum` runs that round with every site in one process
(`smpc.simulation`): what `fednode data split --scaling secure-sum` does for the bundled datasets' site files.
Pure: may call `smpc` only (the caller reads the sites' files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from smpc import limbs
from smpc.field import RingArray
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round

STAT_LIMBS = 8
"""Ring coordinates per statistic: 128-bit two's complement; a site's sum of squares of 2^31 rows of values
up to 2^24 in 16-bit fixed point stays below 2^111, so 65536 sites stay below 2^127."""
STATISTICS_ROUND = 0
FRAC_BITS = 16
"""Must equal `ml.sitedata.STAT_FRAC_BITS` (the fixed point the sites encode in)."""


def vector_length(n_features: int) -> int:
    """Ring coordinates of the statistics vector: a count, a sum and a sum of squares per feature."""
    return 3 * n_features * STAT_LIMBS


def statistics_vector(stats: Sequence[tuple[int, int, int]]) -> RingArray:
    """This site's input to the secure sum: [count_1.., sum_1.., sum_sq_1..] in limbs."""
    counts, sums, squares = zip(*stats, strict=True) if stats else ((), (), ())
    return limbs.encode([*counts, *sums, *squares], STAT_LIMBS)


def scaling_from_sum(total: RingArray, n_features: int, sites: int) -> dict[str, Any]:
    """The genesis `scaling` section from the ring sum of the sites' statistics vectors.

    A feature with no value anywhere is refused; a constant feature gets std 1 (as for a public dataset).
    """
    values = limbs.decode(np.asarray(total, dtype=np.uint32), 3 * n_features, STAT_LIMBS)
    counts, sums, squares = values[:n_features], values[n_features:2 * n_features], values[2 * n_features:]
    mean, std = [], []
    for j, (n, s, q) in enumerate(zip(counts, sums, squares, strict=True)):
        if n <= 0:
            raise ValueError(f"feature {j}: no site holds a value (count {n})")
        unit = 1 << FRAC_BITS
        mu = Fraction(s, n * unit)
        variance = Fraction(n * q - s * s, n * n * unit * unit)
        if variance < 0:
            raise ValueError(f"feature {j}: negative variance from the sums (a site's statistics are inconsistent)")
        mean.append(float(mu))
        sd = math.sqrt(float(variance))
        std.append(sd if sd > 0 else 1.0)
    return {"mean": mean, "std": std, "source": f"secure aggregation of {sites} sites' counts, sums and sums "
                                                f"of squares ({int(min(counts))} to {int(max(counts))} rows)"}


def simulated_secure_sum(vectors: Sequence[RingArray], chain_id: bytes, seed: int) -> RingArray:
    """The ring sum of the sites' statistics vectors through one Bonawitz round among them, all in this process
    (threshold: a majority of the sites). Raises ValueError if the round does not complete."""
    n = len(vectors)
    config = RoundConfig(chain_id, STATISTICS_ROUND, tuple(range(1, n + 1)), n // 2, len(vectors[0]))
    outcome = run_round(config, {i + 1: v for i, v in enumerate(vectors)}, DropSchedule(), seed)
    if len(outcome.results) != n:
        raise ValueError(f"the statistics round did not complete: {outcome.aborted}")
    return next(iter(outcome.results.values())).total
