"""Naming the member whose masked input contradicts its sketch or its committed weight (docs/validation.md,
"Blame after a failed identity").

After unmasking S, every honest node sees the same failure: the weight coordinate differs from the committed
weights' sum, and/or the accepted sketches' sum differs from the sketch of the unmasked sum. The failure
(`locate_failure`) is the weight flag and b*, the failing sketch coordinate with the largest |deviation|
(smallest index on ties; none if only the weight failed). Then every member i of S discloses, for each other
j in S, the two scalars its pairwise mask with j contributes to what failed,

    w_ij = PRG(s_ij)[last]        t_ij = (Sketch · PRG(s_ij))[b*]   (mod 2^32),

and every holder discloses its Shamir shares of z_l[b*] for every l in S (`disclose`). Pairs with a member
outside S are public: the mask keys of the dropped members were reconstructed to unmask.

The verdict (`verdict`) checks each member l of S on ITS OWN disclosures alone. Member l masked
y_l = q_l + PRG(b_l) + sum_{j > l} PRG(s_lj) - sum_{j < l} PRG(s_lj), and its self seed b_l was reconstructed to
unmask, so with R(v) = (Sketch · v[:-1])[b*] mod 2^32 (linear):

    omega_l = y_l[last] - PRG(b_l)[last] - sum_j ±w_lj   must equal l's committed quantized weight (mod 2^32);
    sx_l    = R(y_l) - R(PRG(b_l)) - sum_j ±t_lj          must satisfy |alpha · sx_l - z_l[b*]| <= 1 (+ float slack),

alpha = sketch scale / quantization scale, sx_l read as a signed 32-bit integer. An honest member passes: its
scalars are the true ones, so omega_l and sx_l are its true weight and R(q_l), and its sketch is
round(alpha · S q_l) (unclipped, the many-sigma event of `smpc.validation`), so |alpha R(q_l)| < 2^31 alpha and
the rounding moved it by less than 1. A member that fails is CONVICTED: the check depends only on its own signed
disclosures, its committed weight and sketch shares, and its reconstructed seed.

If nobody fails their own check and every pair agrees (w_ij = w_ji, t_ij = t_ji), the pair terms cancel in the
sum over S: the weights add up to the unmasked weight, and the members' sx_l to R(total), each within 1 of
z_l[b*] / alpha, so the global check could not have failed at b*. So a failure with nobody convicted shows a
pair that disagrees: a DISPUTE (i, j), where one end lies about s_ij, and which one cannot be told without
revealing s_ij. Honest members never dispute with each other (both compute the same s_ij and PRG).

Everything but the pair scalars is public once S is unmasked: each member's base scalars (`base_scalars`, which
the `fail` carries and every replica confirms), its committed weight, and z_l[b*], so the verdict is a function of
the ledger alone (`Ledger`, `verdict`). A member of S that did not disclose is absent from it; its disclosure,
whenever it comes, is judged the same way (`judge_late`). Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from smpc import field, shamir
from smpc.errors import InconsistentShares, MalformedMessage, NotEnoughShares
from smpc.field import FieldArray, RingArray
from smpc.prg import MaskGenerator
from smpc.quantize import QuantParams
from smpc.sketch import CountSketch
from smpc.validation import SketchParams

_RING = field.RING_MODULUS
_PAIR_BYTES = 8
_SHARE_BYTES = 8
MISSING_SHARE = (1 << 64) - 1
"""A disclosed share of z_l[b*] its holder does not have (l never dealt it a valid share): outside GF(p)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """What failed after unmasking, identically at every honest node."""

    weight: bool
    """The unmasked weight coordinate differs from the committed weights' sum."""
    coordinate: int | None
    """b*: the failing sketch coordinate of largest |deviation|, smallest on ties; None if none failed."""


@dataclass(frozen=True, slots=True)
class SketchRow:
    """Row b* of the count sketch: the coordinates that go to bucket b* with sign +1, and with sign -1."""

    coordinate: int
    plus: npt.NDArray[np.intp]
    minus: npt.NDArray[np.intp]

    @classmethod
    def of(cls, sketch: CountSketch, coordinate: int) -> SketchRow:
        assert 0 <= coordinate < sketch.width, "sketch coordinate out of range"
        buckets = sketch.signed_buckets
        return cls(coordinate, np.flatnonzero(buckets == coordinate),
                   np.flatnonzero(buckets == coordinate + sketch.width))

    def apply(self, vector: RingArray) -> int:
        """(Sketch · vector)[b*] mod 2^32 for a ring vector (its weight coordinate, past the sketch, unread)."""
        plus, minus = vector[self.plus].astype(np.int64), vector[self.minus].astype(np.int64)  # ~d / k words each
        return int(plus.sum() - minus.sum()) % _RING


