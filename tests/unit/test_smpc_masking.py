"""smpc.masking on its own: the self mask stays on a masked input whose pairwise masks are all known,
and unmasking removes exactly the self masks and the dropped members' pairwise masks."""

from __future__ import annotations

import numpy as np
import pytest

from smpc import field
from smpc.masking import mask_input, unmask_sum
from smpc.prg import MaskGenerator, SeededRandomBytes

LENGTH = 16


def _seed(rand: SeededRandomBytes) -> bytes:
    return rand(32)


def _setup(n: int, seed: int) -> tuple[dict[int, np.ndarray], dict[int, bytes], dict[tuple[int, int], bytes]]:
    rand = SeededRandomBytes.from_int(seed)
    updates = {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in range(1, n + 1)}
    self_seeds = {i: _seed(rand) for i in updates}
    pair = {(i, j): _seed(rand) for i in updates for j in updates if i < j}
    pair |= {(j, i): s for (i, j), s in list(pair.items())}
    return updates, self_seeds, pair


def _masked(updates: dict[int, np.ndarray], self_seeds: dict[int, bytes], pair: dict[tuple[int, int], bytes],
            generator: MaskGenerator) -> dict[int, np.ndarray]:
    return {
        i: mask_input(q, self_seeds[i], {j: pair[(i, j)] for j in updates if j != i}, i, generator).copy()
        for i, q in updates.items()
    }


def test_knowing_every_pairwise_key_of_a_member_leaves_its_self_mask() -> None:
    generator = MaskGenerator(LENGTH)
    updates, self_seeds, pair = _setup(4, seed=1)
    masked = _masked(updates, self_seeds, pair, generator)
    residue = masked[2].copy()
    generator.subtract_into(residue, pair[(2, 3)])
    generator.subtract_into(residue, pair[(2, 4)])
    generator.add_into(residue, pair[(2, 1)])
    assert np.count_nonzero(residue == updates[2]) <= 1
    generator.subtract_into(residue, self_seeds[2])
    assert np.array_equal(residue, updates[2]), "pairwise masks are +PRG(s_ij) for j > i and -PRG(s_ij) for j < i"


@pytest.mark.parametrize("dropped", [(), (1,), (4,), (2, 3), (1, 4)])
def test_unmask_sum_removes_self_masks_and_the_dropped_members_pair_masks(dropped: tuple[int, ...]) -> None:
    generator = MaskGenerator(LENGTH)
    updates, self_seeds, pair = _setup(4, seed=2)
    masked = _masked(updates, self_seeds, pair, generator)
    survivors = [i for i in updates if i not in dropped]
    total = unmask_sum(
        {i: masked[i] for i in survivors},
        {i: self_seeds[i] for i in survivors},
        {(d, j): pair[(d, j)] for d in dropped for j in survivors},
        generator,
    )
    assert np.array_equal(total, field.ring_sum([updates[i] for i in survivors], LENGTH))
    assert all(np.array_equal(masked[i], _masked(updates, self_seeds, pair, generator)[i]) for i in updates), (
        "unmasking must not modify the masked inputs"
    )
