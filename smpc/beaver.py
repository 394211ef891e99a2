"""Validation statistics that correct f lying holders at N = 3f + 1, t_v = f (issue 14): Beaver-style masking.

Why. Today's statistics (`smpc.validation.local_statistics`) are degree-2t products of the sketch shares; at
N = 3f + 1 a degree-2f opening has f redundant points, so f liars are detected but neither corrected nor named.
Here the only degree-2t opening is of RANDOM data, which can be revealed when it fails, and every opening that
depends on the sketches is of degree t, which N = 3f + 1 points correct (t + 1 + 2f <= N).

The protocol, for holders 0..N-1 (share id x_h = h + 1), owners O (m sketches of width k) and the statistics of
`smpc.validation.statistic_pairs` (one per pair, s = m (m + 1) / 2 of them), with T(v) the statistics of
vectors v (||v_a||^2 on the diagonal, ||v_a - v_b||^2 off it: a quadratic form, so
T(u + v) = T(u) + T(v) + 2 B(u, v) with B bilinear):

1. PRSS (Cramer, Damgard, Ishai). Per t-subset A a key r_A, known to the members outside A, hashed from one
   32-byte contribution of each dealer outside A, under a domain of this attempt's own (so revealing them in an
   audit reveals no other key). Holder h's share of a random vector is sum_{A not containing h} F_A(x_h) PRG(r_A)
   (F_A of degree t, 1 at zero, 0 on A): points of one degree-t polynomial whose secret sum_A PRG(r_A) holds
   PRG(r_C) for every t-coalition C, so it is uniform to C. One stream gives r_i (k each) and rho (s).
2. Preprocessing. Holder h publishes e_h = T([r]_h) - [rho]_h + Z_h (Z a PRZS degree-2t zero share from keys of
   a second domain): points of a degree-2t polynomial with constant E = T(r) - rho. All N points must agree
   (2t + 1 + f = N): then E is correct, and [T(r)]_h = E + [rho]_h is a degree-t sharing. Otherwise every
   contribution of the attempt is revealed, checked against its commitment, every e_h recomputed, and each
   holder whose published e_h differs is convicted (`audit`); a new attempt draws new contributions.
3. Online (only once E is decided, so that an audit reveals random data only). Holder h publishes
   D_h = [s]_h - [r]_h (m k elements, with its digest on the ledger so that it is one value for every receiver);
   D = s - r is decoded per owner, correcting up to f wrong holders, and reveals nothing (r_i is uniform to any
   t-coalition).
4. Statistics. T(s) = T(D + r) = T(D) + 2 B(D, r) + T(r), linear in the shares of r and T(r) once D is public.
   Holder h publishes T(D + [r]_h) - T([r]_h) + E + [rho]_h (the quadratic terms in [r]_h cancel exactly), a
   degree-t share of T(s), decoded correcting f liars: the same field elements as today's path.

Conventions: holder-side functions take the holder's member index h (as `smpc.przs`); decoders take
publications keyed by share id x_h = h + 1 (as `smpc.shamir` and `smpc.validation`). Proofs and costs:
docs/validation.md, "Correcting lying holders at N = 3f + 1".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smpc import field, przs, shamir
from smpc.errors import InconsistentShares, NotEnoughShares, SmpcError
from smpc.field import FieldArray
from smpc.validation import (
    SketchParams,
    ValidationStatistics,
    local_statistics,
    statistic_pairs,
    statistics_from_reconstruction,
)

Contributions = Mapping[int, Mapping[przs.Subset, bytes]]
"""Dealer -> subset -> 32-byte contribution, for the subsets not containing the dealer."""


class AuditIncomplete(SmpcError):
    """No revealed contribution matched a committed one: the audit cannot recompute the holders' publications.
    Every member outside A and the dealer received it, so at least one honest member reveals it unless the
    dealer never delivered it (a complaint of the sketch phase, G8, not this core)."""

    def __init__(self, missing: Sequence[tuple[int, przs.Subset]]) -> None:
        super().__init__(f"no valid reveal for (dealer, subset) {list(missing)[:5]}")
        self.missing = tuple(missing)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One preprocessing attempt of one round: its contributions' commitments and keys are bound to all three."""

    chain_id: bytes
    round_id: int
    number: int

    def domain(self, kind: bytes) -> bytes:
        """przs tag domain: the attempt, then which of the two keys (PRSS, PRZS) or the commitment."""
        return b"beaver/" + self.number.to_bytes(2, "big") + b"/" + kind + b"-"


