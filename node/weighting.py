"""How a local update becomes a summable vector, and a round's sum becomes the new global model (FedAvg).

Owns `Weighting` (clip and sample weight: module doc of `node.secure_round`), `apply_sum` and the quantizer
parameters that fit the weighted vectors. Deterministic arithmetic; may call `smpc.quantize` only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smpc.blame import sums_cannot_wrap
from smpc.quantize import QuantParams, clip_l2
from smpc.validation import SketchParams


@dataclass(frozen=True, slots=True)
class Weighting:
    """How a local update becomes a summable vector: L2 clip bound and the sample count of weight 1."""

    clip_l2: float
    sample_cap: int

    def vector(self, update: npt.NDArray[np.floating], n_samples: int,
               bound: float | None = None) -> npt.NDArray[np.float64]:
        """[w * clip(update), w] with w = min(n_samples, cap) / cap in (0, 1], the update clipped to the
        round's bound B (``bound``, from the ledger) if one is given and to C in any case."""
        weight = min(n_samples, self.sample_cap) / self.sample_cap
        limit = self.clip_l2 if bound is None else min(bound, self.clip_l2)
        return np.append(clip_l2(np.asarray(update, dtype=np.float64), limit) * weight, weight)

    @property
    def total_bound(self) -> float:
        """L2 bound of `vector(...)`: the quantizer's clip bound, so it never clips again."""
        return math.sqrt(self.clip_l2**2 + 1.0)


def apply_sum(global_vec: npt.NDArray[np.float32], total: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """New global model from the sum of weighted vectors; float64 arithmetic, deterministic."""
    assert total.shape == (global_vec.size + 1,), (total.shape, global_vec.shape)
    weight = float(total[-1])
    if not weight > 0:
        raise ValueError("aggregate weight is not positive")
    return (global_vec.astype(np.float64) + total[:-1] / weight).astype(np.float32)


def quant_params(weighting: Weighting, n_members: int, sketch: SketchParams | None = None) -> QuantParams:
    """The finest power-of-two quantization for which N clipped updates cannot wrap the ring; with validation
    (`sketch`), also none for which a blame's bucket sums could (`smpc.blame.sums_cannot_wrap`: one halving at the
    default slack)."""
    quant = QuantParams.for_participants(weighting.total_bound, n_members)
    while sketch is not None and quant.scale > 1 and not sums_cannot_wrap(n_members, sketch, quant):
        quant = dataclasses.replace(quant, scale=quant.scale / 2)
    return quant
