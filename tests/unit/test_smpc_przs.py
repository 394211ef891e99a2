"""Pseudo-random zero sharing: zero by construction whatever the keys, and private against t holders."""

import numpy as np
import pytest

from smpc import przs, shamir
from smpc.prg import SeededRandomBytes

MEMBERS = list(range(7))


def shares(keys: dict[przs.Subset, bytes], degree: int, count: int = 5) -> dict[int, np.ndarray]:
    return {h + 1: przs.zero_share({a: k for a, k in keys.items() if h not in a}, h, degree, count) for h in MEMBERS}


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_any_keys_give_a_degree_2t_sharing_of_zero(degree: int) -> None:
    """No choice of keys (here: random, all equal, or chosen by one member for every subset it knows)
    can make the holders' shares a sharing of anything but zero."""
    rand = SeededRandomBytes.from_int(degree)
    for keys in ({a: rand(32) for a in przs.subsets(MEMBERS, degree)},
                 dict.fromkeys(przs.subsets(MEMBERS, degree), b"\x00" * 32),
                 {a: (b"\xff" * 32 if 0 not in a else rand(32)) for a in przs.subsets(MEMBERS, degree)}):
        points = shares(keys, degree)
        result = shamir.reconstruct(points, 2 * degree)
        assert not result.inconsistent_ids and result.checked == (2 * degree + 1 < len(MEMBERS))
        assert np.array_equal(result.secret, np.zeros(5, dtype=np.uint64))
        assert not np.array_equal(points[1], np.zeros(5, dtype=np.uint64))


def test_t_holders_cannot_compute_the_others_zero_shares() -> None:
    """Colluders C = {1, 4} know every key but r_C: changing r_C leaves their own shares alone and moves
    every other holder's, so what they know does not determine the rest of the published polynomial."""
    rand = SeededRandomBytes.from_int(9)
    keys = {a: rand(32) for a in przs.subsets(MEMBERS, 2)}
    before = shares(keys, 2)
    after = shares({**keys, (1, 4): rand(32)}, 2)
    for h in MEMBERS:
        same = np.array_equal(before[h + 1], after[h + 1])
        assert same == (h in (1, 4)), h


def test_commitments_and_keys_are_bound_to_chain_round_subset_and_dealer() -> None:
    c = b"\x01" * 32
    base = przs.commitment(b"chain", 1, (0, 1), 2, c)
    assert len({base, przs.commitment(b"chain", 2, (0, 1), 2, c), przs.commitment(b"chain", 1, (0, 2), 2, c),
                przs.commitment(b"chain", 1, (0, 1), 3, c), przs.commitment(b"other", 1, (0, 1), 2, c)}) == 5
    assert przs.subset_key(b"chain", 1, (0,), {1: c, 2: c}) != przs.subset_key(b"chain", 1, (0,), {1: c})
