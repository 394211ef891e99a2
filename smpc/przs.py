"""Pseudo-random zero sharing (PRZS, Cramer, Damgard and Ishai, TCC 2005): zero shares nobody deals.

Why. A holder publishes its degree-2t share of every validation statistic plus a share of a degree-2t
sharing of zero, so that the published polynomial reveals its constant term only. When each member
dealt its own zero sharing, nothing checked that it shared zero: a dealer that shared c instead shifted
every reconstructed statistic by c, consistently at every holder, so no cross-check could see it. Here
no one deals a zero sharing. For every t-subset A of the members there is a key r_A known to every member
outside A and to no member of A; holder h computes its zero share alone, from the keys it knows:

    Z(h) = sum over t-subsets A not containing h of  F_A(x_h) * sum_{j=1..t} c_{A,j} x_h^j,

where c_{A,j} = PRG(r_A) and F_A is the degree-t polynomial with F_A(0) = 1 and F_A(x_a) = 0 for a in A.
Every term F_A(x) * sum_j c_{A,j} x^j has degree <= 2t and constant term 0, and vanishes at the members
of A (who do not know r_A and need not), so the Z(h) are points of one polynomial of degree <= 2t with
Z(0) = 0 whatever anyone does: a member can publish a wrong point (a lie the reconstruction sees as an
inconsistent publisher), never an offset that all points share.

Privacy. t colluders C know every r_A except those with A containing C; the terms of those keys are
pseudo-random polynomials spanning all degree-2t polynomials that vanish at 0 and on C, so the published
polynomial is uniformly random apart from its constant term and its values at C (which C computes
anyway). That is the t-privacy of CDI's PRZS; it needs only one key r_C unknown to C.

Keys. r_A = H(A, contributions), one 32-byte contribution from each member outside A that dealt this
round (`SecureRound`). A member sends its contribution for A to every other member outside A, with a
signed list of commitments H(A, contribution) to all its contributions, whose hash goes on the ledger in
its `dealt` transaction: every holder that accepts a contribution holds the same one, and a contribution
that does not match its commitment is a protocol violation of its sender. For colluders C the key r_C
contains an honest member's contribution as long as one honest member outside C dealt.

Cost. Holder h expands C(N - 1, t) keys into t field elements per statistic: at N = 10, t = 3, 84 keys
and 13,860 elements per round. The number of subsets grows as C(N, t), so genesis bounds it
(`MAX_SUBSETS`): this is for consortia of a few tens of members, not thousands.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from smpc import field
from smpc.field import FieldArray
from smpc.prg import SeededRandomBytes

KEY_BYTES = 32
MAX_SUBSETS = 20_000
"""Most t-subsets of the members a genesis may imply (C(N, t)); C(16, 5) = 4,368 and C(18, 6) = 18,564."""

Subset = tuple[int, ...]


def subsets(members: Sequence[int], degree: int) -> list[Subset]:
    """Every `degree`-subset of `members`, in lexicographic order of sorted member ids."""
    return list(itertools.combinations(sorted(members), degree))


def dealt_subsets(members: Sequence[int], degree: int, dealer: int) -> list[Subset]:
    """The subsets `dealer` contributes a key share to: those that do not contain it."""
    return [a for a in subsets(members, degree) if dealer not in a]


def shared_subsets(members: Sequence[int], degree: int, dealer: int, holder: int) -> list[Subset]:
    """The subsets whose contribution `dealer` sends `holder`: neither is in them."""
    return [a for a in subsets(members, degree) if dealer not in a and holder not in a]


def _tag(chain_id: bytes, round_id: int, kind: bytes, subset: Subset) -> bytes:
    """Domain tag, chain, round, then the subset: a holder hashes C(N - 2, t) of these per dealer per round, so
    both halves are remembered (their encoding took half the time of a commitment)."""
    return _tag_prefix(chain_id, round_id, kind) + _subset_bytes(subset)


@functools.lru_cache(maxsize=64)
def _tag_prefix(chain_id: bytes, round_id: int, kind: bytes) -> bytes:
    return b"fednode/validation/v1/przs-" + kind + len(chain_id).to_bytes(2, "big") + chain_id + round_id.to_bytes(8, "big")


@functools.lru_cache(maxsize=MAX_SUBSETS)
def _subset_bytes(subset: Subset) -> bytes:
    return len(subset).to_bytes(2, "big") + b"".join(a.to_bytes(2, "big") for a in subset)


def commitment(chain_id: bytes, round_id: int, subset: Subset, dealer: int, contribution: bytes,
               domain: bytes = b"") -> bytes:
    """H(subset, dealer, contribution): binds a dealer to the one contribution every holder must receive.
    `domain` separates other uses of per-subset keys (`smpc.beaver`'s preprocessing) from the statistics'
    zero sharing, whose tags (domain empty) it leaves as they were."""
    assert len(contribution) == KEY_BYTES, "contributions are 32 bytes"
    return hashlib.sha256(_tag(chain_id, round_id, domain + b"commit", subset) + dealer.to_bytes(2, "big")
                          + contribution).digest()


def subset_key(chain_id: bytes, round_id: int, subset: Subset, contributions: Mapping[int, bytes],
               domain: bytes = b"") -> bytes:
    """r_A from the contributions of the members outside A that dealt, in increasing member order (`domain`
    as in `commitment`)."""
    assert not set(contributions) & set(subset), "a member of A cannot contribute to r_A"
    body = b"".join(d.to_bytes(2, "big") + contributions[d] for d in sorted(contributions))
    return hashlib.sha256(_tag(chain_id, round_id, domain + b"key", subset) + body).digest()


def vanishing_weight(subset: Subset, x: int) -> int:
    """F_A(x) = prod_{a in A} (x - x_a) / (0 - x_a), with x_a = a + 1: 1 at zero, 0 on A."""
    value = 1
    for a in subset:
        value = value * (x - (a + 1)) % field.P * _negated_inverse(a + 1) % field.P
    return value


@functools.lru_cache(maxsize=1024)
def _negated_inverse(x: int) -> int:
    """1 / (0 - x) in GF(p), remembered: a modular exponentiation per subset member dominated `zero_share`."""
    return field.inv(-x)


def zero_share(keys: Mapping[Subset, bytes], holder: int, degree: int, count: int) -> FieldArray:
    """Holder `holder`'s share (at x = holder + 1) of a pseudo-random degree-2t sharing of `count` zeros,
    from the keys of every subset not containing it: one weighted sum over all keys' coefficients, weight
    F_A(x) x^j for coefficient j of subset A."""
    ordered = sorted(keys)
    if not ordered or degree == 0:
        return np.zeros(count, dtype=np.uint64)
    rows = key_elements([keys[subset] for subset in ordered], degree * count)
    return zero_share_from_coefficients(dict(zip(ordered, rows.reshape(len(ordered), degree, count), strict=True)),
                                        holder)


def zero_share_from_coefficients(coefficients: Mapping[Subset, FieldArray], holder: int) -> FieldArray:
    """`zero_share` from each subset's expanded coefficients c_{A,1..t} (one (t, count) array per subset) rather
    than its key: for a caller that must say what a share would be under coefficients no key is known for (a
    privacy proof exhibits the r_C explaining a view)."""
    x = holder + 1
    ordered = sorted(coefficients)
    assert ordered and all(holder not in subset for subset in ordered), "a holder has no key for a subset with it"
    degree = coefficients[ordered[0]].shape[0]
    powers = [pow(x, j, field.P) for j in range(1, degree + 1)]
    weights = np.array([vanishing_weight(subset, x) * power % field.P for subset in ordered for power in powers],
                       dtype=np.uint64)
    stacked = np.concatenate([coefficients[subset] for subset in ordered])
    return field.sum_mod(field.mul(stacked, weights[:, None]), axis=0)


def key_elements(keys: list[bytes], count: int) -> FieldArray:
    """`field.random_elements(SeededRandomBytes(key), count)` for each key, one row per key: the keystreams
    are read and masked all at once, and only a key whose first draw hit the rejected value p (probability
    about count 2^-61) is drawn again on its own, exactly as `random_elements` would."""
    raw = b"".join(SeededRandomBytes(key)(8 * count) for key in keys)
    rows = np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(len(keys), count) & np.uint64(field.P)
    for row in np.flatnonzero((rows == np.uint64(field.P)).any(axis=1)):
        rows[row] = field.random_elements(SeededRandomBytes(keys[row]), count)
    return rows
