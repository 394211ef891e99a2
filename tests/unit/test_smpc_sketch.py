"""Count sketch: linear, exact on integers, deterministic in its seed, norm-preserving on average."""

import numpy as np

from smpc.prg import SeededRandomBytes
from smpc.sketch import CountSketch


def reference(sketch: CountSketch, vector: np.ndarray) -> np.ndarray:
    out = np.zeros(sketch.width, dtype=np.int64)
    np.add.at(out, sketch.buckets, vector.astype(np.int64) * sketch.signs.astype(np.int64))
    return out


def test_matches_the_definition_and_is_linear_and_exact() -> None:
    sketch = CountSketch(b"\x05" * 32, dimension=5000, width=64)
    rand = np.random.default_rng(1)
    a = rand.integers(-(2**39), 2**39, 5000)
    b = rand.integers(-(2**39), 2**39, 5000)
    assert np.array_equal(sketch.apply(a), reference(sketch, a))
    assert np.array_equal(sketch.apply(a + b), sketch.apply(a) + sketch.apply(b))


def test_seed_fixes_the_map() -> None:
    one = CountSketch(b"\x01" * 32, 1000, 50)
    assert np.array_equal(one.buckets, CountSketch(b"\x01" * 32, 1000, 50).buckets)
    assert not np.array_equal(one.buckets, CountSketch(b"\x02" * 32, 1000, 50).buckets)
    assert one.buckets.min() >= 0 and one.buckets.max() < 50


def test_squared_norm_is_preserved_within_a_few_percent() -> None:
    sketch = CountSketch(SeededRandomBytes.from_int(3)(32), dimension=100_000, width=1000)
    x = np.random.default_rng(2).standard_normal(100_000)
    ratio = float(np.dot(sketch.apply(x), sketch.apply(x)) / np.dot(x, x))
    assert abs(ratio - 1) < 0.2, ratio  # relative std ~ 4.5% at k = 1000