@dataclass(frozen=True, slots=True)
class Layout:
    """What one attempt draws: a random vector of `width` per owner, then one rho per statistic."""

    owners: tuple[int, ...]
    width: int

    @property
    def statistic_count(self) -> int:
        return len(statistic_pairs(self.owners))

    @property
    def element_count(self) -> int:
        return len(self.owners) * self.width + self.statistic_count


@dataclass(frozen=True, slots=True)
class Randomness:
    """A holder's degree-t shares of one attempt's r (one row per owner) and rho, and its PRZS zero share."""

    r: FieldArray
    rho: FieldArray
    zero: FieldArray


@dataclass(frozen=True, slots=True)
class Keys:
    """A holder's keys of one attempt: PRSS (r, rho) and PRZS (the preprocessing's zero share) per subset."""

    prss: Mapping[przs.Subset, bytes]
    przs: Mapping[przs.Subset, bytes]


@dataclass(frozen=True, slots=True)
class Differences:
    """D_i = s_i - r_i for every owner whose points fit one degree-t polynomial, and what decoding found."""

    values: Mapping[int, FieldArray]
    off_polynomial: Mapping[int, tuple[int, ...]]
    """Owner -> share ids off its D polynomial: liars, or holders its dealer shifted (not a proof)."""
    undecodable: tuple[int, ...]
    """Owners whose D no degree-t polynomial fits with t + 1 + f points: with at most f faulty members, the owner
    dealt off its polynomial (an honest dealer's D has at most f wrong points)."""


@dataclass(frozen=True, slots=True)
class AuditResult:
    """The verdict of a failed preprocessing opening."""

    convicted: tuple[int, ...]
    """Holders (member indices) whose signed e_h differs from the deterministic function of committed
    contributions."""
    silent: tuple[int, ...]
    """Holders (member indices) that published nothing (named by the deadline, as G7 does, not convicted)."""


def contribution_commitment(attempt: Attempt, subset: przs.Subset, dealer: int, contribution: bytes) -> bytes:
    """H(attempt, subset, dealer, contribution), what a dealer signs before sending its contributions."""
    return przs.commitment(attempt.chain_id, attempt.round_id, subset, dealer, contribution, attempt.domain(b"c"))


def holder_keys(attempt: Attempt, members: Sequence[int], degree: int, holder: int,
                contributions: Contributions) -> Keys:
    """Keys of every t-subset not containing `holder`, each from the contributions of all dealers outside it (the
    dealers the ledger fixed, as `audit` uses; the holder's `contributions` hold its own and those received)."""
    prss_keys, przs_keys = {}, {}
    for subset in przs.dealt_subsets(members, degree, holder):
        dealt = {d: by_subset[subset] for d, by_subset in contributions.items() if d not in subset}
        prss_keys[subset] = przs.subset_key(attempt.chain_id, attempt.round_id, subset, dealt, attempt.domain(b"r"))
        przs_keys[subset] = przs.subset_key(attempt.chain_id, attempt.round_id, subset, dealt, attempt.domain(b"z"))
    return Keys(prss_keys, przs_keys)


def prss_streams(keys: Mapping[przs.Subset, bytes], layout: Layout) -> dict[przs.Subset, FieldArray]:
    """PRG(r_A) per subset: the field elements of r (owner by owner) then rho."""
    ordered = sorted(keys)
    rows = przs.key_elements([keys[subset] for subset in ordered], layout.element_count)
    return dict(zip(ordered, rows, strict=True))


def zero_coefficients(keys: Mapping[przs.Subset, bytes], layout: Layout, degree: int) -> dict[przs.Subset, FieldArray]:
    """The PRZS coefficients c_{A,1..t} of the preprocessing's zero sharing, (t, s) per subset."""
    ordered = sorted(keys)
    rows = przs.key_elements([keys[subset] for subset in ordered], degree * layout.statistic_count)
    return {subset: row.reshape(degree, layout.statistic_count) for subset, row in zip(ordered, rows, strict=True)}


def randomness(streams: Mapping[przs.Subset, FieldArray], zeros: Mapping[przs.Subset, FieldArray], holder: int,
               layout: Layout) -> Randomness:
    """A holder's shares from expanded streams: sum_A F_A(x_h) PRG(r_A) over the subsets A without the holder."""
    ordered = [subset for subset in sorted(streams) if holder not in subset]
    weights = np.array([przs.vanishing_weight(subset, holder + 1) for subset in ordered], dtype=np.uint64)
    share = field.sum_mod(field.mul(np.stack([streams[a] for a in ordered]), weights[:, None]), axis=0)
    split = len(layout.owners) * layout.width
    zero = przs.zero_share_from_coefficients({a: zeros[a] for a in ordered}, holder)
    return Randomness(share[:split].reshape(len(layout.owners), layout.width), share[split:], zero)


