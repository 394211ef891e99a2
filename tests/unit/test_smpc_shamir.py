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
    with pytest.raises(NotEnoughShares, match="have 3 shares, need 4"):
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
    with pytest.raises(InconsistentShares, match="no degree-3 polynomial fits a majority of 5 shares"):
        shamir.reconstruct(shares, 3)


def test_shares_lie_on_a_polynomial_of_exactly_the_degree() -> None:
    """Degree t means t shares reveal nothing: the t + 1 ... n shares must not fit a lower degree."""
    for degree in (1, 2, 3, 4):
        shares = shamir.share_vector(np.arange(3, dtype=np.uint64), degree, IDS, SeededRandomBytes.from_int(degree))
        assert _all_fit(shares, degree) and not _all_fit(shares, degree - 1), degree


def _all_fit(shares: dict[int, np.ndarray], degree: int) -> bool:
    """Whether one polynomial of this degree goes through every share."""
    try:
        return shamir.reconstruct(shares, degree).inconsistent_ids == ()
    except InconsistentShares:
        return False


def test_checked_means_a_share_beyond_the_t_plus_1_needed() -> None:
    shares = shamir.share_vector(np.arange(3, dtype=np.uint64), 2, IDS, SeededRandomBytes.from_int(11))
    assert not shamir.reconstruct({x: shares[x] for x in (1, 2, 3)}, 2).checked
    assert shamir.reconstruct({x: shares[x] for x in (1, 2, 3, 4)}, 2).checked


@pytest.mark.parametrize("chunk", range(shamir.SECRET_CHUNKS))
def test_a_chunk_wider_than_its_bytes_is_a_typed_error(chunk: int) -> None:
    """Chunks 0-3 carry 7 bytes and chunk 4 the last 4: one more bit is a dealer's fault, not a crash."""
    width = 4 if chunk == shamir.SECRET_CHUNKS - 1 else 7
    elements = shamir.secret_to_field(b"\xff" * 32)
    assert int(elements[chunk]) == (1 << (8 * width)) - 1
    assert shamir.field_to_secret(elements) == b"\xff" * 32
    elements[chunk] = np.uint64(1 << (8 * width))
    with pytest.raises(InconsistentShares, match="^reconstructed chunk does not fit a 32-byte secret$"):
        shamir.field_to_secret(elements)


def _points(coefficients: list[int], ids: list[int], wrong: dict[int, int]) -> list[tuple[int, int]]:
    value = {x: sum(c * x**k for k, c in enumerate(coefficients)) % field.P for x in ids}
    return [(x, (value[x] + wrong.get(x, 0)) % field.P) for x in ids]


def test_berlekamp_welch_with_fewer_errors_than_it_can_correct() -> None:
    """m = 7, t = 2 corrects e = 2 errors; with 0 or 1 the linear system has free variables."""
    coefficients = [5, 7, 11]
    for wrong in ({}, {3: 1}, {2: 9, 6: 4}):
        assert shamir.berlekamp_welch(_points(coefficients, IDS, wrong), 2) == coefficients, wrong


def test_berlekamp_welch_refuses_a_square_system_with_too_many_errors() -> None:
    """m = 4, t = 1: e = 1, and the 4 x 4 system is solvable for any values; with 2 errors the quotient
    leaves a remainder, which must give None (then InconsistentShares), not a wrong polynomial."""
    assert shamir.berlekamp_welch(_points([5, 7], [1, 2, 3, 4], {1: 1, 2: 3}), 1) is None
    assert shamir.berlekamp_welch(_points([5, 7], [1, 2, 3, 4], {4: 1}), 1) == [5, 7]


def test_compression_weights_depend_on_every_bit_of_every_share() -> None:
    """A share holder must not be able to aim an error at the random combination: changing the last
    bit of one coordinate of one share changes the weights, hence the other shares' compressed values."""
    shares = shamir.share_vector(np.arange(4, dtype=np.uint64), 1, IDS[:4], SeededRandomBytes.from_int(12))
    before = shamir._compress(shares, IDS[:4])
    shares[1] = shares[1] ^ np.array([0, 0, 0, 1], dtype=np.uint64)
    after = shamir._compress(shares, IDS[:4])
    assert all(b != a for b, a in zip(before[1:], after[1:], strict=True))


def test_the_linear_solver_skips_a_column_without_pivot() -> None:
    """Berlekamp-Welch's system is singular when there are fewer errors than it corrects: a column with no
    pivot is a free variable (set to 0), and elimination goes on with the next column."""
    assert shamir._solve_mod_p([[0, 1], [0, 2]], [3, 6]) == [0, 3]
    assert shamir._solve_mod_p([[0, 1], [0, 2]], [3, 7]) is None


def test_max_faulty_asks_for_t_plus_1_plus_f_agreeing_shares() -> None:
    """With f possible liars a polynomial is trusted only when t + 1 + f shares agree with it."""
    def wrong(shares: dict[int, np.ndarray], ids: tuple[int, ...]) -> dict[int, np.ndarray]:
        return {x: field.add(s, np.ones(3, dtype=np.uint64)) if x in ids else s for x, s in shares.items()}

    shares = shamir.share_vector(np.arange(3, dtype=np.uint64), 1, IDS, SeededRandomBytes.from_int(13))
    with pytest.raises(NotEnoughShares, match="^have 3 shares, need 4 with 2 possibly wrong$"):
        shamir.reconstruct({x: shares[x] for x in (1, 2, 3)}, 1, max_faulty=2)
    six = {x: shares[x] for x in IDS[:6]}
    at_limit = shamir.reconstruct(wrong(six, (2, 5)), 1, max_faulty=2)  # 4 agree: exactly t + 1 + f
    assert at_limit.inconsistent_ids == (2, 5) and at_limit.secret.tolist() == [0, 1, 2]
    with pytest.raises(InconsistentShares) as short:
        shamir.reconstruct(wrong(shares, (2, 5)), 1, max_faulty=4)  # 5 of 7 agree, 6 needed
    assert short.value.suspects == (2, 5)
    assert str(short.value) == ("the best degree-1 polynomial agrees with 5 of 7 shares, fewer than the 6 that rule "
                                "out 4 liars; off it: [2, 5]")


@pytest.mark.parametrize("group_elements", [1 << 20, 7])
def test_shares_are_the_polynomials_evaluated_by_horner_in_python_integers(group_elements: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`share_vector` evaluates all holders at once (in groups bounded by `_EVALUATION_ELEMENTS`): each share is
    exactly secret + c_1 x + ... + c_t x^t with the coefficients drawn, in order, from the same random bytes."""
    monkeypatch.setattr(shamir, "_EVALUATION_ELEMENTS", group_elements)
    secret = np.array([0, 1, field.P - 1, 12345], dtype=np.uint64)
    for degree in (0, 1, 3):
        shares = shamir.share_vector(secret, degree, IDS, SeededRandomBytes.from_int(13))
        coefficients = field.random_elements(SeededRandomBytes.from_int(13), degree * 4).reshape(degree, 4)
        for x in IDS:
            expected = []
            for k, s in enumerate(secret):
                value = 0
                for c in [*coefficients[::-1, k], s]:
                    value = (value * x + int(c)) % field.P
                expected.append(value)
            assert [int(v) for v in shares[x]] == expected, (degree, x)
