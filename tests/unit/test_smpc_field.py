"""Field and ring arithmetic against Python's arbitrary-precision integers."""

import numpy as np

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
