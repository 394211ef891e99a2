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

from consensus.block import Block
from ml import data as mldata
from ml.robust import CLIP_FLOOR, CLIP_GROWTH, Decision, RobustRule, decide, next_clip_bound
from node import contract as rc
from node.config import ConfigError, load_genesis
from node.learning import LearningPlan
from node.robust_validation import decide_accepted
from node.settings import round_settings
from node.testnet import create_testnet
from node.weighting import Weighting
from smpc.sketch import CountSketch
from tests.unit.test_secure_round import CHAIN, Cluster, L

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


def _bound_over_rounds(scales: list[float], tiny_colluders: int, seed: int = 7) -> list[float]:
    """B round after round when honest steps have norm about `scales[r]` and `tiny_colluders` of the 7 members
    submit a twentieth of the honest mean (exact statistics: the sketch's error is another test's subject)."""
    rng = np.random.default_rng(seed)
    bound, bounds = 10.0, []
    for scale in scales:
        honest = _honest(int(rng.integers(1 << 30)), n=7 - tiny_colluders) * scale / np.sqrt(2.0)
        tiny = [honest.mean(axis=0) / 20] * tiny_colluders
        decision = decide(BOUNDED, *_weighted_stats(_submit(np.stack([*honest, *tiny]), bound)), clip_bound=bound)
        bound = next_clip_bound(BOUNDED, bound, 10.0, decision)
        bounds.append(bound)
    return bounds


def test_the_bound_follows_longer_honest_steps_and_colluders_cannot_hold_it_down() -> None:
    """Red team r9 c2: with B the median of updates already clipped to B, B could only fall: f colluders with
    tiny steps pushed it down for good, and three times longer honest steps never raised it. Now B grows by
    CLIP_GROWTH while most accepted updates are clipped to it, and stays within [CLIP_FLOOR C, C]."""
    honest_median = 1.0  # _honest's steps have norm about sqrt(2); scaled by 1/sqrt(2) above
    clean = _bound_over_rounds([1.0] * 10 + [3.0] * 10, tiny_colluders=0)
    assert 0.7 * honest_median <= clean[9] <= 1.3 * honest_median
    assert 0.7 * 3 <= clean[-1] <= 1.3 * 3, "B followed the longer steps"
    attacked = _bound_over_rounds([1.0] * 30, tiny_colluders=2)
    assert min(attacked[5:]) >= 0.5 * honest_median, "two colluders of seven cannot hold B below the honest steps"
    stuck = Decision(tuple(range(7)), {}, 1e-30, at_bound=0)
    assert next_clip_bound(BOUNDED, 1.0, 10.0, stuck) == 10.0 * CLIP_FLOOR
    assert next_clip_bound(BOUNDED, 9.0, 10.0, Decision(tuple(range(7)), {}, 81.0, at_bound=4)) == 10.0
    assert next_clip_bound(BOUNDED, 2.0, 10.0, Decision(tuple(range(7)), {}, 4.0, at_bound=4)) == 2.0 * CLIP_GROWTH
    assert next_clip_bound(BOUNDED, 2.0, 10.0, Decision(tuple(range(8)), {}, 1.0, at_bound=4)) == 1.0


def test_genesis_puts_c_as_the_first_rounds_bound_on_the_ledger_when_it_asks_for_b(tmp_path: Path) -> None:
    """With `clip_factor` in genesis (the default), the contract starts with B = C (in millionths); without it, no
    bound."""
    create_testnet(tmp_path / "net", 4, rounds=2, seed=1, dataset=mldata.DatasetSpec(name="breast_cancer", seed=1),
                   split=mldata.SplitSpec(kind="iid"))
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    plan = LearningPlan.from_genesis(genesis)
    settings = round_settings(genesis, plan)
    assert settings.contract.clip_bound_micro == 10_000_000
    assert settings.validation is not None and settings.validation.clip_l2 == 10.0
    raw = {**genesis.raw, "validation": {**genesis.raw["validation"],
                                         "rule": {**genesis.raw["validation"]["rule"], "clip_factor": 0.0}}}
    assert round_settings(dataclasses.replace(genesis, raw=raw), plan).contract.clip_bound_micro == 0
    raw["validation"]["rule"]["persistence_ratio"] = 1.15
    with pytest.raises(ConfigError, match="persistence_ratio needs each member's history"):
        round_settings(dataclasses.replace(genesis, raw=raw), plan)


