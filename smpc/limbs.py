"""Exact sums of wide signed integers through secure aggregation's ring Z_2^32.

Secure aggregation adds members' vectors modulo 2^32 (`smpc.secagg`). A statistic that needs more bits (a
count, a sum of fixed-point values, a sum of their squares over a hospital's rows) is written in two's
complement over `LIMB_BITS * limbs` bits and cut into limbs of LIMB_BITS = 16 bits, one limb per ring
coordinate. Each limb is below 2^16, so the sum of up to MAX_SUMMANDS members' limbs stays below 2^32 and the
ring returns it exactly, carries included; recombining the limb sums with their weights 2^(16k) gives the
sum of the members' two's-complement values, and reducing that modulo 2^(16 limbs) gives the true signed sum
as long as it fits the same width (`decode` asserts the caller's bound was wide enough by checking the
range). Pure integer arithmetic: no rounding anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smpc.field import RingArray

LIMB_BITS = 16
MAX_SUMMANDS = 1 << (32 - LIMB_BITS)
"""Members whose limbs may be summed: MAX_SUMMANDS * (2^16 - 1) < 2^32."""


def encode(values: Sequence[int], limbs: int) -> RingArray:
    """`values` (signed, each |v| < 2^(16 limbs - 1) / MAX_SUMMANDS) as len(values) * limbs ring coordinates,
    least significant limb first. Raises ValueError for a value that could make a sum of MAX_SUMMANDS wrap."""
    width = LIMB_BITS * limbs
    bound = 1 << (width - 1 - (32 - LIMB_BITS))
    out = np.zeros(len(values) * limbs, dtype=np.uint32)
    for i, value in enumerate(values):
        if not -bound < value < bound:
            raise ValueError(f"statistic {i} is {value}, outside (-2^{width - 1 - (32 - LIMB_BITS)}, "
                             f"2^{width - 1 - (32 - LIMB_BITS)}): too wide for {limbs} limbs")
        unsigned = value % (1 << width)
        for k in range(limbs):
            out[i * limbs + k] = (unsigned >> (LIMB_BITS * k)) & ((1 << LIMB_BITS) - 1)
    return out


def decode(total: RingArray, count: int, limbs: int) -> list[int]:
    """The signed sums of `count` statistics from the ring sum of members' `encode`d vectors."""
    if total.shape != (count * limbs,):
        raise ValueError(f"expected {count * limbs} ring coordinates, got {total.shape}")
    width = LIMB_BITS * limbs
    sums = []
    for i in range(count):
        unsigned = sum(int(total[i * limbs + k]) << (LIMB_BITS * k) for k in range(limbs)) % (1 << width)
        sums.append(unsigned - (1 << width) if unsigned >= 1 << (width - 1) else unsigned)
    return sums
