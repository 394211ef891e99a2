"""Secure aggregation and the validation primitives together, as issue 5's round would use them:
a poisoned update is rejected on its shared sketch statistics and left out of U3, and a poisoner
that lies about its sketch to pass the norm check is caught by the linear identity after unmasking."""

import numpy as np

from smpc import field
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams, quantize
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    ValidationStatistics,
    linear_identity_holds,
    local_statistics,
    reconstruct_sketch_sum,
    reconstruct_statistics,
    share_sketch,
    sketch_seed,
    sketch_update,
    statistic_pairs,
    sum_shares,
)
from tests.smpc_helpers import zero_shares

N, DIM, WIDTH, DEGREE, F, POISONER = 6, 3000, 200, 1, 1, 4
IDS = list(range(1, N + 1))


def updates_with_a_poisoner(rand: SeededRandomBytes, quant: QuantParams) -> dict[int, np.ndarray]:
    """Honest clipped updates; the poisoner skips clipping and sends a huge vector within the ring bound."""
    rng = np.random.default_rng(7)
    honest = {i: quantize(rng.standard_normal(DIM) * 0.01, quant, rand) for i in IDS}
    honest[POISONER] = field.ring_from_signed(np.full(DIM, quant.coordinate_bound // 2, dtype=np.int64))
    return honest


def norms_on_shares(
    sketches: dict[int, np.ndarray], params: SketchParams, rand: SeededRandomBytes
) -> tuple[ValidationStatistics, dict[int, dict[int, np.ndarray]]]:
    dealt = {i: share_sketch(sketches[i], DEGREE, IDS, rand) for i in IDS}
    held = {h: {i: dealt[i][h] for i in IDS} for h in IDS}
    zeros = zero_shares([i - 1 for i in IDS], DEGREE, len(statistic_pairs(IDS)), rand)
    published = {h: local_statistics(held[h], zeros[h - 1]) for h in IDS}
    return reconstruct_statistics(published, IDS, DEGREE, params, F), held


def run(lying_sketch: bool) -> tuple[set[int], bool, np.ndarray, dict[int, np.ndarray]]:
    rand = SeededRandomBytes.from_int(8)
    quant = QuantParams.for_participants(clip_l2=1.0, max_participants=N)
    params = SketchParams.for_clip(1.0, WIDTH)
    quantized = updates_with_a_poisoner(rand, quant)
    sketch = CountSketch(sketch_seed(b"v", 1, b"commitment to the masked inputs", {1: b"\x01" * 32}), DIM, WIDTH)
    sketches = {i: sketch_update(quantized[i], sketch, params, quant, rand) for i in IDS}
    if lying_sketch:
        sketches[POISONER] = sketches[1].copy()
    stats, held = norms_on_shares(sketches, params, rand)
    # sketches are clipped to 2C, so a norm bound between C (plus sketch error) and 2C separates them
    rejected = {i for i, norm_sq in stats.norms_sq.items() if norm_sq > (1.5 * quant.clip_l2) ** 2}
    config = RoundConfig(b"v", 1, tuple(IDS), 2, DIM)
    outcome = run_round(config, quantized, DropSchedule(left_out=frozenset(rejected)), seed=8)
    accepted = sorted(outcome.committed[2])
    total = outcome.results[1].total
    sketch_sum, _ = reconstruct_sketch_sum({h: sum_shares(held[h], accepted) for h in IDS}, DEGREE, F)
    identity = linear_identity_holds(sketch_sum, total, sketch, params, quant, len(accepted))
    return rejected, identity, total, quantized


def test_poisoned_update_is_rejected_on_shares_and_left_out_of_the_sum() -> None:
    rejected, identity, total, quantized = run(lying_sketch=False)
    assert rejected == {POISONER}
    assert identity
    assert np.array_equal(total, field.ring_sum([quantized[i] for i in IDS if i != POISONER], DIM))


def test_a_poisoner_lying_about_its_sketch_passes_validation_but_fails_the_linear_identity() -> None:
    rejected, identity, _, _ = run(lying_sketch=True)
    assert rejected == set()
    assert not identity
