"""Statistics on shares: exact reconstruction, lying publishers named, the linear identity."""

import numpy as np
import pytest

from smpc import field
from smpc.errors import InconsistentShares
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams, quantize
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    ValidationStatistics,
    linear_identity_holds,
    local_statistics,
    reconstruct_sketch_sum,
    reconstruct_statistics,
    share_sketch,
    sketch_seed,
    sketch_update,
    statistic_pairs,
    sum_shares,
)
from tests.smpc_helpers import no_zero, zero_shares

DIM, WIDTH, N, DEGREE, F = 4000, 64, 7, 1, 2
HOLDERS = list(range(1, N + 1))


class Round:
    """N participants with quantized updates, their sketches, and every holder's shares."""

    def __init__(self, seed: int) -> None:
        self.rand = SeededRandomBytes.from_int(seed)
        gen = np.random.default_rng(seed)
        self.quant = QuantParams.for_participants(clip_l2=1.0, max_participants=N)
        self.params = SketchParams.for_clip(1.0, WIDTH)
        self.sketch = CountSketch(self.rand(32), DIM, WIDTH)
        updates = {i: gen.standard_normal(DIM) * (0.3 / np.sqrt(DIM)) * i for i in HOLDERS}
        self.quantized = {i: quantize(u, self.quant, self.rand) for i, u in updates.items()}
        self.sketches = {
            i: sketch_update(self.quantized[i], self.sketch, self.params, self.quant, self.rand) for i in HOLDERS
        }
        dealt = {i: share_sketch(self.sketches[i], DEGREE, HOLDERS, self.rand) for i in HOLDERS}
        self.held = {h: {i: dealt[i][h] for i in HOLDERS} for h in HOLDERS}
        count = len(statistic_pairs(HOLDERS))
        zeros = zero_shares([h - 1 for h in HOLDERS], DEGREE, count, self.rand)
        self.published = {h: local_statistics(self.held[h], zeros[h - 1]) for h in HOLDERS}


def test_statistics_equal_those_of_the_quantized_sketches() -> None:
    r = Round(seed=1)
    stats = reconstruct_statistics(r.published, HOLDERS, DEGREE, r.params, F)
    unit = r.params.scale**2
    for i in HOLDERS:
        assert stats.norms_sq[i] * unit == float(np.dot(r.sketches[i], r.sketches[i]))
    for i, j in statistic_pairs(HOLDERS)[N:]:
        diff = r.sketches[i] - r.sketches[j]
        assert stats.distances_sq[(i, j)] * unit == float(np.dot(diff, diff))
    assert not stats.out_of_range and not stats.inconsistent_publishers and stats.checked


def test_sketch_norms_estimate_update_norms() -> None:
    r = Round(seed=2)
    stats = reconstruct_statistics(r.published, HOLDERS, DEGREE, r.params, F)
    for i in HOLDERS:
        true_sq = float(np.sum(field.ring_to_signed(r.quantized[i]).astype(np.float64) ** 2)) / r.quant.scale**2
        assert stats.norms_sq[i] == pytest.approx(true_sq, rel=0.6)


def test_lying_publishers_are_named_and_corrected() -> None:
    r = Round(seed=3)
    published = dict(r.published)
    for liar in (2, 6):
        published[liar] = field.add(published[liar], np.ones_like(published[liar]))
    stats = reconstruct_statistics(published, HOLDERS, DEGREE, r.params, F)
    assert stats.inconsistent_publishers == (2, 6)
    honest = reconstruct_statistics(r.published, HOLDERS, DEGREE, r.params, F)
    assert stats.norms_sq == honest.norms_sq and stats.distances_sq == honest.distances_sq


def test_too_many_liars_is_a_typed_error() -> None:
    r = Round(seed=4)
    published = {h: field.add(v, np.full_like(v, h)) if h <= 3 else v for h, v in r.published.items()}
    with pytest.raises(InconsistentShares):
        reconstruct_statistics(published, HOLDERS, DEGREE, r.params, F)


def test_zero_sharing_rerandomizes_published_shares() -> None:
    r = Round(seed=5)
    bare = {h: local_statistics(r.held[h], no_zero(len(statistic_pairs(HOLDERS)))) for h in HOLDERS}
    assert all(not np.array_equal(bare[h], r.published[h]) for h in HOLDERS)
    assert reconstruct_statistics(bare, HOLDERS, DEGREE, r.params, F).norms_sq == (
        reconstruct_statistics(r.published, HOLDERS, DEGREE, r.params, F).norms_sq
    )


