"""Validation on shares at its edges: the parameter checks, the exact range bounds of the statistics, the
linear identity's tolerance, lying publishers, and the byte layout of the seeds every node must agree on.
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest

from smpc import field, shamir
from smpc.errors import NotEnoughShares
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    linear_identity_holds,
    reconstruct_sketch_sum,
    reconstruct_statistics,
    seed_commitment,
    sketch_seed,
    sketch_update,
)

SIGNED_FIELD_MAX = (field.P - 1) // 2
CHAIN = bytes(range(32))


def test_seed_commitment_is_sha256_of_the_documented_layout() -> None:
    reveal = b"r" * 32
    layout = (b"fednode/validation/v1/seed-commitment" + struct.pack(">H", len(CHAIN)) + CHAIN
              + struct.pack(">QH", 7, 300) + reveal)
    assert seed_commitment(CHAIN, 7, 300, reveal) == hashlib.sha256(layout).digest()


def test_sketch_seed_is_sha256_of_the_documented_layout() -> None:
    inputs = b"i" * 32
    reveals = {300: b"b" * 32, 2: b"a" * 32}
    layout = (b"fednode/validation/v2/sketch-seed" + struct.pack(">H", len(CHAIN)) + CHAIN + struct.pack(">Q", 7)
              + inputs + struct.pack(">H", 2) + b"a" * 32 + struct.pack(">H", 300) + b"b" * 32)
    assert sketch_seed(CHAIN, 7, inputs, reveals) == hashlib.sha256(layout).digest()


@pytest.mark.parametrize(("width", "clip", "scale", "slack"), [
    (0, 1.0, 1.0, 2.0), (1, 0.0, 1.0, 2.0), (1, 1.0, -1.0, 2.0), (1, 1.0, 1.0, 0.0), (1, math.inf, 1.0, 2.0),
    (1, 1.0, math.nan, 2.0),
])
def test_sketch_params_must_be_positive_and_finite(width: int, clip: float, scale: float, slack: float) -> None:
    with pytest.raises(ValueError, match="^width, clip_l2, scale and slack must be positive and finite$"):
        SketchParams(width, clip, scale, slack)


def test_the_largest_scale_whose_squared_distances_fit_is_accepted_and_no_larger() -> None:
    """width 1, C = 1, slack 1: M = scale + 1; 4 M^2 <= (p - 1) / 2 = 2^60 - 1 holds up to M just below 2^29."""
    largest = 2.0**29 - 1 - 2.0**-23
    assert 4 * (largest + 1) ** 2 <= SIGNED_FIELD_MAX
    assert SketchParams(1, 1.0, largest, 1.0).max_norm_fixed == largest + 1
    with pytest.raises(ValueError, match=r"^sketch scale too large: squared distances could wrap GF\(p\)$"):
        SketchParams(1, 1.0, 2.0**29 - 1, 1.0)


@pytest.mark.parametrize(("clip", "width", "slack"), [(0.25, 64, 2.0), (1.0, 1000, 3.0), (40.0, 7, 1.5)])
def test_for_clip_picks_the_finest_power_of_two_scale_that_fits(clip: float, width: int, slack: float) -> None:
    params = SketchParams.for_clip(clip, width, slack)
    assert (params.width, params.clip_l2, params.slack) == (width, clip, slack)
    assert math.log2(params.scale).is_integer()
    with pytest.raises(ValueError, match="scale too large"):
        SketchParams(width, clip, 2 * params.scale, slack)


def test_for_clip_at_the_edge_of_the_field() -> None:
    """sqrt((p - 1) / 8) is 2^29 in floating point: a sketch of width 2^58 leaves no room, width (2^29 - 1)^2
    one unit, where the first power-of-two guess does not fit and the next one down does."""
    with pytest.raises(ValueError, match=r"^sketch too wide for GF\(p\)$"):
        SketchParams.for_clip(1.0, 2**58)
    params = SketchParams.for_clip(1.0, (2**29 - 1) ** 2, 2.0)
    assert params.scale == 0.25


def shared(values: list[int], degree: int, holders: list[int], seed: int = 1) -> dict[int, np.ndarray]:
    return shamir.share_vector(field.from_signed(np.array(values, dtype=np.int64)), degree, holders,
                               SeededRandomBytes.from_int(seed))


def test_statistics_at_the_proven_bounds_are_in_range_and_beyond_them_are_reported() -> None:
    """Owners 1, 2: statistics (1,1), (2,2), (1,2). M = 3 (width 1, C = 1, scale 2, slack 1), so a norm
    may be 0..9 and a distance 0..36."""
    params = SketchParams(1, 1.0, 2.0, 1.0)
    assert params.max_norm_fixed == 3.0
    holders = list(range(1, 6))

    def flagged(values: list[int]) -> tuple[tuple[int, int], ...]:
        return reconstruct_statistics(shared(values, 2, holders), [1, 2], 1, params, 0).out_of_range

    assert flagged([0, 9, 36]) == ()
    assert flagged([10, 0, 36]) == ((1, 1),)
    assert flagged([0, 0, 37]) == ((1, 2),)
    assert flagged([-1, 0, 20]) == ((1, 1),)
    stats = reconstruct_statistics(shared([8, 9, 20], 2, holders), [1, 2], 1, params, 0)
    assert stats.norms_sq == {1: 2.0, 2: 2.25} and stats.distances_sq == {(1, 2): 5.0}


def lie(shares: dict[int, np.ndarray], liar: int) -> dict[int, np.ndarray]:
    out = dict(shares)
    out[liar] = field.add(out[liar], np.ones_like(out[liar]))
    return out


def test_a_lying_statistics_publisher_is_corrected_and_named_with_f_one() -> None:
    params = SketchParams(1, 1.0, 2.0, 1.0)
    holders = list(range(1, 6))
    stats = reconstruct_statistics(lie(shared([4, 9, 1], 2, holders), 3), [1, 2], 1, params, 1)
    assert stats.inconsistent_publishers == (3,)
    assert stats.norms_sq == {1: 1.0, 2: 2.25}


def test_the_sketch_sum_is_reconstructed_at_degree_t_and_a_liar_named() -> None:
    holders = list(range(1, 6))
    total, result = reconstruct_sketch_sum(lie(shared([5, -7, 0], 2, holders), 4), 2, 1)
    assert total.tolist() == [5, -7, 0] and result.inconsistent_ids == (4,)


def identity(sketch_sum: list[int], total: list[int], accepted: int) -> bool:
    sketch = CountSketch(b"s" * 32, len(total), 2)
    quant = QuantParams(clip_l2=1.0, scale=1.0, max_participants=4)
    params = SketchParams(2, 1.0, 1.0, 2.0)
    ring = np.array(total, dtype=np.int64).astype(np.uint32)
    return linear_identity_holds(np.array(sketch_sum, dtype=np.int64), ring, sketch, params, quant, accepted)


def test_the_linear_identity_allows_one_rounding_error_per_accepted_sketch_and_no_more() -> None:
    assert identity([3, -3], [0, 0, 0], 3)
    assert not identity([4, 0], [0, 0, 0], 3)


def test_the_linear_identity_tolerance_grows_only_by_float_error_with_the_size_of_the_sum() -> None:
    sketch = CountSketch(b"s" * 32, 3, 2)
    big = [10**9, 10**9, 10**9]
    expected = sketch.apply(np.array(big, dtype=np.int64))
    assert np.all(np.abs(expected) >= 10**9)
    assert identity((expected + 3).tolist(), big, 2), "float error of 1e-9 * |expected| is allowed on top"
    assert not identity((expected + 5).tolist(), big, 2)
    small = [40, 40, 40]
    assert not identity((sketch.apply(np.array(small, dtype=np.int64)) + 4).tolist(), small, 3)


def test_a_sketch_is_clipped_to_slack_times_the_clip_bound() -> None:
    """C = 4, slack 2: a long update's sketch has norm slack * C * scale (+ rounding), not slack / C."""
    dim = 64
    quant = QuantParams(clip_l2=100.0, scale=16.0, max_participants=4)
    params = SketchParams(16, 4.0, 8.0, 2.0)
    sketch = CountSketch(b"k" * 32, dim, 16)
    update = np.full(dim, 50 * 16, dtype=np.int64).astype(np.uint32)
    z = sketch_update(update, sketch, params, quant, SeededRandomBytes.from_int(3))
    assert abs(np.linalg.norm(z) - 2 * 4.0 * 8.0) <= math.sqrt(16)


def test_statistics_need_2t_plus_1_plus_f_publishers() -> None:
    """t = 1, f = 1: three publishers fit a degree-2 polynomial exactly, so they prove nothing."""
    params = SketchParams(1, 1.0, 2.0, 1.0)
    three = shared([4, 9, 1], 2, [1, 2, 3])
    assert reconstruct_statistics(three, [1, 2], 1, params, 0).norms_sq == {1: 1.0, 2: 2.25}
    with pytest.raises(NotEnoughShares):
        reconstruct_statistics(three, [1, 2], 1, params, 1)


def test_the_sketch_sum_needs_t_plus_1_plus_f_publishers() -> None:
    three = shared([5, -7, 0], 2, [1, 2, 3])
    assert reconstruct_sketch_sum(three, 2, 0)[0].tolist() == [5, -7, 0]
    with pytest.raises(NotEnoughShares):
        reconstruct_sketch_sum(three, 2, 1)
