"""Clipping, stochastic quantization, and the no-wrap guarantee for N updates."""

import numpy as np
import pytest

from smpc import field
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams, clip_l2, dequantize_sum, quantize


def test_parameters_that_could_wrap_are_refused() -> None:
    with pytest.raises(ValueError, match="wrap"):
        QuantParams(clip_l2=1.0, scale=2.0**28, max_participants=10)
    QuantParams(clip_l2=1.0, scale=2.0**27, max_participants=10)
    for bad in [(0.0, 1.0, 3), (1.0, -1.0, 3), (float("nan"), 1.0, 3), (1.0, 1.0, 0)]:
        with pytest.raises(ValueError):
            QuantParams(*bad)


def test_for_participants_picks_the_finest_safe_power_of_two() -> None:
    for clip, n in [(1.0, 10), (3.7, 7), (1e-3, 100), (250.0, 3)]:
        params = QuantParams.for_participants(clip, n)
        assert n * params.coordinate_bound <= 2**31 - 1
        with pytest.raises(ValueError):
            QuantParams(clip, params.scale * 2, n)


def test_clipping_bounds_the_norm_and_keeps_short_updates() -> None:
    long_update = np.full(100, 1.0)
    assert np.linalg.norm(clip_l2(long_update, 2.0)) == pytest.approx(2.0)
    short = np.array([0.1, -0.2])
    assert np.array_equal(clip_l2(short, 2.0), short)


def test_worst_case_updates_sum_without_wrapping() -> None:
    """N updates with all their norm on one coordinate, same sign: the extreme sum still decodes."""
    params = QuantParams.for_participants(1.0, 10)
    rand = SeededRandomBytes.from_int(12)
    for sign in (1.0, -1.0):
        update = np.zeros(5)
        update[2] = 50.0 * sign
        total = field.ring_sum([quantize(update, params, rand) for _ in range(10)], 5)
        assert dequantize_sum(total, params)[2] == pytest.approx(10.0 * sign, rel=1e-6)


def test_stochastic_rounding_is_unbiased() -> None:
    """0.1 at scale 4 is 0.4 in fixed point: nearest or floor rounding give 0, stochastic gives 0.4 on average."""
    params = QuantParams(clip_l2=20.0, scale=4.0, max_participants=1)
    quantized = field.ring_to_signed(quantize(np.full(10_000, 0.1), params, SeededRandomBytes.from_int(13)))
    assert set(np.unique(quantized).tolist()) == {0, 1}
    assert abs(quantized.mean() - 0.4) < 0.02  # five standard deviations


def test_float32_updates_with_all_mass_on_one_coordinate_respect_the_bound() -> None:
    params = QuantParams.for_participants(1.0, 10)
    rand = SeededRandomBytes.from_int(14)
    for value in (1.0, 3.0e10, 1.0000001):
        update = np.zeros(1000, dtype=np.float32)
        update[7] = value
        update[8] = value * 1e-4
        q = field.ring_to_signed(quantize(update, params, rand))
        assert np.max(np.abs(q)) <= params.coordinate_bound
