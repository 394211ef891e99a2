"""Quorum math against a brute-force reference, for every small N and f."""

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.quorum import max_faulty, quorum_size


def brute_force_quorum(n: int, f: int) -> int:
    """Smallest q for which every pair of q-subsets of range(n) shares at least f+1 members."""
    for q in range(1, n + 1):
        sets = [set(c) for c in combinations(range(n), q)]
        if all(len(a & b) >= f + 1 for a in sets for b in sets):
            return q
    raise AssertionError("no quorum")


@pytest.mark.parametrize("n", range(1, 11))
def test_quorum_matches_brute_force_for_every_tolerable_f(n: int) -> None:
    for f in range(max_faulty(n) + 1):
        assert quorum_size(n, f) == brute_force_quorum(n, f), (n, f)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_quorum_intersects_and_stays_reachable(n: int, data: st.DataObject) -> None:
    f = data.draw(st.integers(min_value=0, max_value=max_faulty(n)))
    q = quorum_size(n, f)
    assert 2 * q - n >= f + 1, "two quorums must share an honest replica"
    assert q <= n - f, "a quorum must be reachable with f replicas silent"
    assert 2 * (q - 1) - n < f + 1, "q is the smallest such size"


def test_classic_sizes() -> None:
    assert [quorum_size(3 * f + 1, f) for f in range(5)] == [1, 3, 5, 7, 9]
    assert quorum_size(5, 1) == 4, "2f+1 = 3 would let two quorums meet only in a Byzantine replica"
    assert max_faulty(4) == 1 and max_faulty(7) == 2 and max_faulty(3) == 0