def holder_randomness(keys: Keys, holder: int, layout: Layout, degree: int) -> Randomness:
    """What holder h computes alone from its keys of one attempt."""
    return randomness(prss_streams(keys.prss, layout), zero_coefficients(keys.przs, layout, degree), holder, layout)


def _statistics(rows: FieldArray, layout: Layout, zero: FieldArray | None = None) -> FieldArray:
    """T(rows), plus an optional zero share, through today's `local_statistics` (the same field elements)."""
    padding = np.zeros(layout.statistic_count, dtype=np.uint64) if zero is None else zero
    return local_statistics(dict(zip(layout.owners, rows, strict=True)), padding)


def preprocessing_share(rand: Randomness, layout: Layout) -> FieldArray:
    """e_h = T([r]_h) - [rho]_h + Z_h: a degree-2t point of E = T(r) - rho, random beyond E and one's own point."""
    return field.sub(_statistics(rand.r, layout, rand.zero), rand.rho)


def open_preprocessing(published: Mapping[int, FieldArray], layout: Layout, degree: int,
                       max_faulty: int) -> FieldArray:
    """E from the e_h (keyed by share id), decided only by a degree-2t polynomial through 2t + 1 + f of them.

    At N = 3f + 1 that is every holder: with fewer points, or any inconsistent, this raises NotEnoughShares or
    InconsistentShares and the caller audits the attempt. A decided E is correct: 2t + 1 honest points lie on it.
    """
    _check_shapes(published, (layout.statistic_count,))
    return shamir.reconstruct(published, 2 * degree, max_faulty).secret


def audit(attempt: Attempt, members: Sequence[int], degree: int, layout: Layout,
          commitments: Mapping[int, Mapping[przs.Subset, bytes]],
          reveals: Iterable[tuple[int, przs.Subset, bytes]],
          published: Mapping[int, FieldArray]) -> AuditResult:
    """Convict every holder whose published e_h (keyed by share id) is not the one its committed keys give.

    `commitments` are each dealer's signed commitments of this attempt; `reveals` (dealer, subset, contribution)
    come from anyone (the dealer or a holder it sent them to) and count only if they match the commitment, so a
    silent dealer does not block the audit and a lying revealer changes nothing. An honest holder's e_h is a
    function of committed contributions alone, so it is never convicted.
    """
    accepted = _accepted_reveals(attempt, commitments, reveals)
    streams = prss_streams(_all_keys(attempt, members, degree, accepted, b"r"), layout)
    zeros = zero_coefficients(_all_keys(attempt, members, degree, accepted, b"z"), layout, degree)
    convicted = tuple(h for h in sorted(members) if h + 1 in published and not np.array_equal(
        published[h + 1], preprocessing_share(randomness(streams, zeros, h, layout), layout)))
    return AuditResult(convicted, tuple(h for h in sorted(members) if h + 1 not in published))


def _accepted_reveals(attempt: Attempt, commitments: Mapping[int, Mapping[przs.Subset, bytes]],
                      reveals: Iterable[tuple[int, przs.Subset, bytes]]) -> dict[int, dict[przs.Subset, bytes]]:
    """The revealed contributions that open their dealer's commitment; AuditIncomplete if one has none."""
    accepted: dict[int, dict[przs.Subset, bytes]] = {d: {} for d in commitments}
    for dealer, subset, contribution in reveals:
        expected = commitments.get(dealer, {}).get(subset)
        if (expected is not None and len(contribution) == przs.KEY_BYTES
                and contribution_commitment(attempt, subset, dealer, contribution) == expected):
            accepted[dealer][subset] = contribution
    missing = [(d, a) for d, by_subset in commitments.items() for a in by_subset if a not in accepted[d]]
    if missing:
        raise AuditIncomplete(missing)
    return accepted


def _all_keys(attempt: Attempt, members: Sequence[int], degree: int, contributions: Contributions,
              kind: bytes) -> dict[przs.Subset, bytes]:
    """Every subset's key of one kind, from every committing dealer outside it."""
    return {subset: przs.subset_key(attempt.chain_id, attempt.round_id, subset,
                                    {d: c[subset] for d, c in contributions.items() if d not in subset},
                                    attempt.domain(kind))
            for subset in przs.subsets(members, degree)}


def difference_share(sketch_shares: Mapping[int, FieldArray], rand: Randomness, layout: Layout) -> FieldArray:
    """D_h = [s_i]_h - [r_i]_h, one row per owner: degree-t points, uniform to any t-coalition."""
    assert tuple(sorted(sketch_shares)) == layout.owners, "sketch shares for other owners than the attempt's"
    return field.sub(np.stack([sketch_shares[owner] for owner in layout.owners]), rand.r)


