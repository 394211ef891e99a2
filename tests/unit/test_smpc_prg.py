"""Mask PRG: keyed by the whole seed, deterministic, reused buffers, AES-256-CTR keystream."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smpc.prg import MASK_BLOCK_WORDS, MaskGenerator, SeededRandomBytes, keystream_blocks


def test_mask_is_the_aes_256_ctr_keystream_of_the_seed() -> None:
    seed = bytes(range(32))
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    expected = np.frombuffer(encryptor.update(bytes(40)), dtype="<u4")
    assert np.array_equal(MaskGenerator(10).expand(seed), expected)


def test_every_bit_of_the_seed_matters() -> None:
    generator = MaskGenerator(64)
    base = generator.expand(bytes(32)).copy()
    for byte_index in (0, 15, 31):
        flipped = bytearray(32)
        flipped[byte_index] = 0x80
        assert not np.array_equal(generator.expand(bytes(flipped)), base), byte_index


def test_add_then_subtract_is_identity_and_buffers_are_reused() -> None:
    generator = MaskGenerator(1000)
    accumulator = np.arange(1000, dtype=np.uint32)
    first_view = generator.expand(b"\x01" * 32)
    generator.add_into(accumulator, b"\x02" * 32)
    generator.subtract_into(accumulator, b"\x02" * 32)
    assert np.array_equal(accumulator, np.arange(1000, dtype=np.uint32))
    assert np.shares_memory(first_view, generator.expand(b"\x03" * 32))


def test_seeded_random_bytes_is_deterministic_and_a_continuing_stream() -> None:
    one, two = SeededRandomBytes.from_int(7), SeededRandomBytes.from_int(7)
    assert one(10) + one(6) == two(16)
    assert SeededRandomBytes.from_int(8)(16) != SeededRandomBytes.from_int(7)(16)


def test_keystream_blocks_are_the_mask_prg_cut_into_blocks() -> None:
    seed = b"\x03" * 32
    whole = MaskGenerator(1000).expand(seed).copy()
    for block in (1, 7, 256, 999, 1000, 4096):
        assert np.array_equal(np.concatenate([b.copy() for b in keystream_blocks(seed, 1000, block)]), whole), block


@pytest.mark.parametrize("length", [1, MASK_BLOCK_WORDS - 1, MASK_BLOCK_WORDS, 2 * MASK_BLOCK_WORDS + 5])
def test_block_masking_adds_exactly_the_expanded_mask(length: int) -> None:
    """add_into and subtract_into work block by block; their result is the whole mask's, mod 2^32, at and around
    block boundaries (seeded start vector, fixed seeds)."""
    generator = MaskGenerator(length)
    start = np.random.default_rng(length).integers(0, 2**32, length, dtype=np.uint32)
    for seed, operation, method in [(b"\x05" * 32, np.add, generator.add_into),
                                    (b"\x06" * 32, np.subtract, generator.subtract_into)]:
        expected = operation(start, MaskGenerator(length).expand(seed))
        accumulator = start.copy()
        method(accumulator, seed)
        assert accumulator.tobytes() == expected.tobytes()