def statistics_with_forged_sketch(r: Round, value: int) -> ValidationStatistics:
    dealt = share_sketch(np.full(WIDTH, value, dtype=np.int64), DEGREE, HOLDERS, r.rand)
    for h in HOLDERS:
        r.held[h][4] = dealt[h]
    published = {h: local_statistics(r.held[h], no_zero(len(statistic_pairs(HOLDERS)))) for h in HOLDERS}
    return reconstruct_statistics(published, HOLDERS, DEGREE, r.params, F)


def test_out_of_range_sketch_is_reported() -> None:
    stats = statistics_with_forged_sketch(Round(seed=6), 2**27)
    assert (4, 4) in stats.out_of_range


def test_a_wrapping_sketch_can_hide_its_norm_which_is_why_the_identity_exists() -> None:
    """64 entries of 2^40 square to 2^86, which wraps modulo p into the allowed norm range; its
    distances to honest sketches still land out of range here, and the linear identity after
    unmasking catches it in any case (see the next test)."""
    stats = statistics_with_forged_sketch(Round(seed=6), 2**40)
    assert (4, 4) not in stats.out_of_range
    assert {pair for pair in stats.out_of_range if 4 in pair} == {(1, 4), (2, 4), (3, 4), (4, 5), (4, 6), (4, 7)}


def test_linear_identity_accepts_honest_sums_and_catches_a_lying_sketch() -> None:
    r = Round(seed=7)
    accepted = [1, 2, 4, 5, 7]
    total = field.ring_sum([r.quantized[i] for i in accepted], DIM)
    sums = {h: sum_shares(r.held[h], accepted) for h in HOLDERS}
    sketch_sum, result = reconstruct_sketch_sum(sums, DEGREE, F)
    assert not result.inconsistent_ids
    assert linear_identity_holds(sketch_sum, total, r.sketch, r.params, r.quant, len(accepted))
    cheat = field.ring_from_signed(field.ring_to_signed(r.quantized[4]) * 3)
    cheated_total = field.ring_sum([r.quantized[i] for i in accepted if i != 4] + [cheat], DIM)
    assert not linear_identity_holds(sketch_sum, cheated_total, r.sketch, r.params, r.quant, len(accepted))


def test_parameters_that_could_wrap_the_field_are_refused() -> None:
    params = SketchParams.for_clip(1.0, 1000)
    assert 4 * params.max_norm_fixed**2 <= (field.P - 1) // 2
    with pytest.raises(ValueError, match="wrap"):
        SketchParams(1000, 1.0, params.scale * 2)


def test_sketch_seed_depends_on_chain_round_commitment_and_every_reveal() -> None:
    reveals = {0: b"\x00" * 32, 3: b"\x03" * 32}
    base = sketch_seed(b"chain", 3, b"\x01" * 32, reveals)
    variants = {
        sketch_seed(b"chain2", 3, b"\x01" * 32, reveals),
        sketch_seed(b"chain", 4, b"\x01" * 32, reveals),
        sketch_seed(b"chain", 3, b"\x02" * 32, reveals),
        sketch_seed(b"chain", 3, b"\x01" * 32, {0: reveals[0]}),
        sketch_seed(b"chain", 3, b"\x01" * 32, {0: reveals[0], 3: b"\x04" * 32}),
        sketch_seed(b"chain", 3, b"\x01" * 32, {0: reveals[0], 2: reveals[3]}),
    }
    assert len(base) == 32 and base not in variants and len(variants) == 6


def _statistics_by_pairs(shares: dict[int, np.ndarray], zero: np.ndarray) -> list[int]:
    """The definition in Python integers: sum over buckets of (a - b)^2 (a^2 for a norm), plus the zero share."""
    rows = {x: [int(v) for v in share] for x, share in shares.items()}
    return [(sum((a - (0 if i == j else b)) ** 2 for a, b in zip(rows[i], rows[j], strict=True)) + int(z)) % field.P
            for (i, j), z in zip(statistic_pairs(rows), zero, strict=True)]


def test_local_statistics_from_the_gram_matrix_equal_the_pairwise_definition() -> None:
    """`local_statistics` reads norms and distances off one Gram matrix; on random field elements (the edges
    0 and p - 1 included) they are exactly the pairwise sums of squared differences."""
    rand = np.random.default_rng(7)
    for owners, width in ((3, 5), (7, 1000), (10, 257)):
        shares = {x: rand.integers(0, field.P, width, dtype=np.uint64) for x in range(1, owners + 1)}
        shares[1][:2] = [0, field.P - 1]
        zero = rand.integers(0, field.P, owners * (owners + 1) // 2, dtype=np.uint64)
        assert [int(v) for v in local_statistics(shares, zero)] == _statistics_by_pairs(shares, zero), (owners, width)