@dataclass(frozen=True, slots=True)
class PairScalars:
    """What a pairwise mask PRG(s_ij) contributes to the failed checks, mod 2^32."""

    weight: int
    sketch: int


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One node's signed blame disclosure: its pair scalars with every other member of S (if it is in S) and
    its shares of z_l[b*] for every l in S (if it holds sketch shares; `MISSING_SHARE` for one it lacks)."""

    pairs: Mapping[int, PairScalars]
    shares: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class BlameCase:
    """What unmasking S made public at every node and the base scalars are computed from (`base_scalars`, for the
    `fail`), participant ids throughout."""

    masked: Mapping[int, RingArray]
    self_seeds: Mapping[int, bytes]
    dropped_pair_seeds: Mapping[tuple[int, int], bytes]
    """(dropped d, survivor j) -> s_dj, as `smpc.masking.unmask_sum` takes them."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who the disclosures name: members failing their own check, disagreeing pairs among the cleared, the
    survivors that did not disclose, and those whose sketch check waits for z_l[b*] to decode (`undecided`:
    neither cleared nor convicted, judged once more holders disclose, `judge_late`)."""

    convicted: tuple[int, ...]
    disputes: tuple[tuple[int, int], ...]
    absent: tuple[int, ...]
    undecided: tuple[int, ...] = ()

    @property
    def names_anyone(self) -> bool:
        return bool(self.convicted or self.disputes or self.absent)


def locate_failure(weight_ok: bool, deviation: npt.NDArray[np.float64] | None,
                   tolerance: npt.NDArray[np.float64] | None) -> Failure | None:
    """The failure from the weight check and `smpc.validation.identity_deviation` (None: nothing failed)."""
    coordinate = None
    if deviation is not None and tolerance is not None:
        excess = np.where(np.abs(deviation) > tolerance, np.abs(deviation), -1.0)
        if excess.size and excess.max() >= 0:
            coordinate = int(np.argmax(excess))
    if weight_ok and coordinate is None:
        return None
    return Failure(not weight_ok, coordinate)


def _sign(owner: int, other: int) -> int:
    """The sign with which `owner` added its mask with `other` (`smpc.masking.mask_input`)."""
    return 1 if other > owner else -1


def pair_scalars(seed: bytes, row: SketchRow | None, generator: MaskGenerator) -> PairScalars:
    mask = generator.expand(seed)
    return PairScalars(int(mask[-1]), row.apply(mask) if row is not None else 0)


def disclose(pair_seeds: Mapping[int, bytes], survivors: Iterable[int], row: SketchRow | None,
             generator: MaskGenerator, sketch_shares: Mapping[int, FieldArray]) -> Disclosure:
    """This node's disclosure: pair scalars with every other survivor (`pair_seeds`: its own pairwise keys, empty
    if it is not a survivor) and, from its shares of the survivors' sketches, their entry b* (none if only the
    weight failed)."""
    survivors = frozenset(survivors)
    pairs = {j: pair_scalars(seed, row, generator) for j, seed in sorted(pair_seeds.items()) if j in survivors}
    shares = {} if row is None else {owner: int(sketch_shares[owner][row.coordinate]) if owner in sketch_shares
                                     else MISSING_SHARE for owner in sorted(survivors)}
    return Disclosure(pairs, shares)


def paired_with(member: int, survivors: Iterable[int], disputed: Iterable[tuple[int, int]]) -> list[int]:
    """The survivors `member` shares a pairwise mask with, in increasing order: all others but its disputed
    partners (`smpc.secagg.SecAggParticipant.exclude_pairs`); none if it is not a survivor."""
    survivors = set(survivors)
    partners = {j for pair in disputed if member in pair for j in pair}
    return sorted(survivors - partners - {member}) if member in survivors else []


def check_disclosure(member: int, disclosure: Disclosure, survivors: frozenset[int], holders: frozenset[int],
                     with_sketch: bool, disputed: Iterable[tuple[int, int]] = ()) -> None:
    """A disclosure must cover exactly the survivors its author shares a mask with (`paired_with`) and hold a
    share for every survivor (if its author holds sketch shares and a sketch coordinate failed), with every value
    in range (a share in GF(p), or `MISSING_SHARE`). Raises MalformedMessage naming the author."""
    expected_pairs = set(paired_with(member, survivors, disputed))
    expected_shares = survivors if member in holders and with_sketch else frozenset()
    if set(disclosure.pairs) != expected_pairs or set(disclosure.shares) != expected_shares:
        raise MalformedMessage("blame disclosure does not cover exactly the survivors", member)
    scalars = [v for p in disclosure.pairs.values() for v in (p.weight, p.sketch)]
    if not all(0 <= v < _RING for v in scalars) or \
            not all(0 <= v < field.P or v == MISSING_SHARE for v in disclosure.shares.values()):
        raise MalformedMessage("blame disclosure holds a value out of range", member)
    if not with_sketch and any(p.sketch for p in disclosure.pairs.values()):
        raise MalformedMessage("blame disclosure holds sketch scalars although no sketch coordinate failed", member)


def encode_pairs(pairs: Mapping[int, PairScalars]) -> bytes:
    """w_ij and t_ij as little-endian uint32, in increasing order of j (j itself is implied by S)."""
    return b"".join(pairs[j].weight.to_bytes(4, "little") + pairs[j].sketch.to_bytes(4, "little")
                    for j in sorted(pairs))


def decode_pairs(data: bytes, others: Iterable[int]) -> dict[int, PairScalars]:
    """Inverse of `encode_pairs` for exactly the survivors `others`; raises MalformedMessage on a wrong size."""
    ordered = sorted(others)
    if len(data) != _PAIR_BYTES * len(ordered):
        raise MalformedMessage(f"blame pairs of {len(data)} bytes, expected {_PAIR_BYTES * len(ordered)}")
    return {j: PairScalars(int.from_bytes(data[8 * n : 8 * n + 4], "little"),
                           int.from_bytes(data[8 * n + 4 : 8 * n + 8], "little"))
            for n, j in enumerate(ordered)}


def encode_shares(shares: Mapping[int, int]) -> bytes:
    return b"".join(shares[owner].to_bytes(_SHARE_BYTES, "little") for owner in sorted(shares))


def decode_shares(data: bytes, owners: Iterable[int]) -> dict[int, int]:
    """Inverse of `encode_shares` for exactly `owners`; raises MalformedMessage on a wrong size."""
    ordered = sorted(owners)
    if len(data) != _SHARE_BYTES * len(ordered):
        raise MalformedMessage(f"blame shares of {len(data)} bytes, expected {_SHARE_BYTES * len(ordered)}")
    return {owner: int.from_bytes(data[8 * n : 8 * n + 8], "little") for n, owner in enumerate(ordered)}


def decode_sketch_entries(shares: Mapping[int, Mapping[int, int]], holder_ids: Mapping[int, int],
                          survivors: Iterable[int], degree: int, max_faulty: int) -> dict[int, int]:
    """z_l[b*] for every survivor l whose entry decodes from the holders' disclosed shares (`shares`: holder ->
    owner -> share, `MISSING_SHARE` for one it lacks), each decided like the sketch sum, only by a polynomial
    agreeing with t_v + 1 + f of them (`holder_ids`: member -> its Shamir x-coordinate). A survivor left out
    is undecided: too few shares, or no such polynomial yet."""
    entries = {}
    for owner in sorted(survivors):
        points = {holder_ids[h]: field.as_field([held[owner]]) for h, held in shares.items()
                  if h in holder_ids and held.get(owner, MISSING_SHARE) != MISSING_SHARE}
        try:
            entries[owner] = int(field.to_signed(shamir.reconstruct(points, degree, max_faulty).secret)[0])
        except (NotEnoughShares, InconsistentShares):
            continue
    return entries


def base_scalars(member: int, case: BlameCase, row: SketchRow | None, generator: MaskGenerator) -> PairScalars:
    """The public part of member l's own check (what a `fail` carries, so that the verdict needs only the ledger):
    y_l[last] and R(y_l) minus its self mask and its masks with dropped members, mod 2^32. Only the pairs within
    S, which l discloses, are then missing from omega_l and sx_l."""
    masked = case.masked[member]
    weight, sketch = int(masked[-1]), row.apply(masked) if row is not None else 0
    removed = [(1, pair_scalars(case.self_seeds[member], row, generator))]
    removed += [(_sign(member, d), pair_scalars(seed, row, generator))
                for (d, j), seed in sorted(case.dropped_pair_seeds.items()) if j == member]
    for sign, scalars in removed:
        weight -= sign * scalars.weight
        sketch -= sign * scalars.sketch
    return PairScalars(weight % _RING, sketch % _RING)


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the verdict needs, all of it on the ledger: each survivor's public base scalars (`base_scalars`, from
    the `fail`), its committed quantized weight (signed) and z_l[b*] (None when only the weight failed; a survivor
    missing from it is undecided), and alpha = sketch scale / quantization scale."""

    bases: Mapping[int, PairScalars]
    weights: Mapping[int, int]
    sketch_entries: Mapping[int, int] | None
    scale_ratio: float


