"""Test helpers for the validation layer: what honest members would compute, without the message layer."""

from __future__ import annotations

import numpy as np

from smpc import przs
from smpc.field import FieldArray, RandomBytes


def zero_shares(members: list[int], degree: int, count: int, rand: RandomBytes) -> dict[int, FieldArray]:
    """Every member's PRZS zero share (x = member + 1) of `count` zeros, with fresh keys for every subset."""
    keys = {subset: rand(przs.KEY_BYTES) for subset in przs.subsets(members, degree)}
    return {h: przs.zero_share({a: k for a, k in keys.items() if h not in a}, h, degree, count) for h in members}


def no_zero(count: int) -> FieldArray:
    return np.zeros(count, dtype=np.uint64)
