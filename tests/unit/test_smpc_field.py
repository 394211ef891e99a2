"""Field and ring arithmetic against Python's arbitrary-precision integers."""

import numpy as np
import pytest

from smpc import field
from smpc.prg import SeededRandomBytes

EDGE = [0, 1, 2, 3, (1 << 32) - 1, 1 << 32, (1 << 60), field.P - 2, field.P - 1]


def _edge_pairs() -> tuple[np.ndarray, np.ndarray]:
    a, b = zip(*[(x, y) for x in EDGE for y in EDGE])
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def test_operations_match_python_integers_on_edge_values() -> None:
    a, b = _edge_pairs()
    for op, ref in [
        (field.add, lambda x, y: (x + y) % field.P),
        (field.sub, lambda x, y: (x - y) % field.P),
        (field.mul, lambda x, y: (x * y) % field.P),
    ]:
        got = op(a, b)
        expected = [ref(int(x), int(y)) for x, y in zip(a, b)]
        assert [int(v) for v in got] == expected, op.__name__


def test_neg_and_inverse() -> None:
    a = np.array(EDGE, dtype=np.uint64)
    assert [int(v) for v in field.neg(a)] == [(-x) % field.P for x in EDGE]
    for x in EDGE[1:]:
        assert x * field.inv(x) % field.P == 1


def test_signed_embeddings_round_trip() -> None:
    values = np.array([0, 1, -1, 2**40, -(2**40), field.P // 2, -(field.P // 2)], dtype=np.int64)
    assert np.array_equal(field.to_signed(field.from_signed(values)), values)
    ring_values = np.array([0, 5, -5, 2**31 - 1, -(2**31)], dtype=np.int64)
    assert np.array_equal(field.ring_to_signed(field.ring_from_signed(ring_values)), ring_values)


def test_ring_sum_wraps_modulo_2_32() -> None:
    vectors = [np.array([2**32 - 1, 7], dtype=np.uint32), np.array([2, 2**32 - 7], dtype=np.uint32)]
    assert field.ring_sum(vectors, 2).tolist() == [1, 0]


def test_random_elements_are_field_elements_and_rejection_sampling_retries() -> None:
    values = field.random_elements(SeededRandomBytes.from_int(1), 10_000)
    assert field.is_field_vector(values)
    assert len(set(values.tolist())) == 10_000
    all_ones = (b"\xff" * 8) * 2
    calls: list[int] = []

    def rigged(count: int) -> bytes:
        calls.append(count)
        return all_ones[:count] if len(calls) == 1 else bytes(range(count))

    out = field.random_elements(rigged, 2)
    assert calls == [16, 16] and field.is_field_vector(out)


def _exact(values: np.ndarray, dtype: type) -> list[int]:
    assert values.dtype == dtype, values.dtype
    return [int(v) for v in values]


def test_as_field_takes_python_integers_and_scalars_broadcast() -> None:
    a = [int(x) for x in EDGE]
    assert _exact(field.as_field(a), np.uint64) == a
    arrays = field.as_field(a)
    scalar = np.uint64(field.P - 1)
    assert _exact(field.add(arrays, scalar), np.uint64) == [(x + field.P - 1) % field.P for x in a]
    assert _exact(field.mul(scalar, arrays), np.uint64) == [(x * (field.P - 1)) % field.P for x in a]
    assert int(field.sum_mod(arrays)) == sum(a) % field.P


def test_canonical_field_vectors_from_peer_bytes() -> None:
    elements = [0, 1, field.P - 1, 1 << 60]
    data = b"".join(x.to_bytes(8, "little") for x in elements)
    assert _exact(field.vector_from_bytes(data, 4), np.uint64) == elements
    assert field.is_field_vector(np.array([field.P - 1], dtype=np.uint64))
    assert not field.is_field_vector(np.array([field.P], dtype=np.uint64))
    for bad, count, message in [
        (data, 3, "32 bytes, expected 24 for 3 field elements"),
        (data[:-1], 4, "31 bytes, expected 32 for 4 field elements"),
        (field.P.to_bytes(8, "little"), 1, r"element outside GF\(p\)"),
        (((1 << 64) - 1).to_bytes(8, "little"), 1, r"element outside GF\(p\)"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            field.vector_from_bytes(bad, count)


def test_signed_lifts_are_exact_at_zero_and_at_the_extremes() -> None:
    half = field.P // 2
    signed = [0, 1, -1, half, -half, (1 << 60) - 3, -((1 << 60) - 3)]
    lifted = field.from_signed(signed)
    assert _exact(lifted, np.uint64) == [x % field.P for x in signed]
    assert _exact(field.to_signed(lifted), np.int64) == signed
    assert _exact(field.to_signed([half + 1, field.P - 1]), np.int64) == [-half, -1]
    narrow = np.array([-(1 << 31), (1 << 31) - 1], dtype=np.int32)  # negating -2^31 overflows in int32
    assert _exact(field.from_signed(narrow), np.uint64) == [field.P - (1 << 31), (1 << 31) - 1]
    ring = [0, -1, (1 << 31) - 1, -(1 << 31)]
    assert _exact(field.ring_from_signed(ring), np.uint32) == [x % (1 << 32) for x in ring]
    assert _exact(field.ring_to_signed(field.ring_from_signed(ring)), np.int64) == ring
    assert _exact(field.ring_view_signed([(1 << 32) - 1, 1 << 31]), np.int32) == [-1, -(1 << 31)]


def test_inner_products_match_python_integers() -> None:
    """The Gram matrix by 21-bit limbs, on the edge values (p - 1 in every limb position) and random rows."""
    rand = np.random.default_rng(5)
    rows = np.concatenate([np.array([EDGE * 3, EDGE[::-1] * 3], dtype=np.uint64),
                           rand.integers(0, field.P, (4, 3 * len(EDGE)), dtype=np.uint64)])
    expected = [[sum(int(a) * int(b) for a, b in zip(x, y, strict=True)) % field.P for y in rows] for x in rows]
    assert field.inner_products(rows).tolist() == expected
    full = np.full((2, 4000), field.P - 1, dtype=np.uint64)
    assert field.inner_products(full).tolist() == [[4000 % field.P] * 2] * 2  # (-1)(-1) summed 4000 times


def test_mul_and_fold_match_python_integers_on_random_broadcast_shapes() -> None:
    """`mul` works in place on the broadcast shape and `_fold` subtracts p as a minimum: every shape and value
    still gives the exact residue."""
    rand = np.random.default_rng(6)
    a = rand.integers(0, field.P, (1, 3, 40), dtype=np.uint64)
    b = rand.integers(0, field.P, (5, 3, 1), dtype=np.uint64)
    got = field.mul(a, b)
    assert got.shape == (5, 3, 40)
    assert got.tolist() == [[[int(x) * int(y[0]) % field.P for x in ra] for ra, y in zip(a[0], rb, strict=True)]
                            for rb in b]
    raw = np.concatenate([rand.integers(0, 2**64 - 1, 2000, dtype=np.uint64),
                          np.array([field.P, field.P + 1, 2 * field.P - 1, 2 * field.P, 2**64 - 1], dtype=np.uint64)])
    assert [int(v) for v in field._fold(raw)] == [int(v) % field.P for v in raw]
    assert int(field.mul(np.uint64(field.P - 1), np.uint64(field.P - 1))) == 1