def own_check_passes(member: int, ledger: Ledger, pairs: Mapping[int, PairScalars]) -> bool | None:
    """Member `member`'s check on its own disclosures (module docstring): its weight exactly, and its sketch entry
    b* within one rounding of what its masked input, seed and pair scalars leave. None (undecided) when its weight
    passes but its z_l[b*] is not decoded yet: never cleared for want of shares."""
    base = ledger.bases[member]
    weight, sketch = base.weight, base.sketch
    for j, scalars in pairs.items():
        weight -= _sign(member, j) * scalars.weight
        sketch -= _sign(member, j) * scalars.sketch
    if weight % _RING != ledger.weights[member] % _RING:
        return False
    if ledger.sketch_entries is None:
        return True
    if member not in ledger.sketch_entries:
        return None
    sketch %= _RING
    signed = sketch - _RING if sketch >= _RING // 2 else sketch
    expected = ledger.scale_ratio * signed
    return abs(expected - ledger.sketch_entries[member]) <= 1 + 1e-9 * abs(expected)


def disagreeing(member: int, pairs: Mapping[int, PairScalars], others: Mapping[int, Mapping[int, PairScalars]]
                ) -> tuple[tuple[int, int], ...]:
    """The pairs (i < j) in which `member`'s disclosed scalars differ from those of partners in `others`."""
    return tuple(sorted((min(member, j), max(member, j)) for j in pairs
                        if j in others and member in others[j] and pairs[j] != others[j][member]))


