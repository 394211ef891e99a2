"""L2 clipping and stochastic quantization of float updates into the ring Z_2^32.

Secure aggregation adds updates modulo 2^32, so the plain sum must be recoverable from its
residue. We read a ring element through its centred lift, i.e. as a signed integer in
[-2^31, 2^31). That lift is exact iff the true integer sum lies in that interval, and we make
that a guarantee rather than a hope:

1. Each update x is clipped to L2 norm at most C, so every coordinate satisfies |x_k| <= ||x|| <= C.
2. Each coordinate is scaled by `scale` and stochastically rounded to one of its two neighbouring
   integers, so |q_k| <= ceil(C * scale) =: B.
3. For N updates, |sum_i q_ik| <= N * B. `QuantParams` refuses parameters unless N * B <= 2^31 - 1,
   so the sum of any N clipped, quantized updates never wraps and the centred lift returns it.

The per-coordinate bound |x_k| <= C is loose for large models (a typical coordinate is about
C / sqrt(d)), but it is the only bound that holds for every input; a tighter probabilistic bound
would let a single adversarial update (all mass on one coordinate) wrap the sum silently. The
cost of the loose bound is resolution: `QuantParams.for_participants` picks the largest
power-of-two scale allowed, about 2^31 / (N C), i.e. a step of ~5e-9 C for N = 10.

Stochastic rounding (round up with probability equal to the fractional part) makes q_k / scale an
unbiased estimate of x_k, so quantization noise averages out instead of biasing small updates to
zero. Its random bits come from the caller's `RandomBytes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smpc import field
from smpc.field import RandomBytes, RingArray

RING_SIGNED_MAX = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Clipping bound C (L2), fixed-point scale, and the most updates that will ever be summed."""

    clip_l2: float
    scale: float
    max_participants: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip_l2) and self.clip_l2 > 0):
            raise ValueError(f"clip_l2 must be a positive finite number, got {self.clip_l2}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale}")
        if self.max_participants < 1:
            raise ValueError("max_participants must be at least 1")
        if self.max_participants * self.coordinate_bound > RING_SIGNED_MAX:
            raise ValueError(
                f"{self.max_participants} updates of coordinate bound {self.coordinate_bound} "
                f"(= ceil(clip_l2 * scale)) can wrap Z_2^32: need N * bound <= 2^31 - 1"
            )

    @property
    def coordinate_bound(self) -> int:
        """B = ceil(C * scale): the largest |q_k| stochastic rounding can produce."""
        return math.ceil(self.clip_l2 * self.scale)

    @classmethod
    def for_participants(cls, clip_l2: float, max_participants: int) -> QuantParams:
        """The finest power-of-two scale for which N clipped updates cannot wrap the ring."""
        if not (math.isfinite(clip_l2) and clip_l2 > 0) or max_participants < 1:
            raise ValueError("clip_l2 must be positive and finite, max_participants at least 1")
        exponent = math.floor(math.log2(RING_SIGNED_MAX / (max_participants * clip_l2)))
        while max_participants * math.ceil(clip_l2 * 2.0**exponent) > RING_SIGNED_MAX:
            exponent -= 1
        return cls(clip_l2, 2.0**exponent, max_participants)


def clip_factor(update: npt.NDArray[np.floating], bound: float) -> float:
    """The factor min(1, bound / ||update||_2) that clipping multiplies the update by."""
    norm = math.sqrt(float(np.dot(update, update)))
    assert math.isfinite(norm), "local update has non-finite entries (or its norm overflows)"
    return bound / norm if norm > bound else 1.0


def clip_l2(update: npt.NDArray[np.floating], bound: float) -> npt.NDArray[np.float64]:
    """Scale `update` down to L2 norm `bound` if it is longer; shorter updates are unchanged."""
    clipped: npt.NDArray[np.float64] = np.multiply(update, clip_factor(update, bound), dtype=np.float64)
    return clipped


def clip_and_round(
    values: npt.NDArray[np.floating], clip_l2: float, scale: float, rand: RandomBytes
) -> npt.NDArray[np.float64]:
    """Clip to L2 <= clip_l2, multiply by scale, and round stochastically (integers, as float64).

    Stochastic rounding is floor(v + u) with u uniform in [0, 1): it rounds up exactly when
    u >= 1 - frac(v), which has probability frac(v), so the result is unbiased and each entry
    stays within ceil(clip_l2 * scale) in absolute value. The per-coordinate clamp to
    clip_l2 * scale changes nothing in exact arithmetic (|x_k| <= ||x||); it keeps that bound even
    when the norm, computed in the input's precision (float32 for model updates), is slightly low.
    """
    flat = np.ravel(values)
    rounded = np.empty(flat.size, dtype=np.float64)
    for window, block in _rounded_blocks(flat, clip_l2, scale, rand):
        rounded[window] = block
    return rounded.reshape(np.shape(values))


ROUNDING_BLOCK = 1 << 15
"""Coordinates rounded at a time (256 KB of float64): the temporaries stay in cache and come from no fresh page."""


def _rounded_blocks(
    values: npt.NDArray[np.floating], clip_l2: float, scale: float, rand: RandomBytes
) -> Iterator[tuple[slice, npt.NDArray[np.float64]]]:
    """`clip_and_round` of the 1-D `values`, as (slice, rounded block) pairs; each block is overwritten by the next.

    Each coordinate goes through the same float64 operations, in the same order, as the whole-vector
    expression floor(clip(values * (factor * scale)) + u / 2^32), so the blocks hold exactly its bits; the
    random bytes are drawn in one call, as before, so a seeded source gives the same words.
    """
    factor = clip_factor(values, clip_l2) * scale
    limit = clip_l2 * scale
    noise = np.frombuffer(rand(4 * values.size), dtype="<u4")
    rounded = np.empty(min(ROUNDING_BLOCK, values.size), dtype=np.float64)
    fraction = np.empty_like(rounded)
    for start in range(0, values.size, ROUNDING_BLOCK):
        window = slice(start, min(start + ROUNDING_BLOCK, values.size))
        count = window.stop - start
        block, uniform = rounded[:count], fraction[:count]
        np.multiply(values[window], factor, out=block, dtype=np.float64)
        np.clip(block, -limit, limit, out=block)  # no-op in exact arithmetic
        np.multiply(noise[window], 1.0 / 2**32, out=uniform)
        block += uniform
        np.floor(block, out=block)
        yield window, block


def quantize(update: npt.NDArray[np.floating], params: QuantParams, rand: RandomBytes) -> RingArray:
    """Clip to L2 <= C, scale, stochastically round, and embed in Z_2^32 (two's complement).

    The 4 random bytes per coordinate are the bulk of the cost, so callers should pass a fast
    CSPRNG (`prg.SeededRandomBytes` seeded from the OS for each round) rather than reading
    megabytes from the OS itself. Rounded block by block (`_rounded_blocks`), straight into the
    int32 result: bit for bit `clip_and_round(...).astype(np.int32)`, without its 8 MB float64
    vector per million coordinates.
    """
    flat = np.ravel(update)
    embedded = np.empty(flat.size, dtype=np.int32)
    bound = params.coordinate_bound
    for window, block in _rounded_blocks(flat, params.clip_l2, params.scale, rand):
        assert -bound <= block.min() and block.max() <= bound, "rounding exceeded the proven bound"
        embedded[window] = block
    return embedded.reshape(np.shape(update)).view(np.uint32)


def dequantize_sum(total: RingArray, params: QuantParams) -> npt.NDArray[np.float64]:
    """The float sum of up to `max_participants` quantized updates from their ring sum."""
    return field.ring_view_signed(total) / params.scale
