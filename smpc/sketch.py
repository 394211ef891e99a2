"""A count sketch with a public seed: a fixed random linear map from R^d to R^k.

Validation (issue 5) compares updates through their sketches z = S u: squared norms and squared
distances of sketches estimate those of the updates (E ||S x||^2 = ||x||^2, relative standard
deviation about sqrt(2 / k), so ~4.5% at k = 1000), and because S is linear, the sum of the
accepted sketches must equal the sketch of the unmasked sum, which catches an update that lied
about its sketch. The seed is public but derived from the ledger commitment to the masked
updates, so no node knew S when it chose its update.

Each coordinate j goes to bucket h(j) with sign s(j), both read from the AES-256-CTR keystream of
the seed (the mask PRG, so no second generator to audit): one uint32 w per coordinate, bucket
floor((w >> 1) k / 2^31) (a multiply-shift of its top 31 bits), sign from its lowest bit.

Applying it is one `np.bincount` over 2k bins, those of sign -1 in the upper half, and one subtraction
(about 5 ms per million coordinates). For integer inputs that is exact as long as every partial sum
stays below 2^53 (max |v| * d < 2^53); quantized updates are below 2^31 per coordinate, so that holds up
to two million coordinates, and beyond it `apply` sketches the high and low 16 bits apart (exact to 2^37
coordinates).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from smpc.prg import MaskGenerator

_EXACT_FLOAT_INTEGER = 1 << 53


class CountSketch:
    """The count sketch S: R^dimension -> R^width determined by a 32-byte public seed."""

    __slots__ = ("dimension", "signed_buckets", "width")

    def __init__(self, seed: bytes, dimension: int, width: int) -> None:
        assert dimension > 0 and 0 < width < 1 << 31, "sketch needs a positive dimension and width"
        words = MaskGenerator(dimension).expand(seed)
        self.dimension = dimension
        self.width = width
        # Few passes, in place where possible (a 1M-coordinate sketch is built every round by every node:
        # 5.8 ms against 9.7 ms for one pass per operation). A coordinate of sign -1 goes to bucket
        # h + width, so applying the sketch is one bincount over 2k bins and a subtraction, with no pass
        # multiplying the vector by its signs.
        scaled = np.multiply(words >> np.uint32(1), np.uint64(width), dtype=np.uint64)
        scaled >>= np.uint64(31)
        negative = np.bitwise_and(words, np.uint32(1))
        np.subtract(np.uint32(1), negative, out=negative)
        negative *= np.uint32(width)
        np.add(scaled, negative, out=scaled, casting="unsafe")
        self.signed_buckets = scaled.view(np.int64).astype(np.intp, copy=False)

    def apply(self, vector: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> np.ndarray:
        """S @ vector: int64 (exact) for integer vectors, float64 for float vectors.

        The bincount sums in float64, exact while every partial sum stays below 2^53. An integer vector
        too large for that (the unmasked sum of a member-controlled input can hold values near 2^31 on
        millions of coordinates) is split into its high and low 16 bits, each sketched exactly.
        """
        vector = np.asarray(vector)
        assert vector.shape == (self.dimension,), "vector has the wrong dimension"
        if not np.issubdtype(vector.dtype, np.integer):
            return self._sums(vector)
        if _largest(vector) * self.dimension < _EXACT_FLOAT_INTEGER:
            return self._sums(vector).astype(np.int64)
        wide = vector.astype(np.int64)
        high, low = wide >> np.int64(16), wide & np.int64(0xFFFF)
        assert max(_largest(high), 1 << 16) * self.dimension < _EXACT_FLOAT_INTEGER, "vector too large to sketch"
        return self._sums(high).astype(np.int64) * np.int64(1 << 16) + self._sums(low).astype(np.int64)

    def _sums(self, vector: np.ndarray) -> npt.NDArray[np.float64]:
        both = np.bincount(self.signed_buckets, weights=vector, minlength=2 * self.width)
        return both[: self.width] - both[self.width :]


def _largest(vector: np.ndarray) -> int:
    return max(int(vector.max()), -int(vector.min())) if vector.size else 0
