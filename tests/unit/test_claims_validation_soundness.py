"""Threat model claim: validation statistics are decided only by 2t_v + 1 + f_eff agreeing publishers, so f_eff
colluding publishers can abort a round but never make it decide a statistic other than the true one; and
N = 3f + 1 + e corrects e liars (docs/threat-model.md, "Who we defend against" and "Known limits").

The colluders here are the strongest publishers the decoder faces, not random faults: they publish last, after
reading every honest statistic share from the ledger, and each publishes a validly formed vector on the
polynomial P + Q, where P is the true one and Q (degree 2t_v, Q(0) = -delta) vanishes on 2t_v honest
publishers of their choosing, so that the forged polynomial agrees with as many publishers as any wrong one can.
`per-coordinate` gives each statistic its own Q and vanishing set, against the decoder's random compression of
the vectors into one field element. The round's absent members are the faulty ones the ledger left out
(k of them; f_eff = f - max(0, k - spare), `node.contract_membership.Membership.effective_faulty`).
"""

from __future__ import annotations

import numpy as np
import pytest

from smpc import field, shamir
from smpc.errors import InconsistentShares
from smpc.prg import SeededRandomBytes
from smpc.validation import (
    SketchParams,
    ValidationStatistics,
    local_statistics,
    reconstruct_statistics,
    share_sketch,
    statistic_pairs,
)
from tests.smpc_helpers import zero_shares

WIDTH = 8
TRIALS = 6
PARAMS = SketchParams.for_clip(1.0, WIDTH)
# every N with every number of absent members the round can go on without (k <= f + spare)
CASES = [(n, k) for n in (4, 5, 6, 7, 8, 10) for k in range(n - 2 * ((n - 1) // 3))]


def effective_faulty(n: int, f: int, degree: int, absent: int) -> int:
    spare = max(0, n - (2 * degree + 1 + f))
    return max(0, f - max(0, absent - spare))


def honest_publications(publishers: list[int], degree: int, rand: SeededRandomBytes) -> dict[int, field.FieldArray]:
    """Every publisher's statistic share, computed as an honest holder computes it (sketches of the
    publishers, shared with degree t_v, re-randomized by a PRZS zero sharing)."""
    gen = np.random.default_rng(int.from_bytes(rand(8), "little"))
    bound = int(PARAMS.max_norm_fixed / np.sqrt(WIDTH))
    sketches = {i: gen.integers(-bound, bound, WIDTH) for i in publishers}
    dealt = {i: share_sketch(s, degree, publishers, rand) for i, s in sketches.items()}
    zeros = zero_shares([h - 1 for h in publishers], degree, len(statistic_pairs(publishers)), rand)
    return {h: local_statistics({i: dealt[i][h] for i in publishers}, zeros[h - 1]) for h in publishers}


def forged(published: dict[int, field.FieldArray], liars: list[int], degree: int, per_coordinate: bool,
           gen: np.random.Generator) -> dict[int, field.FieldArray]:
    """The liars' chosen vectors: P + Q with Q(0) = -delta vanishing on 2t_v honest publishers."""
    honest = [h for h in published if h not in liars]
    length = next(iter(published.values())).shape[0]
    coordinates = range(length) if per_coordinate else [int(gen.integers(length))]
    out = dict(published)
    for c in coordinates:
        zeros = sorted(gen.choice(honest, size=min(2 * degree, len(honest)), replace=False).tolist())
        delta = int(gen.integers(1, 2**40))
        for liar in liars:
            basis = shamir.lagrange_weights([0, *zeros], liar)[0]
            shift = np.zeros(length, dtype=np.uint64)
            shift[c] = (field.P - delta) * basis % field.P
            out[liar] = field.add(out[liar], shift)
    return out


def same(a: ValidationStatistics, b: ValidationStatistics) -> bool:
    return a.norms_sq == b.norms_sq and a.distances_sq == b.distances_sq and a.out_of_range == b.out_of_range


@pytest.mark.parametrize(("n", "absent"), CASES)
def test_f_eff_colluding_publishers_never_make_a_wrong_statistic_decided(n: int, absent: int) -> None:
    f = (n - 1) // 3
    degree = f
    f_eff = effective_faulty(n, f, degree, absent)
    correctable = n - absent - (2 * degree + 1) - f_eff
    for trial in range(TRIALS):
        seed = 1000 * n + 100 * absent + trial
        gen = np.random.default_rng(seed)
        publishers = sorted(gen.choice(np.arange(1, n + 1), size=n - absent, replace=False).tolist())
        published = honest_publications(publishers, degree, SeededRandomBytes.from_int(seed))
        truth = reconstruct_statistics(published, publishers, degree, PARAMS, f_eff)
        for count in range(1, f_eff + 1):
            liars = sorted(gen.choice(publishers, size=count, replace=False).tolist())
            for per_coordinate in (False, True):
                where = f"seed={seed} n={n} absent={absent} f_eff={f_eff} liars={liars} per_coordinate={per_coordinate}"
                attack = forged(published, liars, degree, per_coordinate, gen)
                try:
                    decided = reconstruct_statistics(attack, publishers, degree, PARAMS, f_eff)
                except InconsistentShares:
                    assert count > correctable, f"{where}: {count} liars within the {correctable} corrected aborted"
                    continue
                assert same(decided, truth), f"{where}: the colluders made a wrong statistic decided"
                assert decided.inconsistent_publishers == tuple(liars), f"{where}: named {decided.inconsistent_publishers}"
