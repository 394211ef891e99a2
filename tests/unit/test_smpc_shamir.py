"""Shamir sharing: reconstruction, privacy of t shares, inconsistent-share detection."""

import numpy as np
import pytest

from smpc import field, shamir
from smpc.errors import InconsistentShares, NotEnoughShares
from smpc.prg import SeededRandomBytes

IDS = list(range(1, 8))


def test_any_degree_plus_one_shares_rebuild_a_32_byte_secret() -> None:
    secret = bytes(range(32))
    shares = shamir.share_secret(secret, 3, IDS, SeededRandomBytes.from_int(2))
    for subset in ([1, 2, 3, 4], [4, 5, 6, 7], [1, 3, 5, 7]):
        got, result = shamir.reconstruct_secret({x: shares[x] for x in subset}, 3)
        assert got == secret and not result.checked


def test_all_ones_secret_fits_the_chunking() -> None:
    secret = b"\xff" * 32
    shares = shamir.share_secret(secret, 2, IDS, SeededRandomBytes.from_int(3))
    assert shamir.reconstruct_secret(shares, 2)[0] == secret


def test_too_few_shares_is_a_typed_error() -> None:
    shares = shamir.share_secret(bytes(32), 3, IDS, SeededRandomBytes.from_int(4))
    with pytest.raises(NotEnoughShares):
        shamir.reconstruct({1: shares[1], 2: shares[2], 3: shares[3]}, 3)


def test_fewer_than_t_plus_one_shares_look_uniform() -> None:
    """Privacy smoke test: one share of a fixed secret is uniform over independent sharings.

    A sharing that forgot its random coefficients would hand the secret itself to every holder;
    here the low byte of share 1 of 4096 zero secrets (degree 1, one polynomial per coordinate)
    must spread evenly over 256 bins.
    """
    shares = shamir.share_vector(np.zeros(4096, dtype=np.uint64), 1, [1, 2], SeededRandomBytes.from_int(5))
    counts = np.bincount((shares[1] & np.uint64(0xFF)).astype(np.int64), minlength=256)
    chi_square = float(((counts - 16) ** 2 / 16).sum())
    assert chi_square < 340, chi_square  # 255 degrees of freedom; p ~ 3e-4 of a false failure


def test_a_wrong_share_is_named_and_the_secret_still_recovered() -> None:
    secret = field.random_elements(SeededRandomBytes.from_int(6), 50)
    shares = shamir.share_vector(secret, 2, IDS, SeededRandomBytes.from_int(7))
    shares[1] = field.add(shares[1], np.ones(50, dtype=np.uint64))
    shares[5] = shares[5].copy()
    shares[5][17] ^= np.uint64(1)
    result = shamir.reconstruct(shares, 2)
    assert np.array_equal(result.secret, secret)
    assert result.inconsistent_ids == (1, 5) and result.checked


def test_too_many_wrong_shares_is_a_typed_error_not_a_wrong_secret() -> None:
    secret = field.random_elements(SeededRandomBytes.from_int(8), 3)
    shares = shamir.share_vector(secret, 3, IDS[:5], SeededRandomBytes.from_int(9))
    shares[2] = field.add(shares[2], np.ones(3, dtype=np.uint64))
    with pytest.raises(InconsistentShares):
        shamir.reconstruct(shares, 3)
