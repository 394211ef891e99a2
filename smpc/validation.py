"""Validation statistics computed on Shamir shares of update sketches (issue 5's arithmetic core).

Flow for one round (the message layer and the robust rule live elsewhere):

1. After the masked inputs are committed, a public seed fixes a `CountSketch` S. Each participant
   i sketches its own quantized update, z_i = round(sigma / scale * S q_i) (`sketch_update`), and
   Shamir-shares z_i with degree t (`share_sketch`).
2. Holder h, from its shares alone, computes shares of every squared norm ||z_i||^2 and every
   squared distance ||z_i - z_l||^2 (`local_statistics`): sums of products of two degree-t shares
   are points of a degree-2t polynomial whose constant term is the statistic. Without
   re-randomization that polynomial would reveal more than its constant term (its other
   coefficients are sums of products of the sketches' polynomial coefficients), so the holder
   adds its share of a pseudo-random degree-2t sharing of zero (`smpc.przs`): computed from keys,
   dealt by nobody, so no member can make it share anything but zero.
3. Every node reconstructs all statistics at once from the published vectors
   (`reconstruct_statistics`), which cross-checks the holders against each other. With m
   publishers of whom up to f may lie, the statistics are decided only by a polynomial that agrees
   with 2t + 1 + f of them (then it is the true one); up to m - 2t - 1 - f liars are corrected and
   named, more abort the round (`smpc.shamir.reconstruct`). So deciding at all needs
   m >= 2t + 1 + f, and correcting f liars m >= 2t + 1 + 2f.
4. After unmasking the accepted set A, every node checks sum_{i in A} z_i, reconstructed from
   holders' published sums of their shares (`sum_shares`, degree t), against sigma / scale * S of
   the unmasked sum (`linear_identity_holds`). Each z_i carries one stochastic-rounding error
   below 1 per bucket, so an honest set differs by less than |A| per bucket; a participant whose
   sketch is not the sketch of its masked update is caught unless its lie is below that.

Ranges. Sketches are clipped to L2 <= slack * C before rounding, so ||z|| <= M := slack C sigma +
sqrt(k) and squared distances are below 4 M^2; `SketchParams` requires 4 M^2 < (p - 1) / 2 so
every honest statistic is read exactly through the centred lift. An honest sketch exceeds the
slack only if ||S x||^2 > slack^2 ||x||^2, which for k = 1000 (relative standard deviation of
||S x||^2 about 4.5%) and slack 2 is a many-sigma event. A malicious participant can share field
elements that are not small integers, whose squares wrap modulo p into any value: statistics
outside the proven bounds are therefore reported (`out_of_range`, by pair; a norm names its
owner, a distance only says one of the two lied), and a wrapped sketch whose statistics land in
range is exposed by the linear identity after unmasking.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smpc import field, shamir
from smpc.field import FieldArray, RandomBytes, RingArray
from smpc.quantize import QuantParams, clip_and_round, clip_factor
from smpc.sketch import CountSketch

_SIGNED_FIELD_MAX = (field.P - 1) // 2
_HALF_RING = field.RING_MODULUS // 2


@dataclass(frozen=True, slots=True)
class SketchParams:
    """Sketch width k, the updates' clipping bound C, the sketch fixed-point scale, the slack."""

    width: int
    clip_l2: float
    scale: float
    slack: float = 2.0

    def __post_init__(self) -> None:
        if self.width < 1 or not all(math.isfinite(v) and v > 0 for v in (self.clip_l2, self.scale, self.slack)):
            raise ValueError("width, clip_l2, scale and slack must be positive and finite")
        if 4 * self.max_norm_fixed**2 > _SIGNED_FIELD_MAX:
            raise ValueError("sketch scale too large: squared distances could wrap GF(p)")

    @property
    def max_norm_fixed(self) -> float:
        """M: the largest L2 norm of an honest quantized sketch."""
        return self.slack * self.clip_l2 * self.scale + math.sqrt(self.width)

    @classmethod
    def for_clip(cls, clip_l2: float, width: int, slack: float = 2.0) -> SketchParams:
        """The finest power-of-two sketch scale whose squared distances cannot wrap the field."""
        room = math.sqrt(_SIGNED_FIELD_MAX / 4) - math.sqrt(width)
        if room <= 0:
            raise ValueError("sketch too wide for GF(p)")
        exponent = math.floor(math.log2(room / (slack * clip_l2)))
        while True:
            try:
                return cls(width, clip_l2, 2.0**exponent, slack)
            except ValueError:
                exponent -= 1


