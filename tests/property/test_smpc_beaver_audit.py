"""The preprocessing audit convicts exactly the holders that lied, never an honest one (hypothesis, seeded)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc import beaver, field
from smpc.errors import InconsistentShares
from smpc.prg import SeededRandomBytes
from tests.beaver_helpers import Consortium

WIDTH = 8


@st.composite
def attacks(draw: st.DrawFn) -> tuple[int, int, int, dict[int, list[int]], frozenset[int], bool]:
    """(N, f, seed, liar -> the statistic positions it changes, the liars silent at the audit, junk reveals)."""
    n, f = draw(st.sampled_from([(4, 1), (7, 2), (10, 3)]))
    count = n * (n + 1) // 2
    liars = draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=f, unique=True))
    positions = {liar: draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=count, unique=True))
                 for liar in liars}
    silent = frozenset(draw(st.lists(st.sampled_from(liars), unique=True))) if liars else frozenset()
    return n, f, draw(st.integers(0, 2**32)), positions, silent, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(attacks())
def test_the_audit_convicts_exactly_the_liars(attack: tuple[int, int, int, dict[int, list[int]], frozenset[int], bool]
                                              ) -> None:
    n, f, seed, positions, silent, junk = attack
    c = Consortium(n, f, WIDTH, seed)
    published = c.preprocessing()
    rand = SeededRandomBytes.from_int(seed)
    for liar, changed in positions.items():
        bump = np.zeros(c.layout.statistic_count, dtype=np.uint64)
        bump[changed] = field.random_elements(rand, len(changed)) | np.uint64(1)
        published[liar + 1] = field.add(published[liar + 1], bump)
    if not positions:
        assert np.array_equal(beaver.open_preprocessing(published, c.layout, c.degree, c.f), c.opened())
        return
    with pytest.raises(InconsistentShares):
        beaver.open_preprocessing(published, c.layout, c.degree, c.f)
    forged = [(d, a, rand(32)) for d in positions for a in c.contributions[d]] if junk else []
    verdict = beaver.audit(c.attempt, c.members, c.degree, c.layout, c.commitments, forged + c.reveals(silent),
                           published)
    assert verdict == beaver.AuditResult(tuple(sorted(positions)), ()), f"seed {seed}"
