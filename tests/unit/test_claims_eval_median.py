"""Threat model claim (Known limits, evaluations): the median of the sites' accuracies moves by at most one rank
per liar, so with f liars among more than 2f reporting sites it lies between two honest sites' accuracies.

The liars are members with real keys whose `eval` the contract accepts: each declares any row count up to 2^32
at its first eval and any accuracy within it. They see the honest figures on the ledger before choosing theirs
(all at 0, all at 1, split, or on top of an honest value), the choices an order statistic is most exposed to.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from node.consortium import consortium_accuracy

MAX_ROWS = 2**32 - 1


def lies(honest: list[tuple[int, int]], f: int, gen: np.random.Generator) -> list[list[tuple[int, int]]]:
    """Every placement of f lies at the extremes, plus lies copying honest values, with chosen row counts."""
    extremes = [(0, MAX_ROWS), (MAX_ROWS, MAX_ROWS), (0, 1), (1, 1)]
    copied = [(c * 2**16, t * 2**16) for c, t in honest]
    placements = [list(p) for p in itertools.combinations_with_replacement(extremes, f)]
    placements += [[copied[int(k)] for k in gen.integers(len(copied), size=f)] for _ in range(4)]
    return placements


@pytest.mark.parametrize("f", [1, 2, 3])
@pytest.mark.parametrize("extra", [1, 2, 3])
def test_f_lying_sites_keep_the_median_within_f_ranks_of_the_honest_median(f: int, extra: int) -> None:
    reporting = 2 * f + extra
    for seed in range(20):
        gen = np.random.default_rng(100 * f + 10 * extra + seed)
        totals = gen.integers(50, 5000, size=reporting - f)
        honest = [(int(gen.integers(0, t + 1)), int(t)) for t in totals]
        ranked = sorted(c / t for c, t in honest)
        low, high = ranked[(reporting - 1) // 2 - f], ranked[reporting // 2]
        for placement in lies(honest, f, gen):
            evals = dict(enumerate(honest + placement))
            median = consortium_accuracy(evals, None)["median_site_accuracy"]  # type: ignore[index]
            assert low <= median <= high, f"seed={seed} f={f} reporting={reporting} lies={placement}: {median}"
