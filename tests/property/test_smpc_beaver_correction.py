"""Statistics at N = 3f + 1 are the true ones whatever up to f faulty holders do, silent or lying (hypothesis, seeded)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc import beaver, field
from smpc.prg import SeededRandomBytes
from smpc.validation import reconstruct_statistics
from tests.beaver_helpers import Consortium

WIDTH = 8


@st.composite
def faults(draw: st.DrawFn) -> tuple[int, int, int, frozenset[int], frozenset[int], bool]:
    """(N, f, seed, the silent share ids, the lying share ids, whether a liar's D differs per receiver)."""
    n, f = draw(st.sampled_from([(4, 1), (7, 2), (10, 3)]))
    faulty = draw(st.lists(st.integers(1, n), max_size=f, unique=True))
    silent = draw(st.integers(0, len(faulty)))
    return n, f, draw(st.integers(0, 2**32)), frozenset(faulty[:silent]), frozenset(faulty[silent:]), draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(faults())
def test_up_to_f_silent_or_lying_holders_leave_the_statistics_exact(
    fault: tuple[int, int, int, frozenset[int], frozenset[int], bool]
) -> None:
    n, f, seed, silent, liars, per_receiver = fault
    c = Consortium(n, f, WIDTH, seed)
    rand = SeededRandomBytes.from_int(seed)
    truth = reconstruct_statistics(c.today(), c.ids, c.degree, c.params, c.f)
    honest_d = c.differences()

    def lie(vector: np.ndarray) -> np.ndarray:
        return field.random_elements(rand, vector.size).reshape(vector.shape)

    shared_lies = {x: lie(honest_d[x]) for x in liars}
    decoded = {}
    for receiver in sorted(set(c.ids) - silent - liars):
        seen = {x: (lie(v) if per_receiver else shared_lies[x]) if x in liars else v
                for x, v in honest_d.items() if x not in silent}
        decoded[receiver] = c.decoded(seen)
        assert not decoded[receiver].undecodable, f"seed {seed}"
    values = next(iter(decoded.values())).values
    assert all(np.array_equal(d.values[o], values[o]) for d in decoded.values() for o in c.ids), f"seed {seed}"
    shares = {x: lie(v) if x in liars else v for x, v in c.statistic_shares(values).items() if x not in silent}
    stats = beaver.reconstruct_statistics(shares, c.ids, c.degree, c.params, c.f)
    assert (stats.norms_sq, stats.distances_sq, stats.out_of_range) == (
        truth.norms_sq, truth.distances_sq, truth.out_of_range), f"seed {seed}"
    assert stats.inconsistent_publishers == tuple(sorted(liars)), f"seed {seed}"
