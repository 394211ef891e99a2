"""Shamir sharing and field arithmetic against naive big-integer references (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc import field, shamir
from smpc.prg import SeededRandomBytes

elements = st.integers(min_value=0, max_value=field.P - 1)


def naive_lagrange_at_zero(points: dict[int, int]) -> int:
    """Textbook Lagrange interpolation at 0 with Python integers, one term at a time."""
    total = 0
    for x_k, y_k in points.items():
        term = y_k
        for x_m in points:
            if x_m != x_k:
                term = term * x_m * pow(x_m - x_k, -1, field.P) % field.P
        total = (total + term) % field.P
    return total


def naive_poly(coefficients: list[int], x: int) -> int:
    return sum(c * pow(x, k, field.P) for k, c in enumerate(coefficients)) % field.P


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(elements, elements), min_size=1, max_size=50))
def test_vectorised_mul_add_sub_match_big_integers(pairs: list[tuple[int, int]]) -> None:
    a = np.array([x for x, _ in pairs], dtype=np.uint64)
    b = np.array([y for _, y in pairs], dtype=np.uint64)
    assert field.mul(a, b).tolist() == [x * y % field.P for x, y in pairs]
    assert field.add(a, b).tolist() == [(x + y) % field.P for x, y in pairs]
    assert field.sub(a, b).tolist() == [(x - y) % field.P for x, y in pairs]


@settings(max_examples=100, deadline=None)
@given(
    coefficients=st.lists(elements, min_size=1, max_size=6),
    ids=st.sets(st.integers(min_value=1, max_value=10_000), min_size=6, max_size=12),
)
def test_interpolation_matches_naive_lagrange(coefficients: list[int], ids: set[int]) -> None:
    points = {x: naive_poly(coefficients, x) for x in sorted(ids)}
    vector_points = {x: np.array([y], dtype=np.uint64) for x, y in points.items()}
    assert int(shamir.interpolate_at(vector_points, 0)[0]) == naive_lagrange_at_zero(points)
    assert naive_lagrange_at_zero(points) == coefficients[0]


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    degree=st.integers(min_value=0, max_value=4),
    extra=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=2**32),
    data=st.data(),
)
def test_shares_reconstruct_and_match_the_reference(
    secret: bytes, degree: int, extra: int, seed: int, data: st.DataObject
) -> None:
    ids = list(range(1, degree + 1 + extra + 1))
    shares = shamir.share_secret(secret, degree, ids, SeededRandomBytes.from_int(seed))
    subset = data.draw(st.lists(st.sampled_from(ids), min_size=degree + 1, unique=True))
    got, result = shamir.reconstruct_secret({x: shares[x] for x in subset}, degree)
    assert got == secret, f"seed={seed}"
    assert result.inconsistent_ids == ()
    chunk_points = {x: int(shares[x][0]) for x in subset[: degree + 1]}
    assert naive_lagrange_at_zero(chunk_points) == int(shamir.secret_to_field(secret)[0])


@settings(max_examples=60, deadline=None)
@given(
    degree=st.integers(min_value=1, max_value=3),
    n_wrong=st.integers(min_value=1, max_value=3),
    seed=st.integers(min_value=0, max_value=2**32),
    data=st.data(),
)
def test_detection_names_exactly_the_wrong_shares(degree: int, n_wrong: int, seed: int, data: st.DataObject) -> None:
    """With m >= t + 1 + 2e shares and e wrong ones, the wrong ids are found and the secret kept."""
    rand = SeededRandomBytes.from_int(seed)
    ids = list(range(1, degree + 2 + 2 * n_wrong))
    secret = field.random_elements(rand, 4)
    shares = shamir.share_vector(secret, degree, ids, rand)
    wrong = data.draw(st.lists(st.sampled_from(ids), min_size=n_wrong, max_size=n_wrong, unique=True))
    for x in wrong:
        coordinate = data.draw(st.integers(min_value=0, max_value=3))
        shares[x] = shares[x].copy()
        shares[x][coordinate] = (shares[x][coordinate] + np.uint64(1)) % np.uint64(field.P)
    result = shamir.reconstruct(shares, degree)
    assert np.array_equal(result.secret, secret), f"seed={seed}"
    assert result.inconsistent_ids == tuple(sorted(wrong)), f"seed={seed}"


@settings(max_examples=100, deadline=None)
@given(st.lists(elements, min_size=0, max_size=300))
def test_sum_mod_matches_big_integers(values: list[int]) -> None:
    assert int(field.sum_mod(np.array(values, dtype=np.uint64))) == sum(values) % field.P


@settings(max_examples=150, deadline=None)
@given(
    coefficients=st.lists(elements, min_size=1, max_size=5),
    n_points=st.integers(min_value=1, max_value=14),
    data=st.data(),
)
def test_berlekamp_welch_decodes_up_to_e_errors_and_never_returns_a_far_polynomial(
    coefficients: list[int], n_points: int, data: st.DataObject
) -> None:
    degree = len(coefficients) - 1
    m = degree + n_points
    xs = list(range(1, m + 1))
    ys = [naive_poly(coefficients, x) for x in xs]
    wrong = data.draw(st.sets(st.sampled_from(xs), max_size=m))
    for x in wrong:
        ys[x - 1] = (ys[x - 1] + data.draw(st.integers(min_value=1, max_value=field.P - 1))) % field.P
    decoded = shamir.berlekamp_welch(list(zip(xs, ys)), degree)
    budget = (m - degree - 1) // 2
    if len(wrong) <= budget:
        assert decoded is not None and decoded == coefficients + [0] * (degree + 1 - len(coefficients))
    if decoded is not None:
        assert len(decoded) == degree + 1
        assert sum(naive_poly(decoded, x) != y for x, y in zip(xs, ys)) <= budget


def test_reconstruction_with_many_holders_and_many_liars_is_fast() -> None:
    """25 holders, degree 8, 8 liars: decoding is one linear system, not C(25, 9) subsets."""
    rand = SeededRandomBytes.from_int(30)
    ids = list(range(1, 26))
    secret = field.random_elements(rand, 40)
    shares = shamir.share_vector(secret, 8, ids, rand)
    liars = [2, 3, 5, 8, 13, 21, 22, 25]
    for x in liars:
        shares[x] = field.add(shares[x], np.ones(40, dtype=np.uint64))
    result = shamir.reconstruct(shares, 8)
    assert np.array_equal(result.secret, secret) and result.inconsistent_ids == tuple(liars)
