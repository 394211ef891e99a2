"""A count sketch with a public seed: a fixed random linear map from R^d to R^k.

Validation (issue 5) compares updates through their sketches z = S u: squared norms and squared
distances of sketches estimate those of the updates (E ||S x||^2 = ||x||^2, relative standard
deviation about sqrt(2 / k), so ~4.5% at k = 1000), and because S is linear, the sum of the
accepted sketches must equal the sketch of the unmasked sum, which catches an update that lied
about its sketch. The seed is public but derived from the ledger commitment to the masked
updates, so no node knew S when it chose its update.

Each coordinate j goes to bucket h(j) with sign s(j), both read from the AES-256-CTR keystream of
the seed (the mask PRG, so no second generator to audit): one uint32 w per coordinate, bucket
floor((w >> 1) k / 2^31) (a multiply-shift of its top 31 bits), sign from its lowest bit. Applying the
sketch sorts coordinates by bucket once (at construction) and then sums runs with
`np.add.reduceat`, exact on int64 for quantized updates, and about a millisecond per million
coordinates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from smpc.prg import MaskGenerator


class CountSketch:
    """The count sketch S: R^dimension -> R^width determined by a 32-byte public seed."""

    __slots__ = ("_boundaries", "_order", "_present", "_signs", "buckets", "dimension", "width")

    def __init__(self, seed: bytes, dimension: int, width: int) -> None:
        assert dimension > 0 and 0 < width < 1 << 31, "sketch needs a positive dimension and width"
        words = MaskGenerator(dimension).expand(seed).astype(np.uint64)
        self.dimension = dimension
        self.width = width
        self.buckets = ((words >> np.uint64(1)) * np.uint64(width) >> np.uint64(31)).astype(np.int64)
        self._signs = np.where(words & np.uint64(1), 1, -1).astype(np.int8)
        self._order = np.argsort(self.buckets, kind="stable")
        sorted_buckets = self.buckets[self._order]
        self._present, self._boundaries = np.unique(sorted_buckets, return_index=True)

    def signs(self) -> npt.NDArray[np.int8]:
        return self._signs.copy()

    def apply(self, vector: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> np.ndarray:
        """S @ vector, in the vector's own kind (int64 for integers, float64 for floats)."""
        vector = np.asarray(vector)
        assert vector.shape == (self.dimension,), "vector has the wrong dimension"
        kind = np.int64 if np.issubdtype(vector.dtype, np.integer) else np.float64
        signed = (vector.astype(kind) * self._signs)[self._order]
        out = np.zeros(self.width, dtype=kind)
        out[self._present] = np.add.reduceat(signed, self._boundaries)
        return out