@dataclass(frozen=True, slots=True)
class ValidationStatistics:
    """Reconstructed statistics in update units (squared L2), and what the cross-check found."""

    norms_sq: Mapping[int, float]
    distances_sq: Mapping[tuple[int, int], float]
    out_of_range: tuple[tuple[int, int], ...]
    """Statistics outside the proven range: evidence that a sketch was not small integers."""
    inconsistent_publishers: tuple[int, ...]
    checked: bool


def seed_commitment(chain_id: bytes, round_id: int, member: int, reveal: bytes) -> bytes:
    """H(member, reveal): what a member's `input` transaction commits to, before U3 closes."""
    tag = b"fednode/validation/v1/seed-commitment" + len(chain_id).to_bytes(2, "big") + chain_id
    return hashlib.sha256(tag + round_id.to_bytes(8, "big") + member.to_bytes(2, "big") + reveal).digest()


def sketch_seed(chain_id: bytes, round_id: int, inputs_commitment: bytes, reveals: Mapping[int, bytes]) -> bytes:
    """The public sketch seed of a round: SHA-256 of a domain tag, the chain id, the round id, the ledger's
    commitment to the masked inputs, and the revealed values R of the members whose reveals the ledger
    committed after U3 closed (each opening the commitment its `input` carried).

    Why the reveals. A seed that is a function of the masked inputs alone is known to the last member to
    mask, who knows every other digest: it can vary its own input until the sketch cancels a chosen delta
    (1,142 tries at d = 2,000). Each honest reveal is unknown to everyone until U3 is fixed, so nobody can
    compute the seed while it can still change its input; what remains is the choice, after U3, of which
    reveals count (members withholding theirs, a primary censoring others'), bounded in docs/validation.md.
    """
    tag = b"fednode/validation/v2/sketch-seed" + len(chain_id).to_bytes(2, "big") + chain_id
    body = b"".join(member.to_bytes(2, "big") + reveals[member] for member in sorted(reveals))
    return hashlib.sha256(tag + round_id.to_bytes(8, "big") + inputs_commitment + body).digest()


class SketchTooLong(ValueError):
    """Our own sketch is longer than slack * C, so dealing it clipped would contradict our masked input: the linear
    identity would fail after unmasking and the blame phase convict us (red team B11). For an update clipped to C a
    many-sigma event (||S x||^2 has a relative standard deviation of about 4.5% at k = 1000); the member abstains
    from dealing instead."""


def sketch_update(
    quantized: RingArray, sketch: CountSketch, params: SketchParams, quant: QuantParams, rand: RandomBytes,
    refuse_clipped: bool = False,
) -> npt.NDArray[np.int64]:
    """z = round(sigma / scale * S q), clipped to slack * C: computed from exactly what was masked. With
    ``refuse_clipped`` (a member sketching its own update), raises SketchTooLong instead of clipping."""
    exact = sketch.apply(field.ring_view_signed(quantized)) / quant.scale
    bound = params.slack * params.clip_l2
    if refuse_clipped and clip_factor(exact, bound) < 1.0:
        raise SketchTooLong(f"sketch norm {math.sqrt(float(np.dot(exact, exact))):.6g} above slack * C = {bound:.6g}")
    rounded = clip_and_round(exact, bound, params.scale, rand)
    return rounded.astype(np.int64)


def share_sketch(
    sketch_fixed: npt.NDArray[np.int64], degree: int, holders: Sequence[int], rand: RandomBytes
) -> dict[int, FieldArray]:
    """Degree-t Shamir shares of a quantized sketch, one vector per holder."""
    return shamir.share_vector(field.from_signed(sketch_fixed), degree, holders, rand)


def statistic_pairs(owners: Iterable[int]) -> list[tuple[int, int]]:
    """The fixed order of statistics: (i, i) for each squared norm, then (i, l), i < l, distances."""
    ordered = sorted(owners)
    return [(i, i) for i in ordered] + list(itertools.combinations(ordered, 2))


def local_statistics(sketch_shares: Mapping[int, FieldArray], zero_share: FieldArray) -> FieldArray:
    """A holder's degree-2t shares of every statistic (order of `statistic_pairs`), re-randomized by its
    share of a degree-2t sharing of zero (`smpc.przs.zero_share`).

    From the Gram matrix G of the shares (`field.inner_products`): ||a||^2 = G_aa and ||a - b||^2 =
    G_aa + G_bb - 2 G_ab: the same field elements as summing the squared differences pair by pair, for
    one integer matrix product instead of ~25 field passes over each of the m (m + 1) / 2 pairs."""
    owners = sorted(sketch_shares)
    pairs = statistic_pairs(owners)
    position = {owner: row for row, owner in enumerate(owners)}
    gram = field.inner_products(np.stack([sketch_shares[owner] for owner in owners]))
    left = np.array([position[i] for i, _ in pairs], dtype=np.intp)
    right = np.array([position[j] for _, j in pairs], dtype=np.intp)
    cross = gram[left, right]
    distances = field.sub(field.add(gram[left, left], gram[right, right]), field.add(cross, cross))
    statistics = np.where(left == right, cross, distances)
    assert zero_share.shape == statistics.shape, "zero share of the wrong length"
    return field.add(statistics, zero_share)


