"""Pairwise and self masking of quantized updates in Z_2^32, and the matching unmasking.

Participant i publishes

    y_i = q_i + PRG(b_i) + sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ij)   (mod 2^32)

where b_i is its fresh self-mask seed and s_ij = s_ji the pairwise key it shares with every other
participant j of the key-sharing set (but those in a disputed pair with it, which share no mask: `pair_seeds`
and the dropped pairs then simply leave them out). Over a set S of survivors, the pairwise masks between two
survivors cancel in sum_{i in S} y_i. What remains is removed by the unmask phase:

- PRG(b_i) for each survivor i, from b_i reconstructed out of Shamir shares;
- for each dropped d and survivor j, the term survivor j added for the pair: +PRG(s_jd) if d > j,
  -PRG(s_jd) if d < j, from s_dj recomputed with d's reconstructed mask secret key.

The self mask is what keeps a late-arriving y_d private after d was declared dropped: its pairwise
masks are then removable, but b_d is never revealed (see secagg.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smpc.field import RingArray
from smpc.prg import MaskGenerator


def mask_input(
    quantized: RingArray,
    self_seed: bytes,
    pair_seeds: Mapping[int, bytes],
    owner: int,
    generator: MaskGenerator,
) -> RingArray:
    """y_owner: the quantized update plus its self mask and its signed pairwise masks."""
    assert quantized.dtype == np.uint32 and quantized.shape == (generator.length,), "not a ring vector"
    assert owner not in pair_seeds, "no pairwise mask with oneself"
    masked = quantized.copy()
    generator.add_into(masked, self_seed)
    for other, seed in pair_seeds.items():
        if other > owner:
            generator.add_into(masked, seed)
        else:
            generator.subtract_into(masked, seed)
    return masked


def unmask_sum(
    masked: Mapping[int, RingArray],
    self_seeds: Mapping[int, bytes],
    dropped_pair_seeds: Mapping[tuple[int, int], bytes],
    generator: MaskGenerator,
) -> RingArray:
    """sum_{i in S} q_i from the survivors' masked inputs, their self seeds and the dropped pairs' keys.

    `dropped_pair_seeds` maps (dropped d, survivor j) to s_dj, for every such pair.
    """
    assert set(self_seeds) == set(masked), "need exactly one self seed per survivor"
    total = np.zeros(generator.length, dtype=np.uint32)
    for vector in masked.values():
        np.add(total, vector, out=total)
    for seed in self_seeds.values():
        generator.subtract_into(total, seed)
    for (dropped, survivor), seed in dropped_pair_seeds.items():
        assert survivor in masked and dropped not in masked, "pair keys are for (dropped, survivor) pairs"
        if dropped > survivor:
            generator.subtract_into(total, seed)
        else:
            generator.add_into(total, seed)
    return total
