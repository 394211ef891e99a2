"""Masked sum equals plain sum mod 2^32 for random sizes and dropout sets; masks look uniform."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc.masking import mask_input, unmask_sum
from smpc.prg import MaskGenerator, SeededRandomBytes


def _setup(n: int, length: int, seed: int) -> tuple[dict, dict, dict]:
    rand = SeededRandomBytes.from_int(seed)
    ids = list(range(1, n + 1))
    updates = {i: np.frombuffer(rand(4 * length), dtype="<u4").astype(np.uint32) for i in ids}
    self_seeds = {i: rand(32) for i in ids}
    pair_seeds = {frozenset(pair): rand(32) for pair in itertools.combinations(ids, 2)}
    return updates, self_seeds, pair_seeds


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=9),
    length=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32),
    data=st.data(),
)
def test_unmasked_sum_of_survivors_is_their_plain_sum(n: int, length: int, seed: int, data: st.DataObject) -> None:
    updates, self_seeds, pair_seeds = _setup(n, length, seed)
    generator = MaskGenerator(length)
    ids = sorted(updates)
    survivors = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    dropped = set(ids) - survivors
    masked = {
        i: mask_input(
            updates[i], self_seeds[i], {j: pair_seeds[frozenset((i, j))] for j in ids if j != i}, i, generator
        )
        for i in survivors
    }
    result = unmask_sum(
        masked,
        {i: self_seeds[i] for i in survivors},
        {(d, j): pair_seeds[frozenset((d, j))] for d in dropped for j in survivors},
        generator,
    )
    expected = np.zeros(length, dtype=np.uint32)
    for i in survivors:
        expected += updates[i]
    assert np.array_equal(result, expected), f"seed={seed}"


def test_masked_vectors_look_uniform() -> None:
    """Chi-square of the top byte of a masked all-zero update over 256 bins, and no correlation
    between the masked vectors of two participants holding the same update."""
    length = 1 << 16
    _, self_seeds, pair_seeds = _setup(3, length, seed=14)
    generator = MaskGenerator(length)
    zero = np.zeros(length, dtype=np.uint32)
    masked = [
        mask_input(zero, self_seeds[i], {j: pair_seeds[frozenset((i, j))] for j in (1, 2, 3) if j != i}, i, generator)
        for i in (1, 2)
    ]
    for vector in masked:
        counts = np.bincount(vector >> 24, minlength=256)
        expected = length / 256
        chi_square = float(((counts - expected) ** 2 / expected).sum())
        assert chi_square < 340, chi_square  # 255 dof, false-failure probability ~ 3e-4
    centred = [v.astype(np.float64) - 2**31 for v in masked]
    correlation = float(np.corrcoef(centred[0], centred[1])[0, 1])
    assert abs(correlation) < 0.02, correlation  # ~ 5 standard deviations at n = 65536
