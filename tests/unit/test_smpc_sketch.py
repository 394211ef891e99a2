"""Count sketch: linear, exact on integers, deterministic in its seed, norm-preserving on average."""

import numpy as np

from smpc.prg import MaskGenerator, SeededRandomBytes
from smpc.sketch import _BLOCK, CountSketch


def reference(seed: bytes, width: int, vector: np.ndarray) -> np.ndarray:
    """The module docstring's definition, coordinate by coordinate in Python integers: word w of the
    seed's keystream sends coordinate j to bucket floor((w >> 1) * width / 2^31) with sign + iff w is odd."""
    out = [0] * width
    for word, value in zip(MaskGenerator(len(vector)).expand(seed).tolist(), vector.tolist(), strict=True):
        out[((word >> 1) * width) >> 31] += value if word & 1 else -value
    return np.array(out, dtype=np.int64)


def test_matches_the_definition_and_is_linear_and_exact() -> None:
    sketch = CountSketch(b"\x05" * 32, dimension=5000, width=64)
    rand = np.random.default_rng(1)
    a = rand.integers(-(2**39), 2**39, 5000)
    b = rand.integers(-(2**39), 2**39, 5000)
    assert np.array_equal(sketch.apply(a), reference(b"\x05" * 32, 64, a))
    centred = rand.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32).view(np.int32)
    assert np.array_equal(sketch.apply(centred), reference(b"\x05" * 32, 64, centred.astype(np.int64)))
    assert np.array_equal(sketch.apply(a + b), sketch.apply(a) + sketch.apply(b))


def test_seed_fixes_the_map() -> None:
    one = CountSketch(b"\x01" * 32, 1000, 50)
    assert np.array_equal(one.signed_buckets, CountSketch(b"\x01" * 32, 1000, 50).signed_buckets)
    assert not np.array_equal(one.signed_buckets, CountSketch(b"\x02" * 32, 1000, 50).signed_buckets)
    assert one.signed_buckets.min() >= 0 and one.signed_buckets.max() < 2 * 50


def test_squared_norm_is_preserved_within_a_few_percent() -> None:
    sketch = CountSketch(SeededRandomBytes.from_int(3)(32), dimension=100_000, width=1000)
    x = np.random.default_rng(2).standard_normal(100_000)
    ratio = float(np.dot(sketch.apply(x), sketch.apply(x)) / np.dot(x, x))
    assert abs(ratio - 1) < 0.2, ratio  # relative std ~ 4.5% at k = 1000


def test_buckets_match_the_definition_at_the_default_and_the_largest_widths() -> None:
    for width in (1000, 2**31 - 1):
        words = MaskGenerator(3000).expand(b"\x07" * 32).astype(np.int64)
        expected = ((words >> 1) * width >> 31) + width * (1 - (words & 1))
        assert np.array_equal(CountSketch(b"\x07" * 32, 3000, width).signed_buckets, expected), width


def test_a_member_controlled_sum_on_millions_of_coordinates_is_sketched_exactly_not_refused() -> None:
    """The linear identity sketches the unmasked ring sum, whose values a member controls up to 2^31: at
    L >= 2^22 coordinates the float64 bincount is no longer exact, and `apply` used to stop the node on an
    assertion there. It now splits the vector and stays exact."""
    dimension = (1 << 22) + 9
    sketch = CountSketch(b"\x07" * 32, dimension=dimension, width=1000)
    rand = np.random.default_rng(3)
    vector = rand.integers(-(2**31), 2**31, dimension).astype(np.int32)
    vector[:1000] = np.int32(2**31 - 1)
    exact = np.zeros(2 * 1000, dtype=np.int64)
    np.add.at(exact, sketch.signed_buckets, vector.astype(np.int64))
    assert np.array_equal(sketch.apply(vector), exact[:1000] - exact[1000:])


def test_the_blockwise_map_equals_the_definition_across_block_boundaries() -> None:
    """`apply` streams the map block by block (`smpc.sketch._BLOCK` coordinates) and never holds it whole:
    on a dimension of two blocks and a part, integer vectors of every width (the int32 ring view of the
    hot path, and int64 beyond the per-block exactness bound, sketched as high and low bits) give exactly
    the definition's sums, and float vectors the whole-map bincount's, bit for bit."""
    dimension, width, seed = 2 * _BLOCK + 1234, 100, b"\x09" * 32
    sketch = CountSketch(seed, dimension, width)
    rand = np.random.default_rng(4)
    ring = rand.integers(0, 2**32, dimension, dtype=np.uint64).astype(np.uint32).view(np.int32)
    assert np.array_equal(sketch.apply(ring), reference(seed, width, ring.astype(np.int64)))
    wide = rand.integers(-(2**50), 2**50, dimension)
    assert np.array_equal(sketch.apply(wide), reference(seed, width, wide))
    floats = rand.standard_normal(dimension)
    whole = np.bincount(sketch.signed_buckets, weights=floats, minlength=2 * width)
    assert np.array_equal(sketch.apply(floats), whole[:width] - whole[width:])
    words = MaskGenerator(dimension).expand(seed).astype(np.int64)
    assert np.array_equal(sketch.signed_buckets, ((words >> 1) * width >> 31) + width * (1 - (words & 1)))


def test_a_vector_shorter_than_the_sketch_still_has_width_coordinates() -> None:
    """Few coordinates leave most bins empty: the sketch is still `width` long, exact for integers (int64) and the
    definition's sums for floats."""
    seed, width = b"\x0a" * 32, 50
    sketch = CountSketch(seed, dimension=3, width=width)
    integers = np.array([5, -7, 11], dtype=np.int32)
    exact = sketch.apply(integers)
    assert exact.dtype == np.int64 and np.array_equal(exact, reference(seed, width, integers.astype(np.int64)))
    floats = sketch.apply(integers.astype(np.float64))
    assert floats.dtype == np.float64 and np.array_equal(floats, exact.astype(np.float64))


def test_a_sketch_wider_than_the_compact_bucket_type_gives_the_same_sums_on_every_pass() -> None:
    """With 2k > 2^16 bins the buckets do not fit the 2-byte compact copy that later passes read back."""
    seed, width = b"\x0b" * 32, 40_000
    sketch = CountSketch(seed, dimension=5000, width=width)
    vector = np.random.default_rng(5).integers(-(2**31), 2**31, 5000).astype(np.int32)
    expected = reference(seed, width, vector.astype(np.int64))
    for _ in range(2):
        assert np.array_equal(sketch.apply(vector), expected)


def test_an_int64_vector_whose_largest_magnitude_is_negative_is_still_exact() -> None:
    seed = b"\x0c" * 32
    sketch = CountSketch(seed, dimension=3000, width=20)
    vector = -np.random.default_rng(6).integers(2**45, 2**50, 3000)
    vector[0] = 1
    assert np.array_equal(sketch.apply(vector), reference(seed, 20, vector))
