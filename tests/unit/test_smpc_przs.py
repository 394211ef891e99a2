"""Pseudo-random zero sharing: zero by construction whatever the keys, and private against t holders."""

import hashlib
import struct

import numpy as np
import pytest

from smpc import field, przs, shamir
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


def test_commitment_and_subset_key_are_sha256_of_the_documented_layout() -> None:
    def tag(kind: bytes, subset: tuple[int, ...]) -> bytes:
        return (b"fednode/validation/v1/przs-" + kind + struct.pack(">H", 5) + b"chain" + struct.pack(">QH", 9, len(subset))
                + b"".join(struct.pack(">H", a) for a in subset))

    c, d = b"\x01" * 32, b"\x02" * 32
    assert przs.commitment(b"chain", 9, (0, 300), 2, c) == hashlib.sha256(
        tag(b"commit", (0, 300)) + struct.pack(">H", 2) + c).digest()
    assert przs.subset_key(b"chain", 9, (0, 300), {7: d, 2: c}) == hashlib.sha256(
        tag(b"key", (0, 300)) + struct.pack(">H", 2) + c + struct.pack(">H", 7) + d).digest()


def test_subsets_a_dealer_and_a_holder_take_part_in() -> None:
    members = [3, 0, 2, 1]
    assert przs.subsets(members, 2) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert przs.dealt_subsets(members, 2, 1) == [(0, 2), (0, 3), (2, 3)]
    assert przs.shared_subsets(members, 2, 1, 3) == [(0, 2)]


def test_the_vanishing_weight_is_one_at_zero_zero_on_the_subset_and_lagrange_elsewhere() -> None:
    p = przs.field.P
    subset = (0, 4)
    assert przs.vanishing_weight(subset, 0) == 1
    assert przs.vanishing_weight(subset, 1) == przs.vanishing_weight(subset, 5) == 0
    expected = (3 - 1) * (3 - 5) * pow((0 - 1) * (0 - 5), p - 2, p) % p
    assert przs.vanishing_weight(subset, 3) == expected


@pytest.mark.parametrize("degree", [1, 2])
def test_a_zero_share_is_the_documented_sum_over_the_holders_keys(degree: int) -> None:
    """Z(h) = sum_A F_A(x_h) sum_{j=1..t} c_{A,j} x_h^j, recomputed with Python integers."""
    p = przs.field.P
    rand = SeededRandomBytes.from_int(40 + degree)
    holder, count, x = 2, 3, 3
    keys = {a: rand(32) for a in przs.subsets(MEMBERS, degree) if holder not in a}
    expected = [0] * count
    for subset, key in keys.items():
        coefficients = przs.field.random_elements(SeededRandomBytes(key), degree * count).reshape(degree, count)
        for j in range(1, degree + 1):
            for k in range(count):
                term = przs.vanishing_weight(subset, x) * int(coefficients[j - 1][k]) * pow(x, j, p)
                expected[k] = (expected[k] + term) % p
    share = przs.zero_share(keys, holder, degree, count)
    assert share.dtype == np.uint64 and share.tolist() == expected


def test_without_keys_or_at_degree_zero_the_zero_share_is_zero() -> None:
    for share in (przs.zero_share({}, 1, 2, 4), przs.zero_share({(0,): b"k" * 32}, 1, 0, 4)):
        assert share.dtype == np.uint64 and share.tolist() == [0, 0, 0, 0]


class _RejectedFirst:
    """A key's stream whose first word is all ones for keys starting with a zero byte: masked to 61 bits it is
    p, the one value `random_elements` rejects and draws again (a real stream does that about once in 2^61)."""

    def __init__(self, key: bytes) -> None:
        self._stream, self._first = SeededRandomBytes(key), key[0] == 0

    def __call__(self, count: int) -> bytes:
        data = self._stream(count)
        if self._first:
            data, self._first = b"\xff" * 8 + data[8:], False
        return data


def test_batched_coefficients_are_each_keys_random_elements_rejected_draws_included(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`zero_share` reads every key's coefficients in one batch: exactly `field.random_elements` of each key's
    stream, also for keys whose first draw is rejected."""
    rand = SeededRandomBytes.from_int(21)
    keys = [rand(32) for _ in range(20)]
    assert np.array_equal(przs.key_elements(keys, 6),
                          np.stack([field.random_elements(SeededRandomBytes(key), 6) for key in keys]))
    keys[3], keys[11] = b"\x00" + keys[3][1:], b"\x00" + keys[11][1:]
    monkeypatch.setattr(przs, "SeededRandomBytes", _RejectedFirst)
    expected = np.stack([field.random_elements(_RejectedFirst(key), 6) for key in keys])
    assert np.array_equal(przs.key_elements(keys, 6), expected)
    assert expected[3, 0] != np.uint64(field.P)
