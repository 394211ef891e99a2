"""Cryptographic pseudo-random generators: the mask PRG and a seeded byte source.

The mask PRG expands a 32-byte seed (a self-mask seed b_i or a pairwise key s_ij) into a uint32
vector of length L: the AES-256-CTR keystream under the full 256-bit seed, read as little-endian
uint32 words. AES-CTR is a PRF-based stream, so without the seed the vector is indistinguishable
from uniform in Z_2^32^L, which is what hides an update. The counter block starts at zero: every
seed is used for exactly one vector (seeds are fresh per round, pairwise keys are derived with the
chain id, round id and pair in the HKDF info), so no keystream is ever reused for two messages.
AES is chosen over ChaCha20 because with AES-NI it expands 4 MB in about 0.7 ms on our machines,
twice as fast as ChaCha20. numpy's generators are never used: they are not cryptographic and their
seeds are at most a few words.

`MaskGenerator` adds or subtracts a mask block by block (`MASK_BLOCK_WORDS`) through one small zero input
and output buffer (`update_into`), so masking a million-parameter update allocates nothing per seed and
its keystream never leaves the cache; `expand`, for a caller that needs a whole mask at once, keeps
full-size buffers, allocated at its first call. `keystream_blocks` reads the same
keystream in fixed-size blocks through one small buffer, for a caller that consumes it block by block
(the count sketch): its blocks, concatenated, are exactly `MaskGenerator(length).expand(seed)`.

`SeededRandomBytes` is a CSPRNG (the ChaCha20 keystream under a 32-byte seed). Seeded with a fixed
value it makes tests and simulations reproducible; seeded with 32 bytes from the OS it is the fast
source production needs for stochastic rounding (4 MB of randomness per million parameters: the
kernel's getrandom delivers that in ~35 ms here, ChaCha20 in ~2.5 ms). Small draws (keys, seeds,
Shamir coefficients) can come straight from `secrets.token_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from smpc.field import RingArray

SEED_BYTES = 32
_AES_BLOCK_BYTES = 16


MASK_BLOCK_WORDS = 1 << 15
"""Words of keystream `MaskGenerator.add_into` and `subtract_into` produce at a time (128 KB: it stays in cache)."""


class MaskGenerator:
    """Expands 32-byte seeds into uint32 masks of one fixed length, reusing its buffers."""

    __slots__ = ("_blocks", "_full", "_length")

    def __init__(self, length: int) -> None:
        assert length > 0, "mask length must be positive"
        self._length = length
        self._blocks = _KeystreamBuffer(min(length, MASK_BLOCK_WORDS))
        self._full: _KeystreamBuffer | None = None

    @property
    def length(self) -> int:
        return self._length

    def expand(self, seed: bytes) -> RingArray:
        """The mask PRG(seed). The returned array is a view overwritten by the next call (its 8 MB of buffers
        are allocated at the first call: masking and unmasking never need them)."""
        if self._full is None:
            self._full = _KeystreamBuffer(self._length)
        return self._full.next(_encryptor(seed), self._length)

    def add_into(self, accumulator: RingArray, seed: bytes) -> None:
        """accumulator += PRG(seed) (mod 2^32), in place."""
        self._combine(accumulator, seed, np.add)

    def subtract_into(self, accumulator: RingArray, seed: bytes) -> None:
        """accumulator -= PRG(seed) (mod 2^32), in place."""
        self._combine(accumulator, seed, np.subtract)

    def _combine(self, accumulator: RingArray, seed: bytes, operation: np.ufunc) -> None:
        """accumulator = operation(accumulator, PRG(seed)), keystream block by keystream block: the same words
        as `expand`, read from a 128 KB buffer in cache instead of written to and read back from 4 MB per
        million words."""
        assert accumulator.shape == (self._length,), "accumulator of the wrong length"
        encryptor = _encryptor(seed)
        for start in range(0, self._length, MASK_BLOCK_WORDS):
            words = self._blocks.next(encryptor, min(MASK_BLOCK_WORDS, self._length - start))
            window = accumulator[start : start + words.size]
            operation(window, words, out=window)


class _KeystreamBuffer:
    """A zero input and an output buffer for `count` words of AES-CTR keystream, reused call after call."""

    __slots__ = ("_buffer", "_words", "_zeros")

    def __init__(self, count: int) -> None:
        self._zeros = bytes(4 * count)
        self._buffer = bytearray(4 * count + _AES_BLOCK_BYTES - 1)
        self._words = np.frombuffer(self._buffer, dtype="<u4", count=count)

    def next(self, encryptor: CipherContext, count: int) -> RingArray:
        """The encryptor's next `count` words of keystream, as a view overwritten by the next call."""
        written = encryptor.update_into(memoryview(self._zeros)[: 4 * count], self._buffer)
        assert written == 4 * count
        return self._words[:count]


def _encryptor(seed: bytes) -> CipherContext:
    """AES-256-CTR under the seed, counter block zero (see the module doc)."""
    assert len(seed) == SEED_BYTES, "mask seeds are 256-bit"
    return Cipher(algorithms.AES(seed), modes.CTR(bytes(_AES_BLOCK_BYTES))).encryptor()


def keystream_blocks(seed: bytes, length: int, block: int) -> Iterator[RingArray]:
    """The mask PRG(seed) of `length` words, as successive views of at most `block` words each.

    Each view is overwritten by the next one: a consumer keeps what it needs before asking for more. The
    buffers are `block` words whatever the length, so reading a million-word keystream touches a few
    hundred kilobytes of memory instead of allocating 8 MB (fresh pages cost more than the AES itself).
    """
    assert length > 0 and block > 0, "keystream length and block must be positive"
    encryptor = _encryptor(seed)
    buffer = _KeystreamBuffer(min(block, length))
    for start in range(0, length, block):
        yield buffer.next(encryptor, min(block, length - start))


class SeededRandomBytes:
    """A `RandomBytes` whose successive calls read one ChaCha20 keystream under `seed`.

    It is exactly as unpredictable as its seed: reproducible in tests with a fixed seed, and a
    sound production source when seeded with fresh OS randomness.
    """

    __slots__ = ("_encryptor",)

    def __init__(self, seed: bytes) -> None:
        assert len(seed) == SEED_BYTES, "seed the generator with 32 bytes"
        cipher = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None)
        self._encryptor = cipher.encryptor()

    @classmethod
    def from_int(cls, seed: int) -> SeededRandomBytes:
        """Convenience for tests that print an integer seed."""
        return cls(seed.to_bytes(SEED_BYTES, "big"))

    def __call__(self, count: int) -> bytes:
        return self._encryptor.update(bytes(count))
