"""Arithmetic in the prime field GF(p), p = 2^61 - 1, and in the ring Z_2^32.

Why this prime. Shamir sharing needs a field; the validation phase (issue 5) multiplies shares, so
squared norms and squared distances of quantized sketches must fit below p without wrapping. A
Mersenne prime makes reduction two shifts and an add, and 2^61 - 1 is the largest one whose
elements fit a uint64 with room to spare for a sum of a few partial products. A 32-byte secret is
cut into five 56-bit chunks (see `shamir.py`), each an element of the field.

Why the limb multiplication. numpy has no 128-bit integers, so `a * b` of two 61-bit elements would
overflow uint64. `mul` splits each operand into a high 29-bit and a low 32-bit half; every partial
product then fits in 64 bits, and since 2^61 = 1 (mod p) the high parts fold back by shifting.

The ring Z_2^32 (dtype uint32) is where masked updates live: numpy's uint32 arithmetic wraps modulo
2^32 by itself, so the ring helpers only fix the dtype and the signed (centred) interpretation.

Everything here is pure: the only randomness is drawn from a caller-supplied `RandomBytes` callable
(for instance `secrets.token_bytes`, or `prg.SeededRandomBytes` in tests).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

P = (1 << 61) - 1
"""The field modulus, the Mersenne prime 2^61 - 1."""

RING_BITS = 32
RING_MODULUS = 1 << RING_BITS

RandomBytes = Callable[[int], bytes]
"""A source of uniformly random bytes: called with n, returns exactly n bytes."""

FieldArray = npt.NDArray[np.uint64]
FieldLike = npt.NDArray[np.uint64] | np.uint64
"""A field vector, or a single element broadcast against one."""
RingArray = npt.NDArray[np.uint32]

_P64 = np.uint64(P)
_MASK29 = np.uint64((1 << 29) - 1)
_MASK32 = np.uint64((1 << 32) - 1)
_SHIFT61 = np.uint64(61)
_SHIFT32 = np.uint64(32)
_SHIFT29 = np.uint64(29)
_SHIFT3 = np.uint64(3)


def as_field(values: npt.ArrayLike) -> FieldArray:
    """Return `values` as a uint64 array after checking every entry is a field element (< p)."""
    array = np.asarray(values, dtype=np.uint64)
    assert not np.any(array >= _P64), "value outside GF(p)"
    return array


def is_field_vector(values: npt.NDArray[np.uint64]) -> bool:
    """Tell whether a decoded uint64 vector holds only canonical field elements (for peer input)."""
    return bool(np.all(values < _P64))


def vector_from_bytes(data: bytes, count: int) -> FieldArray:
    """Parse `count` little-endian GF(p) elements from a peer; ValueError for a wrong size or range."""
    if len(data) != 8 * count:
        raise ValueError(f"{len(data)} bytes, expected {8 * count} for {count} field elements")
    vec = np.frombuffer(data, dtype="<u8").astype(np.uint64)
    if not is_field_vector(vec):
        raise ValueError("element outside GF(p)")
    return vec


def _fold(x: FieldLike) -> FieldArray:
    """Reduce any uint64 modulo p, using 2^61 = 1 (mod p): x = hi * 2^61 + lo = hi + lo < 2p, then one
    conditional subtraction as min(y, y - p): below p, y - p wraps around to above y."""
    x = np.asarray(x, dtype=np.uint64)
    y = np.asarray((x & _P64) + (x >> _SHIFT61), dtype=np.uint64)
    return np.asarray(np.minimum(y, y - _P64), dtype=np.uint64)


def add(a: FieldLike, b: FieldLike) -> FieldArray:
    """(a + b) mod p, elementwise; the sum of two elements < 2^62 cannot overflow uint64."""
    return _fold(np.add(a, b, dtype=np.uint64))


def sub(a: FieldLike, b: FieldLike) -> FieldArray:
    """(a - b) mod p, elementwise, computed as a + (p - b) to stay unsigned."""
    return _fold(np.add(a, _P64 - np.asarray(b, dtype=np.uint64), dtype=np.uint64))


def neg(a: FieldLike) -> FieldArray:
    """(-a) mod p, elementwise."""
    return _fold(_P64 - np.asarray(a, dtype=np.uint64))


def mul(a: FieldLike, b: FieldLike) -> FieldArray:
    """(a * b) mod p, elementwise, by 29/32-bit limbs (see the module docstring).

    With a = a1 2^32 + a0 and b = b1 2^32 + b0 (a1, b1 < 2^29; a0, b0 < 2^32):
    a b = a1 b1 2^64 + (a1 b0 + a0 b1) 2^32 + a0 b0, and modulo p, 2^64 = 8. The middle term
    m < 2^62 is split as m = mh 2^29 + ml so that m 2^32 = mh 2^61 + ml 2^32 = mh + ml 2^32.
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    a1, a0 = a >> _SHIFT32, a & _MASK32
    b1, b0 = b >> _SHIFT32, b & _MASK32
    middle = np.asarray(a1 * b0, dtype=np.uint64)  # in place from here: fewer temporaries of the full shape
    middle += a0 * b1
    total = np.asarray(a1 * b1, dtype=np.uint64)
    total <<= _SHIFT3
    total += middle >> _SHIFT29
    middle &= _MASK29
    middle <<= _SHIFT32
    total += middle
    return add(_fold(total), _fold(a0 * b0))