def reconstruct_statistics(
    published: Mapping[int, FieldArray], owners: Iterable[int], degree: int, params: SketchParams, max_faulty: int
) -> ValidationStatistics:
    """Reconstruct every statistic from the holders' published vectors, naming inconsistent ones.

    Raises NotEnoughShares below 2t + 1 + f publishers and InconsistentShares when no degree-2t
    polynomial agrees with 2t + 1 + f of them (step 3 of the module docstring).
    """
    return statistics_from_reconstruction(shamir.reconstruct(published, 2 * degree, max_faulty), owners, params)


def statistics_from_reconstruction(
    result: shamir.Reconstruction, owners: Iterable[int], params: SketchParams
) -> ValidationStatistics:
    """The statistics a reconstruction decided (order of `statistic_pairs`), in update units, range-checked:
    shared by today's degree-2t path and `smpc.beaver`'s degree-t one, so both read the field alike."""
    pairs = statistic_pairs(owners)
    values = field.to_signed(result.secret)
    assert values.shape == (len(pairs),), "published vectors do not match the owners"
    norm_bound, distance_bound = params.max_norm_fixed**2, 4 * params.max_norm_fixed**2
    out_of_range = tuple(
        (i, j)
        for (i, j), value in zip(pairs, values.tolist(), strict=True)
        if not 0 <= value <= (norm_bound if i == j else distance_bound)
    )
    unit = params.scale**2
    return ValidationStatistics(
        norms_sq={i: v / unit for (i, j), v in zip(pairs, values.tolist(), strict=True) if i == j},
        distances_sq={(i, j): v / unit for (i, j), v in zip(pairs, values.tolist(), strict=True) if i != j},
        out_of_range=out_of_range,
        inconsistent_publishers=result.inconsistent_ids,
        checked=result.checked,
    )


def sum_shares(sketch_shares: Mapping[int, FieldArray], accepted: Iterable[int]) -> FieldArray:
    """A holder's degree-t share of the sum of the accepted sketches (published after unmasking)."""
    return field.sum_mod(np.stack([sketch_shares[owner] for owner in sorted(accepted)]), axis=0)


def reconstruct_sketch_sum(
    published: Mapping[int, FieldArray], degree: int, max_faulty: int
) -> tuple[npt.NDArray[np.int64], shamir.Reconstruction]:
    """The sum of the accepted sketches, from holders' `sum_shares` (t + 1 + f of them on one polynomial),
    with inconsistent publishers."""
    result = shamir.reconstruct(published, degree, max_faulty)
    return field.to_signed(result.secret), result


def identity_deviation(
    sketch_sum: npt.NDArray[np.int64],
    unmasked_total: RingArray,
    sketch: CountSketch,
    params: SketchParams,
    quant: QuantParams,
    accepted_count: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per sketch coordinate: the accepted sketches' sum minus the sketch of the unmasked sum (in sketch units),
    and the rounding it may differ by (one stochastic rounding below 1 per accepted sketch, plus float slack).

    The sketch of the unmasked sum is taken bucket by bucket mod 2^32 and read signed: exactly the sum of the
    members' own blame checks (`smpc.blame.own_check_passes`), so a failure here is always traced to a member or
    a pair, never to a wrap that the own checks do not see (red team B9). Honest bucket sums never wrap:
    `smpc.blame.sums_cannot_wrap`."""
    exact = sketch.apply(field.ring_view_signed(unmasked_total))
    wrapped = (exact + _HALF_RING) % (2 * _HALF_RING) - _HALF_RING
    expected = wrapped * (params.scale / quant.scale)
    return sketch_sum - expected, accepted_count + 1e-9 * np.abs(expected)


def linear_identity_holds(
    sketch_sum: npt.NDArray[np.int64],
    unmasked_total: RingArray,
    sketch: CountSketch,
    params: SketchParams,
    quant: QuantParams,
    accepted_count: int,
) -> bool:
    """Whether the accepted sketches add up to the sketch of the unmasked sum, up to rounding."""
    deviation, tolerance = identity_deviation(sketch_sum, unmasked_total, sketch, params, quant, accepted_count)
    return bool(np.all(np.abs(deviation) <= tolerance))