def _bounded_cluster(seed: int) -> Cluster:
    """A validated 7-member round whose genesis asks for B (clip_factor 1, C = 10)."""
    c = Cluster(7, seed, validate=True)
    c.params = dataclasses.replace(c.params, clip_bound_micro=10_000_000)
    c.contracts = [rc.Contract(c.params, c.verify) for _ in range(7)]
    assert c.setup is not None
    c.setup = dataclasses.replace(c.setup, rule=RobustRule(f=2, clip_factor=1.0, norm_ratio=0.0))
    return c


def test_the_accept_carries_the_next_rounds_bound_and_the_result_makes_it_b() -> None:
    """B on the ledger: round 1 judges with B = C; its `accept` names clip_factor times the median per-sample
    norm it accepted (here about |u| = 0.3 sqrt(50), measured on the updates themselves, not through the
    code under test); the result makes that the contract's B. An accept that names another bound is refused
    by a replica's check, as one naming another accepted set is."""
    from types import SimpleNamespace

    from node.block_validation import BlockValidator

    c = _bounded_cluster(23)
    rng = np.random.default_rng(23)
    updates = {i: rng.normal(0, 0.3, L) for i in range(7)}
    c.mask_updates(updates)
    check = c.publish_statistics()
    assert check.clip_bound_micro == 10_000_000
    outcome = decide_accepted(check, c.setup, c.quant)  # type: ignore[arg-type]
    true_median = float(np.median([np.linalg.norm(updates[i]) for i in outcome.accepted]))
    assert outcome.next_clip_bound_micro == pytest.approx(true_median * 1e6, rel=0.15)
    metrics = SimpleNamespace(rejected=SimpleNamespace(labels=lambda _reason: SimpleNamespace(inc=lambda: None)))
    replica = SimpleNamespace(aggregator=SimpleNamespace(validation_outcome=lambda ch: decide_accepted(ch, c.setup, c.quant)),
                              metrics=metrics, contract=c.contracts[1])

    def votes_for(next_bound: int) -> bool:
        accept = c.tx("accept", [list(outcome.accepted), [], next_bound])
        block = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (accept,))
        checks = [ch for ch in c.contracts[1].check_block(block) if isinstance(ch, rc.ValidationCheck)]
        return all(BlockValidator._validation_ok(replica, block, ch) for ch in checks)  # type: ignore[arg-type]

    assert votes_for(outcome.next_clip_bound_micro)
    assert not votes_for(outcome.next_clip_bound_micro + 1) and not votes_for(10_000_000)
    with pytest.raises(rc.TxError, match=r"outside \(0, 10000000\]"):
        c.contracts[1].check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0,
                                         (c.tx("accept", [list(outcome.accepted), [], 10_000_001]),)))
    c.commit(c.tx("accept", outcome.accept_fields()))
    assert all(k.state.clip_bound_micro == 10_000_000 for k in c.contracts), "B changes only when the round commits"
    total = c.rounds[0].try_sum(deadline_passed=False)
    assert total is not None
    c.commit(c.tx("result", [list(outcome.accepted), b"\x01" * 32]))
    assert all(k.state.clip_bound_micro == outcome.next_clip_bound_micro for k in c.contracts)


def test_a_contract_without_b_refuses_an_accept_that_names_one() -> None:
    c = Cluster(7, 5, validate=True)
    rng = np.random.default_rng(5)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(7)})
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)  # type: ignore[arg-type]
    assert outcome.next_clip_bound_micro == 0
    with pytest.raises(rc.TxError, match="next round's bound 5 without a per-round bound"):
        c.contracts[0].check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0,
                                         (c.tx("accept", [list(outcome.accepted), [], 5]),)))