def sum_mod(values: FieldArray, axis: int = -1) -> FieldArray:
    """Sum field elements along `axis` modulo p, for any count below 2^32.

    A plain uint64 sum of elements below 2^61 overflows after eight terms, so the 32-bit low
    halves and the 29-bit high halves are summed separately (each sum fits in 64 bits), then
    recombined as hi * 2^32 + lo with the same folding as `mul`.
    """
    values = np.asarray(values, dtype=np.uint64)
    assert values.shape[axis] < 1 << 32, "too many terms for the split sum"
    low = np.sum(values & _MASK32, axis=axis, dtype=np.uint64)
    high = np.sum(values >> _SHIFT32, axis=axis, dtype=np.uint64)
    return add(mul(_fold(high), np.uint64(1 << 32)), _fold(low))


_LIMB_BITS = 21
_LIMB_MASK = np.uint64((1 << _LIMB_BITS) - 1)
_LIMB_PAIR_WEIGHTS = np.array([pow(2, _LIMB_BITS * (a + b), P) for a in range(3) for b in range(3)],
                              dtype=np.uint64).reshape(9, 1, 1)
"""2^(21 (a + b)) mod p for limb pair (a, b), in `inner_products`' block order."""


def inner_products(rows: FieldArray) -> FieldArray:
    """The Gram matrix (rows @ rows.T) mod p of an (m, n) field matrix, exactly, in one integer matmul.

    Each element is cut into three 21-bit limbs (61 = 21 + 21 + 19 bits), so a product of two limbs is
    below 2^42 and a sum of n of them fits uint64 for n < 2^22. Stacking the limbs as a (3m, n) matrix L,
    L @ L.T holds every limb pair's inner products; block (a, b) weighs 2^(21 (a + b)) mod p. A pairwise
    loop over the m rows with `mul` and `sum_mod` makes ~25 passes over each pair's n elements; this
    makes three over the rows and one product.
    """
    rows = np.asarray(rows, dtype=np.uint64)
    m, n = rows.shape
    assert n < 1 << (64 - 2 * _LIMB_BITS), "too many columns for 21-bit limb products"
    limbs = np.concatenate([(rows >> np.uint64(_LIMB_BITS * a)) & _LIMB_MASK for a in range(3)])
    blocks = _fold(limbs @ limbs.T).reshape(3, m, 3, m).transpose(0, 2, 1, 3).reshape(9, m, m)
    return sum_mod(mul(blocks, _LIMB_PAIR_WEIGHTS), axis=0)


def inv(value: int) -> int:
    """Multiplicative inverse of a non-zero scalar, by Fermat's little theorem."""
    value %= P
    assert value != 0, "zero has no inverse"
    return pow(value, P - 2, P)


def from_signed(values: npt.ArrayLike) -> FieldArray:
    """Embed signed integers with |x| < p/2 into GF(p): negatives map to p - |x|."""
    signed = np.asarray(values, dtype=np.int64)
    assert not np.any(np.abs(signed) > P // 2), "signed value too large for GF(p)"
    return np.where(signed < 0, _P64 - (-signed).astype(np.uint64), signed.astype(np.uint64))


def to_signed(values: FieldArray) -> npt.NDArray[np.int64]:
    """Centred lift: elements above p/2 are read as negative numbers."""
    values = np.asarray(values, dtype=np.uint64)
    upper = values > np.uint64(P // 2)
    return np.where(upper, -((_P64 - values).astype(np.int64)), values.astype(np.int64))


def random_elements(rand: RandomBytes, count: int) -> FieldArray:
    """Draw `count` uniform field elements from `rand`, by rejection sampling.

    Masking 8 random bytes to 61 bits gives a uniform value in [0, 2^61 - 1]; only the single
    value p itself must be rejected (probability 2^-61 per draw), so the loop almost never repeats.
    """
    out = np.empty(count, dtype=np.uint64)
    pending = np.arange(count)
    while pending.size:
        raw = np.frombuffer(rand(8 * pending.size), dtype="<u8").astype(np.uint64) & _P64
        out[pending] = raw
        pending = pending[raw == _P64]
    return out


def ring_from_signed(values: npt.ArrayLike) -> RingArray:
    """Two's-complement embedding of signed integers (|x| < 2^31) into Z_2^32."""
    return np.asarray(values, dtype=np.int64).astype(np.uint32)


def ring_to_signed(values: RingArray) -> npt.NDArray[np.int64]:
    """Centred lift of ring elements to [-2^31, 2^31): the inverse of `ring_from_signed`."""
    return ring_view_signed(values).astype(np.int64)


def ring_view_signed(values: RingArray) -> npt.NDArray[np.int32]:
    """The centred lift as an int32 view, without a copy: for a caller that only reads it (a sketch, a
    division) on model-sized vectors; use `ring_to_signed` before integer arithmetic that could overflow."""
    return np.asarray(values, dtype=np.uint32).view(np.int32)


def ring_sum(vectors: list[RingArray], length: int) -> RingArray:
    """Sum ring vectors modulo 2^32 (numpy's uint32 addition wraps, which is exactly the ring)."""
    total = np.zeros(length, dtype=np.uint32)
    for vector in vectors:
        np.add(total, vector, out=total)
    return total
