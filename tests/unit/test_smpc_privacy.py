"""Issue 14, finding 4: f colluders pool every byte they received in a validated round and try to rebuild
an honest member's sketch or update. With t_v = 1, two holders rebuilt every member's sketch, which for the
default logistic regression (d = 31 < k) is the update itself. With t_v = f they hold f points of each
degree-f sketch polynomial, a masked input whose honest pairwise masks they cannot remove, and statistics
re-randomized by a zero sharing whose key for their own subset they lack: every attempt fails.

The colluders' pool: the sketch shares and PRZS contributions dealt to them (`SecureRound._dealt`), the
masked inputs and every ledger transaction (statistic shares included: `Cluster.wire`), their own pairwise
mask seeds, and, after unmasking, every survivor's self-mask seed b_i (the reveals give it to everyone).
"""

from __future__ import annotations

import numpy as np
import pytest

from node.secure_round import decide_accepted
from smpc import field, shamir
from smpc import messages as sam
from smpc.masking import mask_input
from tests.unit.test_secure_round import Cluster

N, F, VICTIM = 7, 2, 0
COLLUDERS = (5, 6)


def run(length: int, validation_degree: int, seed: int) -> Cluster:
    c = Cluster(N, seed, validate=True, validation_degree=validation_degree, length=length, width=200)
    rng = np.random.default_rng(seed)
    c.mask_updates({i: rng.normal(0, 0.3, length) for i in range(N)})
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    assert VICTIM in outcome.accepted and c.rounds[COLLUDERS[0]].try_sum(deadline_passed=False) is not None
    return c


def true_sketch(c: Cluster) -> np.ndarray:
    """The victim's sketch, from every holder's share (the test's oracle, not the colluders')."""
    shares = {h + 1: c.rounds[h]._dealt[VICTIM].share for h in range(N) if h != VICTIM}
    return field.to_signed(shamir.reconstruct(shares, c.setup.degree).secret)  # type: ignore[union-attr]


def colluders_sketch(c: Cluster) -> np.ndarray:
    """Their best guess: the polynomial of lowest degree through the shares they hold, at zero."""
    pooled = {h + 1: c.rounds[h]._dealt[VICTIM].share for h in COLLUDERS}
    return field.to_signed(shamir.interpolate_at(pooled, 0))


def colluders_update(c: Cluster, colluders: tuple[int, ...] = COLLUDERS) -> np.ndarray:
    """The victim's masked input, less its self mask and every pairwise mask the colluders share with it."""
    machine = c.rounds[VICTIM].machine
    masked = next(m for m in (sam.decode(p, c.rounds[VICTIM].config.limits) for p in c.wire[COLLUDERS[0]]
                              if sam.peek_tag(p) == sam.MaskedInput.TAG) if m.sender == VICTIM + 1).vector()
    pair_seeds = {h + 1: c.rounds[h].machine._pair_seeds[VICTIM + 1] for h in colluders}
    known = mask_input(np.zeros_like(masked), machine._secrets.self_seed, pair_seeds, VICTIM + 1,  # type: ignore[union-attr]
                       machine._generator)
    return field.ring_to_signed(masked - known)


def relative_error(guess: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(guess.astype(np.float64) - truth) / np.linalg.norm(truth.astype(np.float64)))


@pytest.mark.parametrize("length", [31, 1_000_000], ids=["default-model", "1M-parameters"])
def test_f_colluders_pooling_everything_recover_neither_sketch_nor_update(length: int) -> None:
    c = run(length, validation_degree=F, seed=length % 97)
    assert relative_error(colluders_sketch(c), true_sketch(c)) > 1e3
    truth = field.ring_to_signed(c.rounds[VICTIM]._masked_quantized)  # type: ignore[arg-type]
    assert relative_error(colluders_update(c), truth) > 100  # uniform masks of 2^31 against updates of 2^21


def test_the_same_attack_reads_the_sketch_when_the_degree_is_below_f() -> None:
    """The controls that show the attacks work: with t_v = 1, the two colluders' shares are the sketch; and
    a coalition of every other member removes every mask."""
    c = run(31, validation_degree=1, seed=5)
    assert np.array_equal(colluders_sketch(c), true_sketch(c))
    truth = field.ring_to_signed(c.rounds[VICTIM]._masked_quantized)  # type: ignore[arg-type]
    assert np.array_equal(colluders_update(c, tuple(range(1, N))), truth)
