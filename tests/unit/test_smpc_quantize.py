"""Clipping, stochastic quantization, and the no-wrap guarantee for N updates."""

import numpy as np
import pytest

from smpc import field
from smpc.prg import SeededRandomBytes
from smpc.quantize import (
    RING_SIGNED_MAX,
    ROUNDING_BLOCK,
    QuantParams,
    clip_and_round,
    clip_factor,
    clip_l2,
    dequantize_sum,
    quantize,
)


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
    for value in (1.0, 3.0e10, 1.0000001, -1.0, -3.0e10, -1.0000001):
        update = np.zeros(1000, dtype=np.float32)
        update[7] = value
        update[8] = value * 1e-4
        q = field.ring_to_signed(quantize(update, params, rand))
        assert np.max(np.abs(q)) <= params.coordinate_bound


@pytest.mark.parametrize(("args", "message"), [
    ((0.0, 1.0, 3), "clip_l2 must be a positive finite number, got 0.0"),
    ((float("inf"), 1.0, 3), "clip_l2 must be a positive finite number, got inf"),
    ((1.0, 0.0, 3), "scale must be a positive finite number, got 0.0"),
    ((1.0, float("nan"), 3), "scale must be a positive finite number, got nan"),
    ((1.0, 1.0, 0), "max_participants must be at least 1"),
])
def test_invalid_parameters_say_which(args: tuple[float, float, int], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        QuantParams(*args)


@pytest.mark.parametrize(("clip", "n"), [(0.0, 3), (-1.0, 3), (float("inf"), 3), (float("nan"), 3), (1.0, 0)])
def test_for_participants_refuses_what_cannot_be_quantized(clip: float, n: int) -> None:
    with pytest.raises(ValueError, match="^clip_l2 must be positive and finite, max_participants at least 1$"):
        QuantParams.for_participants(clip, n)


def test_the_limits_themselves_are_valid() -> None:
    """One participant, a scale below 1, and N * bound exactly 2^31 - 1 are all allowed."""
    assert QuantParams(clip_l2=1.0, scale=0.5, max_participants=1).coordinate_bound == 1
    assert QuantParams(clip_l2=1.0, scale=float(RING_SIGNED_MAX), max_participants=1).coordinate_bound == RING_SIGNED_MAX
    assert QuantParams.for_participants(float(RING_SIGNED_MAX), 1).scale == 1.0
    assert QuantParams.for_participants(1.0, 1).max_participants == 1


def test_for_participants_steps_down_when_rounding_up_would_wrap() -> None:
    """C = 715827882.2 and N = 3: C * 1 fits (3 C < 2^31 - 1) but ceil(C) does not, so the scale is 1/2."""
    clip = 715827882.2
    with pytest.raises(ValueError, match="wrap"):
        QuantParams(clip, 1.0, 3)
    assert QuantParams.for_participants(clip, 3).scale == 0.5


def test_clipping_computes_in_float64_whatever_the_input() -> None:
    update = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    assert clip_l2(update, 2.0).dtype == np.float64
    assert clip_l2(update, 2.0).tolist() == update.astype(np.float64).tolist()
    assert clip_and_round(update, 2.0, 2.0**20, SeededRandomBytes.from_int(15)).dtype == np.float64


def _whole_vector_rounding(values: np.ndarray, clip: float, scale: float, rand: SeededRandomBytes) -> np.ndarray:
    """The definition `clip_and_round` had before it worked block by block: one expression over the whole vector."""
    scaled = np.multiply(values, clip_factor(values, clip) * scale, dtype=np.float64)
    np.clip(scaled, -clip * scale, clip * scale, out=scaled)
    scaled += np.frombuffer(rand(4 * scaled.size), dtype="<u4") * (1.0 / 2**32)
    np.floor(scaled, out=scaled)
    return scaled


@pytest.mark.parametrize("size", [0, 1, ROUNDING_BLOCK - 1, ROUNDING_BLOCK, ROUNDING_BLOCK + 1, 3 * ROUNDING_BLOCK + 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip", [1e-3, 50.0])
def test_block_rounding_keeps_the_whole_vector_bits(size: int, dtype: type, clip: float) -> None:
    """Seed 21: clip 1e-3 clips every vector, 50 none; the rounding and the ring embedding are both bit for bit
    the whole-vector expression's, across block boundaries."""
    values = np.random.default_rng(21).standard_normal(size).astype(dtype)
    params = QuantParams.for_participants(clip, 7)
    expected = _whole_vector_rounding(values, clip, params.scale, SeededRandomBytes.from_int(21))
    rounded = clip_and_round(values, clip, params.scale, SeededRandomBytes.from_int(21))
    assert rounded.dtype == np.float64 and rounded.tobytes() == expected.tobytes()
    embedded = quantize(values, params, SeededRandomBytes.from_int(21))
    assert embedded.dtype == np.uint32 and embedded.tobytes() == expected.astype(np.int32).view(np.uint32).tobytes()
