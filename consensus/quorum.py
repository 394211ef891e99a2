"""Quorum arithmetic for N replicas of which at most f are Byzantine.

Two quorums must intersect in at least f+1 replicas, so that they share at least one honest replica:
2q - n >= f + 1, hence q = ceil((n + f + 1) / 2). For n = 3f + 1 this is the familiar 2f + 1; for
other n it is what keeps safety (e.g. n = 5, f = 1 gives q = 4, not 3).
"""


def max_faulty(n: int) -> int:
    """The largest f with n >= 3f + 1."""
    assert n >= 1, n
    return (n - 1) // 3


def quorum_size(n: int, f: int) -> int:
    """Smallest q such that any two q-subsets of n replicas intersect in at least f + 1 replicas."""
    assert 0 <= f <= max_faulty(n), (n, f)
    return (n + f + 2) // 2
