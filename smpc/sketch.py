"""A count sketch with a public seed: a fixed random linear map from R^d to R^k.

Validation (issue 5) compares updates through their sketches z = S u: squared norms and squared
distances of sketches estimate those of the updates (E ||S x||^2 = ||x||^2, relative standard
deviation about sqrt(2 / k), so ~4.5% at k = 1000), and because S is linear, the sum of the
accepted sketches must equal the sketch of the unmasked sum, which catches an update that lied
about its sketch. The seed is public but derived from the ledger commitment to the masked
updates, so no node knew S when it chose its update.

Each coordinate j goes to bucket h(j) with sign s(j), both read from the AES-256-CTR keystream of
the seed (the mask PRG, so no second generator to audit): one uint32 w per coordinate, bucket
floor((w >> 1) k / 2^31) (a multiply-shift of its top 31 bits), sign from its lowest bit. A
coordinate of sign -1 goes to bin h + k, so applying S is one `np.bincount` over 2k bins and one
subtraction, with no pass multiplying the vector by its signs.

Blocks. A node applies S twice per round (to its own update, then to the unmasked sum), both times
to a vector of integers. It does so block by block (`_BLOCK` coordinates): the block's buckets, then
one bincount of the block. The first pass computes the buckets from the keystream and keeps them in
2 bytes per coordinate (the default k = 1000 has 2k bins below 2^16; wider sketches keep 8); later
passes read them back. Every temporary is a block, a few hundred kilobytes that stay in cache and are
reused by the allocator: whole-vector passes would allocate ~30 MB per round (the keystream, 8-byte
buckets, the vector converted to float64), and fresh pages cost more than the arithmetic. Integer
sums are exact: each block's bincount sums in float64, exact while max |v| * _BLOCK < 2^53 (always for
32-bit inputs), and blocks are added in int64; a wider vector with larger values is sketched as its
high and low 26 bits. Float vectors (simulations, tests) take the whole-vector bincount, whose
summation order they depend on bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from smpc.prg import keystream_blocks

_EXACT_FLOAT_INTEGER = 1 << 53
_BLOCK = 1 << 15
"""Coordinates per block: 256 KB of float64 weights and as many of buckets, cache-sized."""
_SPLIT_BITS = 26
"""A wide integer vector is sketched as v >> 26 and v & (2^26 - 1): |v >> 26| < 2^37, exact per block."""


class CountSketch:
    """The count sketch S: R^dimension -> R^width determined by a 32-byte public seed."""

    __slots__ = ("_buckets", "_compact", "_seed", "dimension", "width")

    def __init__(self, seed: bytes, dimension: int, width: int) -> None:
        assert dimension > 0 and 0 < width < 1 << 31, "sketch needs a positive dimension and width"
        self._seed = seed
        self.dimension = dimension
        self.width = width
        self._buckets: npt.NDArray[np.intp] | None = None
        self._compact: npt.NDArray[np.uint16] | npt.NDArray[np.intp] | None = None

    @property
    def signed_buckets(self) -> npt.NDArray[np.intp]:
        """The whole map: bin h(j) for sign +1, h(j) + k for sign -1 (built once, on first use)."""
        if self._buckets is None:
            buckets = np.empty(self.dimension, dtype=np.intp)
            for start, block in self._blocks():
                buckets[start : start + block.size] = block
            self._buckets = buckets
        return self._buckets

    def apply(self, vector: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> np.ndarray:
        """S @ vector: int64 (exact) for integer vectors, float64 for float vectors."""
        vector = np.asarray(vector)
        assert vector.shape == (self.dimension,), "vector has the wrong dimension"
        if not np.issubdtype(vector.dtype, np.integer):
            both = np.bincount(self.signed_buckets, weights=vector, minlength=2 * self.width)
            return both[: self.width] - both[self.width :]
        if vector.dtype.itemsize <= 4 or _largest(vector) * _BLOCK < _EXACT_FLOAT_INTEGER:
            return self._integer_sums(vector)
        wide = vector.astype(np.int64)
        high = self._integer_sums(wide >> np.int64(_SPLIT_BITS))
        return high * np.int64(1 << _SPLIT_BITS) + self._integer_sums(wide & np.int64((1 << _SPLIT_BITS) - 1))

    def _integer_sums(self, vector: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        """S @ vector for integers below 2^53 / _BLOCK in absolute value, block by block, exactly."""
        both = np.zeros(2 * self.width, dtype=np.int64)
        weights = np.empty(min(_BLOCK, self.dimension), dtype=np.float64)
        for start, buckets in self._blocks():
            block = weights[: buckets.size]
            np.copyto(block, vector[start : start + buckets.size], casting="unsafe")
            both += np.bincount(buckets, weights=block, minlength=2 * self.width).astype(np.int64)
        return both[: self.width] - both[self.width :]

    def _blocks(self) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
        """(start, signed buckets of the coordinates from start on), one block at a time, in place: each
        block is overwritten by the next. Read back from the compact copy once a pass has completed it."""
        if self._compact is None:
            yield from self._computed_blocks()
            return
        index = np.empty(min(_BLOCK, self.dimension), dtype=np.intp)
        for start in range(0, self.dimension, _BLOCK):
            block = self._compact[start : start + _BLOCK]
            np.copyto(index[: block.size], block)
            yield start, index[: block.size]

    def _computed_blocks(self) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
        """The blocks from the keystream: bucket floor((w >> 1) k / 2^31), plus k where w is even; each is also
        written to a compact copy, kept once the pass is complete (a pass abandoned midway keeps nothing)."""
        compact = np.empty(self.dimension, dtype=np.uint16 if 2 * self.width <= 1 << 16 else np.intp)
        size = min(_BLOCK, self.dimension)
        scaled, negative = np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.uint32)
        width64, width32 = np.uint64(self.width), np.uint32(self.width)
        start = 0
        for words in keystream_blocks(self._seed, self.dimension, _BLOCK):
            bucket, sign = scaled[: words.size], negative[: words.size]
            np.right_shift(words, np.uint32(1), out=sign)
            np.multiply(sign, width64, out=bucket)
            np.right_shift(bucket, np.uint64(31), out=bucket)
            np.bitwise_and(words, np.uint32(1), out=sign)
            np.subtract(np.uint32(1), sign, out=sign)
            np.multiply(sign, width32, out=sign)
            np.add(bucket, sign, out=bucket)
            compact[start : start + words.size] = bucket
            yield start, bucket.view(np.intp)
            start += words.size
        self._compact = compact


def _largest(vector: np.ndarray) -> int:
    return max(int(vector.max()), -int(vector.min())) if vector.size else 0