def difference_digest(attempt: Attempt, holder: int, differences: FieldArray) -> bytes:
    """H(attempt, holder, D_h): what a holder puts on the ledger for its D_h, which travels on direct streams. Every
    receiver then decodes the same points (the set the ledger fixed, each checked against its digest): without it a
    Byzantine owner and holders sending each receiver other values make receivers decode different D, and the
    honest statistic shares lie on different polynomials."""
    tag = (b"fednode/validation/v1/beaver-differences" + len(attempt.chain_id).to_bytes(2, "big") + attempt.chain_id
           + attempt.round_id.to_bytes(8, "big") + attempt.number.to_bytes(2, "big") + holder.to_bytes(2, "big"))
    return hashlib.sha256(tag + np.asarray(differences, dtype="<u8").tobytes()).digest()


def decode_differences(published: Mapping[int, FieldArray], layout: Layout, degree: int,
                       max_faulty: int) -> Differences:
    """D_i for each owner from the holders' D_h (keyed by share id), correcting up to f wrong holders.

    Decided per owner by `shamir.reconstruct` with `max_faulty` = f: a polynomial through t + 1 + f points has
    t + 1 honest ones. With N points, any two such polynomials share 2 (t + 1 + f) - N >= t + 1 points when
    N <= t + 1 + 2f (N = 3f + 1, t = f), so whoever decodes the same published points decodes the same D even
    for a dishonest owner; and an honest owner's D, wrong in at most f points, always has N - f >= t + 1 + f.
    Owners are decoded separately because a dealer's shifted shares are wrong for its own D only. Raises
    NotEnoughShares below t + 1 + f publications.
    """
    _check_shapes(published, (len(layout.owners), layout.width))
    values, off, undecodable = {}, {}, []
    for row, owner in enumerate(layout.owners):
        try:
            result = shamir.reconstruct({x: points[row] for x, points in published.items()}, degree, max_faulty)
        except InconsistentShares:
            undecodable.append(owner)
            continue
        values[owner] = result.secret
        off[owner] = result.inconsistent_ids
    return Differences(values, off, tuple(undecodable))


def statistic_share(differences: Mapping[int, FieldArray], rand: Randomness, opened: FieldArray,
                    layout: Layout) -> FieldArray:
    """Holder h's degree-t share of T(s) over the owners of `differences` (all decoded, or those left):
    T(D + [r]_h) - T([r]_h) + E + [rho]_h, with E the opened preprocessing."""
    owners = tuple(sorted(differences))
    assert owners, "statistics of no owner"
    keep = [row for row, owner in enumerate(layout.owners) if owner in differences]
    assert len(keep) == len(owners), "differences for an owner outside the attempt"
    sub = Layout(owners, layout.width)
    shares_of_r = rand.r[keep]
    masked = field.add(np.stack([differences[owner] for owner in owners]), shares_of_r)
    index = {pair: position for position, pair in enumerate(statistic_pairs(layout.owners))}
    chosen = np.array([index[pair] for pair in statistic_pairs(owners)], dtype=np.intp)
    shares_of_t = field.add(opened[chosen], rand.rho[chosen])
    return field.add(field.sub(_statistics(masked, sub), _statistics(shares_of_r, sub)), shares_of_t)


def reconstruct_statistics(published: Mapping[int, FieldArray], owners: Iterable[int], degree: int,
                           params: SketchParams, max_faulty: int) -> ValidationStatistics:
    """The statistics from the holders' `statistic_share`s (keyed by share id): degree t, so at N = 3f + 1 up to
    f liars are corrected and listed (`inconsistent_publishers`), the same shape as
    `smpc.validation.reconstruct_statistics`. Raises NotEnoughShares below t + 1 + f publishers.

    The listed publishers are faulty whenever at most f members are (every honest share lies on the decided
    polynomial: it depends on the sketches only through the public D), but that is not a proof anyone can check
    alone: nothing published lets a verifier recompute [r]_h without learning r, hence the sketches."""
    owners = list(owners)
    _check_shapes(published, (len(statistic_pairs(owners)),))
    return statistics_from_reconstruction(shamir.reconstruct(published, degree, max_faulty), owners, params)


def _check_shapes(published: Mapping[int, FieldArray], shape: tuple[int, ...]) -> None:
    """Publications are parsed by the caller to the expected size (a peer's wrong size is its violation there);
    a wrong one here is our bug."""
    assert all(v.shape == shape for v in published.values()), "publication of the wrong size"
    if not published:
        raise NotEnoughShares("no publication")
