"""The per-round norm bound B (``RobustRule.clip_factor``): every member clips to B before masking, and an
update whose norm on the statistics exceeds B is rejected outright. Attack first: an overlong update that
points the honest way is accepted by the rule without B and rejected with it; then the honest side: a long
honest step is shortened, not rejected; then B itself: a function of the committed statistics alone."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ml import data as mldata
from ml.robust import Decision, RobustRule, decide, next_clip_bound
from node.config import ConfigError, load_genesis
from node.learning import LearningPlan
from node.settings import round_settings
from node.testnet import create_testnet
from node.weighting import Weighting
from smpc.sketch import CountSketch

BOUNDED = RobustRule(f=2, clip_factor=1.0, norm_ratio=0.0)
WEIGHTING = Weighting(clip_l2=10.0, sample_cap=1000)


def _honest(seed: int, n: int = 5, dim: int = 40) -> np.ndarray:
    """Late-round honest steps: a common direction plus as much noise, norms about 1.4."""
    rng = np.random.default_rng(seed)
    return np.ones(dim) / np.sqrt(dim) + rng.normal(size=(n, dim)) / np.sqrt(dim)


def _weighted_stats(vectors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What validation reveals about weighted vectors [w u, w]: squared norms and distances of w u, and w."""
    stacked = np.stack(vectors)
    body = stacked[:, :-1]
    diff = body[:, None, :] - body[None, :, :]
    return (body**2).sum(axis=1), (diff**2).sum(axis=2), stacked[:, -1]


def _submit(updates: np.ndarray, bound: float | None, samples: int = 400) -> list[np.ndarray]:
    return [WEIGHTING.vector(u, samples, bound) for u in updates]


def test_an_update_longer_than_the_bound_is_rejected_outright_even_pointing_the_honest_way() -> None:
    """Two colluders submit 1.5 B along the honest mean (not clipped: attackers choose). Without B the rule
    accepts them (1.5 times a typical step is inside its adaptive norm bound and close to the others); with
    B they are rejected as `clip_bound` whatever their direction, and each such proof takes one of the f
    places, so a flipped update (clipped to B) next to them stays in on suspicion at f = 2 and goes at f = 3."""
    honest = _honest(1)
    bound = float(np.median(np.linalg.norm(honest, axis=1)))
    long_step = 1.5 * bound * honest.mean(axis=0) / np.linalg.norm(honest.mean(axis=0))
    vectors = _submit(honest, bound) + _submit(np.stack([long_step, long_step]), None)
    assert decide(RobustRule(f=2), *_weighted_stats(vectors)).accepted == tuple(range(7))
    decision = decide(BOUNDED, *_weighted_stats(vectors), clip_bound=bound)
    assert decision.rejected == {5: "clip_bound", 6: "clip_bound"}
    vectors = _submit(honest, bound) + _submit(np.stack([long_step, long_step]), None) + _submit(-honest[:1], bound)
    weighted = _weighted_stats(vectors)
    assert decide(BOUNDED, *weighted, clip_bound=bound).rejected == {5: "clip_bound", 6: "clip_bound"}
    assert decide(dataclasses.replace(BOUNDED, f=3), *weighted, clip_bound=bound).rejected == {
        5: "clip_bound", 6: "clip_bound", 7: "bounded_distance"}


def test_an_honest_long_step_is_clipped_to_the_bound_and_accepted() -> None:
    """A hospital whose step is ten times the others' (heavy-tailed honest steps): without B, clipped to C
    only, it is rejected outright by the adaptive norm tier; clipped to B before masking it is accepted,
    and its contribution to the sum is at most B."""
    honest = _honest(2, n=7)
    honest[3] *= 10.0
    bound = float(np.median(np.linalg.norm(honest, axis=1)))
    assert decide(RobustRule(f=2), *_weighted_stats(_submit(honest, None))).rejected == {3: "norm_ratio"}
    vectors = _submit(honest, bound)
    assert decide(BOUNDED, *_weighted_stats(vectors), clip_bound=bound).accepted == tuple(range(7))
    assert np.linalg.norm(vectors[3][:-1]) / vectors[3][-1] == pytest.approx(bound)


@pytest.mark.parametrize("seed", range(3))
def test_a_clipped_update_passes_the_bound_on_its_sketch(seed: int) -> None:
    """Members clip the exact vector and validation sees its count sketch: the slack on squared norms covers
    the sketch's error, so an update clipped to B is never called longer than B (digits' MLP: 2,410
    coordinates into 1,000 buckets, 200 sketch seeds, updates with a few large coordinates as trained
    networks have)."""
    rng = np.random.default_rng(seed)
    update = rng.standard_t(2, size=2410)
    bound = 0.5
    vector = WEIGHTING.vector(update, 300, bound)
    weight = vector[-1]
    for k in range(200):
        sketch = CountSketch(hashlib.sha256(b"%d %d" % (seed, k)).digest(), 2410, 1000)
        sq_norm = float((sketch.apply(vector[:-1]) ** 2).sum()) / weight**2
        assert sq_norm <= bound * bound * (1.0 + BOUNDED.clip_slack)


def test_the_bound_is_a_function_of_the_committed_statistics() -> None:
    """B of the next round: clip_factor times the median accepted per-sample norm, the same bits in every
    order the members are listed in (every replica), capped at C, unchanged after an aborted round or with
    no per-round bound."""
    honest = _honest(3, n=7)
    norms, dists, weights = _weighted_stats(_submit(honest, 10.0))
    decision = decide(BOUNDED, norms, dists, weights, clip_bound=10.0)
    expected = float(np.median(np.linalg.norm(honest, axis=1)))
    bound = next_clip_bound(BOUNDED, 10.0, 10.0, decision)
    assert bound == pytest.approx(expected)
    order = np.random.default_rng(4).permutation(7)
    permuted = decide(BOUNDED, norms[order], dists[np.ix_(order, order)], weights[order], clip_bound=10.0)
    assert next_clip_bound(BOUNDED, 10.0, 10.0, permuted) == bound
    assert next_clip_bound(dataclasses.replace(BOUNDED, clip_factor=1.5), 10.0, 10.0, decision) == 1.5 * bound
    assert next_clip_bound(dataclasses.replace(BOUNDED, clip_factor=100.0), 10.0, 10.0, decision) == 10.0
    assert next_clip_bound(BOUNDED, 0.7, 10.0, None) == 0.7
    assert next_clip_bound(BOUNDED, 0.7, 10.0, Decision((), {})) == 0.7
    assert next_clip_bound(RobustRule(f=2), 0.7, 10.0, decision) == 0.7


def test_genesis_refuses_a_per_round_bound_the_daemon_does_not_carry(tmp_path: Path) -> None:
    """The daemon does not put B on the ledger, so a genesis asking for it is refused rather than run with
    members that clip to C while the rule assumes B."""
    create_testnet(tmp_path / "net", 4, rounds=2, seed=1, dataset=mldata.DatasetSpec(name="breast_cancer", seed=1),
                   split=mldata.SplitSpec(kind="iid"))
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    plan = LearningPlan.from_genesis(genesis)
    assert round_settings(genesis, plan).validation is not None
    raw = {**genesis.raw, "validation": {**genesis.raw["validation"],
                                         "rule": {**genesis.raw["validation"]["rule"], "clip_factor": 1.0}}}
    with pytest.raises(ConfigError, match="clip_factor"):
        round_settings(dataclasses.replace(genesis, raw=raw), plan)
