"""Shamir secret sharing over GF(2^61 - 1), for field vectors and 32-byte secrets.

Conventions used throughout fednode:

- `degree` is the degree t of the sharing polynomial. Any t shares reveal nothing about the secret;
  any t + 1 consistent shares determine it. "Threshold t" in the docs means this t.
- A share id is the non-zero x-coordinate where the polynomial is evaluated; participants use
  their 1-based index, so ids are small positive integers below p.
- A vector secret is shared coordinate by coordinate with independent polynomials, all evaluated at
  the same x, so a share is a vector of the same length as the secret.

Detecting inconsistent shares. With m shares of a degree-t polynomial, two different degree-t
polynomials agree on at most t points. If some polynomial agrees with a shares where 2a > m + t,
then no other degree-t polynomial agrees with as many, and when at most (m - t - 1) / 2 shares are
wrong the true polynomial always satisfies that test. `reconstruct` first tries the common case
(the first t + 1 shares explain all others). Otherwise it decodes with Berlekamp-Welch, which finds
the polynomial and up to e = floor((m - t - 1) / 2) wrong shares by solving one linear system of
size m over GF(p) (polynomial time, unlike a search over subsets). Vector shares are first
compressed to one field element each by a random linear combination whose coefficients are a
hash of all the shares (so no share holder can aim an error at them); the error positions found
on that combination are then checked on the full vectors. The shares off the polynomial are
reported by id. With exactly t + 1 shares nothing can be checked, and the result says so
(`checked` is False).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smpc import field
from smpc.errors import InconsistentShares, NotEnoughShares
from smpc.field import FieldArray, RandomBytes
from smpc.prg import SeededRandomBytes

SECRET_BYTES = 32
CHUNK_BYTES = 7
"""A 32-byte secret is cut into 7-byte (56-bit) chunks, each below p = 2^61 - 1."""
SECRET_CHUNKS = -(-SECRET_BYTES // CHUNK_BYTES)


@dataclass(frozen=True, slots=True)
class Reconstruction:
    """A reconstructed secret together with what the redundant shares told us about the others."""

    secret: FieldArray
    inconsistent_ids: tuple[int, ...]
    checked: bool


_EVALUATION_ELEMENTS = 1 << 13
"""Most field elements `share_vector` multiplies at once: holders are evaluated in groups this size bounds, so
that each temporary (64 KB) stays below glibc's mmap threshold and reuses heap memory instead of fresh pages
(at sketch size, all holders at once were slower: 1.8 against 1.5 ms at N = 10, t = 3)."""


def share_vector(secret: FieldArray, degree: int, share_ids: Sequence[int], rand: RandomBytes) -> dict[int, FieldArray]:
    """Split a vector of field elements into one share per id; any degree + 1 shares rebuild it."""
    secret = field.as_field(secret)
    _check_ids(share_ids)
    assert 0 <= degree < len(share_ids), "need more share holders than the degree"
    coefficients = field.random_elements(rand, degree * secret.size).reshape(degree, secret.size)
    group = max(1, _EVALUATION_ELEMENTS // max(1, degree * secret.size))
    shares: dict[int, FieldArray] = {}
    for start in range(0, len(share_ids), group):
        ids = list(share_ids[start : start + group])
        shares.update(zip(ids, _evaluate_at(secret, coefficients, ids), strict=True))
    return shares


def _evaluate_at(constant: FieldArray, coefficients: FieldArray, xs: Sequence[int]) -> FieldArray:
    """The polynomials constant + c_1 x + ... + c_t x^t at every x of `xs`, one row per x: the coefficients
    times the powers x^j (a Vandermonde matrix) and one sum, for all holders at once (a Horner loop per
    holder made 4t field calls each, numpy call overhead at sketch sizes)."""
    powers = np.array([[pow(x, j, field.P) for j in range(1, len(coefficients) + 1)] for x in xs],
                      dtype=np.uint64).reshape(len(xs), len(coefficients))
    terms = field.mul(coefficients[None, :, :], powers[:, :, None])
    return field.add(field.sum_mod(terms, axis=1), constant[None, :])


def lagrange_weights(xs: Sequence[int], at: int) -> list[int]:
    """Weights w_k such that f(at) = sum_k w_k f(xs[k]) for every polynomial of degree < len(xs)."""
    return list(_lagrange_weights(tuple(xs), at))


@functools.lru_cache(maxsize=4096)
def _lagrange_weights(xs: tuple[int, ...], at: int) -> tuple[int, ...]:
    """Remembered: a round interpolates over the same few holder sets again and again (every secret of the
    unmasking, every check of the validation), and each weight costs a modular inversion."""
    weights = []
    for k, x_k in enumerate(xs):
        numerator, denominator = 1, 1
        for m, x_m in enumerate(xs):
            if m != k:
                numerator = numerator * (at - x_m) % field.P
                denominator = denominator * (x_k - x_m) % field.P
        weights.append(numerator * field.inv(denominator) % field.P)
    return tuple(weights)


def interpolate(points: Mapping[int, FieldArray], targets: Sequence[int]) -> FieldArray:
    """Values at each target of the lowest-degree polynomial vector through the given points.

    One weighted sum for all targets at once, (targets x points) @ (points x length), computed as
    a single vectorised product and sum: small secrets would otherwise spend their time in numpy
    call overhead rather than arithmetic.
    """
    xs = list(points)
    weights = np.array([lagrange_weights(xs, at) for at in targets], dtype=np.uint64)
    stacked = np.stack([points[x] for x in xs])
    return field.sum_mod(field.mul(stacked[None, :, :], weights[:, :, None]), axis=1)


def interpolate_at(points: Mapping[int, FieldArray], at: int) -> FieldArray:
    """Value at `at` of the lowest-degree polynomial vector through all given points."""
    value: FieldArray = interpolate(points, [at])[0]
    return value


def reconstruct(shares: Mapping[int, FieldArray], degree: int, max_faulty: int = 0) -> Reconstruction:
    """Recover the secret from at least degree + 1 + max_faulty shares, naming the shares that disagree.

    `max_faulty` is how many share holders may lie (f). A polynomial that agrees with degree + 1 + f shares
    agrees with at least degree + 1 honest ones, so it is the true one; the result is returned only then
    (with f = 0: whenever a majority polynomial exists, as Berlekamp-Welch finds it). Every true polynomial
    with that much agreement is found: it disagrees with at most min(f, m - degree - 1 - f) shares, within
    Berlekamp-Welch's radius floor((m - degree - 1) / 2). So with m shares, up to m - degree - 1 - f lies
    are corrected and named, and more (up to f) are detected. Raises NotEnoughShares below
    degree + 1 + max_faulty shares, and InconsistentShares (with the shares off the best polynomial found,
    as suspects) when the rule cannot decide.
    """
    ids = sorted(shares)
    _check_ids(ids)
    assert max_faulty >= 0, "a negative number of faulty holders"
    if len(ids) < degree + 1 + max_faulty:
        raise NotEnoughShares(f"have {len(ids)} shares, need {degree + 1 + max_faulty} with {max_faulty} possibly wrong")
    fast = _agreeing_ids(shares, ids[: degree + 1], ids)
    if len(fast) == len(ids):
        return _result(shares, degree, fast, ids)
    compressed = _compress(shares, ids)
    polynomial = berlekamp_welch(list(zip(ids, compressed, strict=True)), degree)
    if polynomial is None:
        raise InconsistentShares(f"no degree-{degree} polynomial fits a majority of {len(ids)} shares")
    candidates = [x for x, y in zip(ids, compressed, strict=True) if _evaluate_int(polynomial, x) == y]
    assert 2 * len(candidates) > len(ids) + degree, "Berlekamp-Welch returned a minority polynomial"
    agreeing = _agreeing_ids(shares, candidates[: degree + 1], ids)
    if agreeing != candidates:
        raise InconsistentShares("shares disagree beyond their random combination")
    if len(agreeing) < degree + 1 + max_faulty:
        suspects = tuple(x for x in ids if x not in set(agreeing))
        raise InconsistentShares(f"the best degree-{degree} polynomial agrees with {len(agreeing)} of {len(ids)} "
                                 f"shares, fewer than the {degree + 1 + max_faulty} that rule out {max_faulty} "
                                 f"liars; off it: {list(suspects)}", suspects)
    return _result(shares, degree, agreeing, ids)


def _compress(shares: Mapping[int, FieldArray], ids: list[int]) -> list[int]:
    """One field element per share: sum_k r_k share[k], with r derived from a hash of all shares."""
    stacked = np.stack([shares[x] for x in ids])
    digest = hashlib.sha256(stacked.astype("<u8").tobytes()).digest()
    weights = field.random_elements(SeededRandomBytes(digest), stacked.shape[1])
    return [int(v) for v in field.sum_mod(field.mul(stacked, weights[None, :]), axis=1)]


def berlekamp_welch(points: Sequence[tuple[int, int]], degree: int) -> list[int] | None:
    """Coefficients (low to high) of the degree-`degree` polynomial through all but at most
    e = floor((m - degree - 1) / 2) of the m points, or None if there is no such polynomial.

    Unknowns: Q of degree e + degree and a monic error locator E of degree e, with
    Q(x) = y E(x) at every point; then the polynomial is Q / E and E vanishes on the wrong points.
    """
    errors = (len(points) - degree - 1) // 2
    q_terms = errors + degree + 1
    matrix, rhs = [], []
    for x, y in points:
        powers = [pow(x, k, field.P) for k in range(q_terms + 1)]
        matrix.append(powers[:q_terms] + [-y * powers[j] % field.P for j in range(errors)])
        rhs.append(y * powers[errors] % field.P)
    solution = _solve_mod_p(matrix, rhs)
    if solution is None:
        return None
    quotient, remainder = _divide(solution[:q_terms], [*solution[q_terms:], 1])
    return None if any(remainder) else quotient


def _solve_mod_p(matrix: list[list[int]], rhs: list[int]) -> list[int] | None:
    """One solution of matrix x = rhs over GF(p) (free variables 0), or None if inconsistent."""
    rows = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    columns = len(matrix[0])
    pivots: list[int] = []
    for column in range(columns):
        pivot = next((r for r in range(len(pivots), len(rows)) if rows[r][column]), None)
        if pivot is None:
            continue
        rank = len(pivots)
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        scale = field.inv(rows[rank][column])
        rows[rank] = [v * scale % field.P for v in rows[rank]]
        for r, row in enumerate(rows):
            if r != rank and row[column]:
                factor = row[column]
                rows[r] = [(a - factor * b) % field.P for a, b in zip(row, rows[rank], strict=True)]
        pivots.append(column)
    if any(row[-1] for row in rows[len(pivots) :]):
        return None
    solution = [0] * columns
    for rank, column in enumerate(pivots):
        solution[column] = rows[rank][-1]
    return solution


def _divide(numerator: list[int], monic: list[int]) -> tuple[list[int], list[int]]:
    """Polynomial long division over GF(p) by a monic divisor; coefficients low to high."""
    remainder = list(numerator)
    quotient = [0] * (len(numerator) - len(monic) + 1)
    for shift in range(len(quotient) - 1, -1, -1):
        coefficient = remainder[shift + len(monic) - 1]
        quotient[shift] = coefficient
        for k, term in enumerate(monic):
            remainder[shift + k] = (remainder[shift + k] - coefficient * term) % field.P
    return quotient, remainder[: len(monic) - 1]


def _evaluate_int(coefficients: list[int], x: int) -> int:
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % field.P
    return value


def _agreeing_ids(shares: Mapping[int, FieldArray], basis: list[int], ids: list[int]) -> list[int]:
    """Ids whose share lies on the polynomial through the shares of `basis`."""
    others = [x for x in ids if x not in basis]
    if not others:
        return list(ids)
    predicted = interpolate({x: shares[x] for x in basis}, others)
    matching = {x for x, row in zip(others, predicted, strict=True) if np.array_equal(row, shares[x])}
    return [x for x in ids if x in basis or x in matching]


def _result(shares: Mapping[int, FieldArray], degree: int, agreeing: list[int], ids: list[int]) -> Reconstruction:
    points = {x: shares[x] for x in agreeing[: degree + 1]}
    agreeing_set = set(agreeing)
    return Reconstruction(
        secret=interpolate_at(points, 0),
        inconsistent_ids=tuple(x for x in ids if x not in agreeing_set),
        checked=len(ids) > degree + 1,
    )


def _check_ids(ids: Sequence[int]) -> None:
    assert len(set(ids)) == len(ids), "duplicate share ids"
    assert all(0 < x < field.P for x in ids), "share ids must be non-zero field elements"


def secret_to_field(secret: bytes) -> FieldArray:
    """Cut a 32-byte secret into 56-bit big-endian chunks (the last one shorter)."""
    assert len(secret) == SECRET_BYTES, "secrets are exactly 32 bytes"
    chunks = [secret[k : k + CHUNK_BYTES] for k in range(0, SECRET_BYTES, CHUNK_BYTES)]
    return np.array([int.from_bytes(chunk, "big") for chunk in chunks], dtype=np.uint64)


def field_to_secret(elements: FieldArray) -> bytes:
    """Inverse of `secret_to_field`; raises InconsistentShares if a chunk does not fit its width.

    A chunk that overflows its byte width can only come from shares that were not produced by
    `share_secret` (a cheating dealer or share holder), so it is a peer fault, not our bug.
    """
    assert elements.shape == (SECRET_CHUNKS,), "wrong number of chunks"
    widths = [min(CHUNK_BYTES, SECRET_BYTES - k) for k in range(0, SECRET_BYTES, CHUNK_BYTES)]
    if any(int(value) >> (8 * width) for value, width in zip(elements, widths, strict=True)):
        raise InconsistentShares("reconstructed chunk does not fit a 32-byte secret")
    return b"".join(int(v).to_bytes(w, "big") for v, w in zip(elements, widths, strict=True))


def share_secret(secret: bytes, degree: int, share_ids: Sequence[int], rand: RandomBytes) -> dict[int, FieldArray]:
    """Share a 32-byte secret (a seed or an X25519 secret key) as SECRET_CHUNKS field elements."""
    return share_vector(secret_to_field(secret), degree, share_ids, rand)


def reconstruct_secret(shares: Mapping[int, FieldArray], degree: int) -> tuple[bytes, Reconstruction]:
    """Reconstruct a 32-byte secret; also returns the Reconstruction with inconsistent ids."""
    result = reconstruct(shares, degree)
    return field_to_secret(result.secret), result