def verdict(ledger: Ledger, disclosures: Mapping[int, Mapping[int, PairScalars]]) -> Verdict:
    """Convicted members (failing their own check), disputed pairs among the others, and the survivors that did
    not disclose (`absent`: the contract suspends them until they do, `judge_late`).

    `disclosures`: each committed discloser's pair scalars, already checked by `check_disclosure`. Pure and
    computed from ledger data alone, so every replica, restarted or not, finds the same."""
    survivors = sorted(ledger.bases)
    absent = tuple(m for m in survivors if m not in disclosures)
    checks = {m: own_check_passes(m, ledger, disclosures[m]) for m in survivors if m in disclosures}
    cleared = {m: disclosures[m] for m, passed in checks.items() if passed}
    disputes = sorted({pair for m in cleared for pair in disagreeing(m, cleared[m], cleared)})
    return Verdict(tuple(m for m, passed in checks.items() if passed is False), tuple(disputes), absent,
                   tuple(m for m, passed in checks.items() if passed is None))


def judge_late(member: int, ledger: Ledger, pairs: Mapping[int, PairScalars],
               cleared: Mapping[int, Mapping[int, PairScalars]]) -> Verdict:
    """A survivor judged after the verdict (it disclosed late, or its z_l[b*] decoded late): convicted if it fails
    its own check, undecided if that still waits for z_l[b*], otherwise in dispute with every cleared partner (a
    discloser that passed) whose scalars differ."""
    passed = own_check_passes(member, ledger, pairs)
    if passed is None:
        return Verdict((), (), (), (member,))
    if not passed:
        return Verdict((member,), (), ())
    return Verdict((), disagreeing(member, pairs, cleared), ())


def sums_cannot_wrap(members: int, sketch: SketchParams, quant: QuantParams) -> bool:
    """|S| (M + 1) / alpha < 2^31, |S| <= `members`: the parameter condition under which a failed identity is
    always traced. A member that passes its own check has |sx_l| <= (|z_l[b*]| + 1) / alpha <= (M + 1) / alpha
    (M bounds any coordinate of an honest sketch, `SketchParams.max_norm_fixed`), so if every member of S passes,
    the sum of the sx_l, read over the integers, is within the signed 32-bit range, equals the identity's bucket
    sum mod 2^32 read signed (`smpc.validation.identity_deviation`) and is within |S| roundings of the sketches'
    sum: the identity could not have failed there."""
    return members * (sketch.max_norm_fixed + 1) * quant.scale / sketch.scale < _RING // 2
