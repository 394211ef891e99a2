"""The attack evaluation driver (scripts/evaluate_attacks.py) on tiny settings: its in-process secure
round sums what it should, its validation rejects a poisoned update, its sketch-statistics path decides as
the rule does, and a --quick grid yields the tables, the plot and docs that keep their hand-written reading."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_attacks.py"
_spec = importlib.util.spec_from_file_location("evaluate_attacks", SCRIPT)
assert _spec is not None and _spec.loader is not None
ev = importlib.util.module_from_spec(_spec)
sys.modules["evaluate_attacks"] = ev
_spec.loader.exec_module(ev)

QUICK = ev.QUICK


@pytest.fixture(scope="module")
def quick_results():  # type: ignore[no-untyped-def]
    return ev.evaluate_grid(QUICK, jobs=1)


def test_secure_round_without_validation_sums_every_vector() -> None:
    rng = np.random.default_rng(3)
    protocol = ev.ProtocolRound(4, validate=False, seed=3)
    vectors = [protocol.weighting.vector(rng.normal(0, 0.3, 12), 50 + 10 * i) for i in range(4)]
    total, rejected = protocol.run(vectors, round_id=1)
    assert rejected == ()
    assert total is not None
    np.testing.assert_allclose(total, np.sum(vectors, axis=0), atol=4 / protocol.quant.scale)


def test_secure_round_with_validation_rejects_a_flipped_scaled_update() -> None:
    rng = np.random.default_rng(4)
    protocol = ev.ProtocolRound(7, validate=True, seed=4)
    base = rng.normal(0, 0.3, 12)
    updates = [base + rng.normal(0, 0.02, 12) for _ in range(7)]
    updates[6] = -8 * base
    vectors = [protocol.weighting.vector(u, 60) for u in updates]
    total, rejected = protocol.run(vectors, round_id=1)
    assert rejected == (6,)
    assert total is not None
    np.testing.assert_allclose(total, np.sum(vectors[:6], axis=0), atol=7 / protocol.quant.scale)


def test_sketch_statistics_and_the_real_protocol_reject_the_same_members() -> None:
    """The fast path (rule on sketch statistics in the clear) and the secure round on shares agree."""
    rng = np.random.default_rng(5)
    base = rng.normal(0, 0.3, 200)
    updates = [base + rng.normal(0, 0.1, 200) for _ in range(7)]
    updates[5], updates[6] = -base, 4.0 * updates[6]
    scenario = ev.Scenario("digits", 7, "none", "iid", 5)
    fast = ev.FednodeAggregator(scenario, protocol=False)
    slow = ev.FednodeAggregator(scenario, protocol=True)
    start = np.zeros(200, dtype=np.float32)
    assert fast.round(start, updates, [60] * 7, 1)[1] == slow.round(start, updates, [60] * 7, 1)[1] == (5, 6)


def test_a_per_round_bound_clips_every_member_and_follows_the_accepted_norms() -> None:
    """``--rule clip_factor=1,norm_ratio=0``: round 1 is bounded by C (a step 40 times the others' is clipped to
    C and rejected as far), B of the next round is the median per-sample norm accepted, and in round 2 every
    vector, that one too (an attacker runs the same pipeline), is clipped to B and accepted; the real secure
    round, whose ledger carries B, rejects the same members and moves B alike."""
    changes = ev.rule_changes("clip_factor=1,norm_ratio=0")
    assert changes == (("clip_factor", 1.0), ("norm_ratio", 0.0))
    with pytest.raises(Exception, match="not one of"):
        ev.rule_changes("clip=1")
    scenario = ev.Scenario("digits", 7, "none", "iid", 5, rule_changes=changes)
    aggregator = ev.FednodeAggregator(scenario, protocol=False)
    assert aggregator.clip_bound == ev.CLIP_L2
    rng = np.random.default_rng(6)
    base = rng.normal(0, 0.3, 200)
    updates = [base + rng.normal(0, 0.1, 200) for _ in range(7)]
    updates[6] = 40.0 * updates[6]
    start = np.zeros(200, dtype=np.float32)
    slow = ev.FednodeAggregator(scenario, protocol=True)
    assert slow.round(start, updates, [60] * 7, 1)[1] == (6,)
    new, rejected = aggregator.round(start, updates, [60] * 7, 1)
    assert new is not None and rejected == (6,)  # clipped to C only in round 1: far from the others
    assert slow.clip_bound == pytest.approx(aggregator.clip_bound, rel=0.1)  # the shares' integer sketch is coarser
    assert aggregator.clip_bound == pytest.approx(float(np.median([np.linalg.norm(u) for u in updates[:6]])), rel=0.1)
    bound = aggregator.clip_bound
    new, rejected = aggregator.round(new, updates, [60] * 7, 2)
    assert new is not None and rejected == ()
    step = np.asarray(new, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    assert np.linalg.norm(step) <= 2 * bound
    assert slow.round(start, updates, [60] * 7, 2)[1] == ()


def test_the_persistence_tier_folds_accepted_rounds_and_rejects_a_clique_from_round_two() -> None:
    """``--rule persistence_ratio=1.15``: two members submitting the same vector pass round 1 (no history yet) and
    are rejected as a clique in round 2; each accepted round is folded into every member's history, which the
    rule-aware attacker also receives."""
    changes = ev.rule_changes("persistence_ratio=1.15,persistence_rounds=2")
    assert changes == (("persistence_ratio", 1.15), ("persistence_rounds", 2))
    aggregator = ev.FednodeAggregator(ev.Scenario("digits", 7, "none", "iid", 5, rule_changes=changes), protocol=False)
    rng = np.random.default_rng(7)
    start = np.zeros(200, dtype=np.float32)
    for round_id, expected in ((1, ()), (2, (5, 6))):
        updates = [rng.normal(0, 0.3, 200) for _ in range(7)]
        updates[6] = updates[5]
        new, rejected = aggregator.round(start, updates, [60] * 7, round_id)
        assert new is not None and rejected == expected
        assert [h.rounds for h in aggregator.angles] == [round_id] * 7


def test_quick_grid_measures_every_setting(quick_results) -> None:  # type: ignore[no-untyped-def]
    for attack in ("none", *QUICK.attacks):
        for setting in ev.SETTINGS:
            runs = quick_results[("digits", "iid", 4, attack, setting)]
            assert len(runs) == 1 and 0.3 < runs[0].accuracy <= 1.0, (attack, setting, runs)
    assert quick_results[("digits", "iid", 4, "backdoor", "fedavg")][0].backdoor_rate > 0.5
    flipped = quick_results[("digits", "iid", 4, "sign-flip", "fednode")][0]
    assert flipped.rejected_share(honest=False)[0] >= 3, flipped
    clean = quick_results[("actg175", "natural", 4, "none", "fednode")][0]
    assert clean.rejected_share(honest=True)[1] == 4 * QUICK.rounds and 0.0 <= clean.worst_honest_site() <= 1.0


def test_docs_tables_plot_and_kept_reading(quick_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = ev.report(quick_results, QUICK)
    assert "| sign-flip | 4 | 1 |" in text and "| actg175 | natural (arm x stratum) | 4 |" in text
    assert "- N = 4: fednode's largest loss" in text
    ev.write_docs(tmp_path, text, QUICK, "python scripts/evaluate_attacks.py --quick", 1.0)
    doc = tmp_path / "attacks.md"
    doc.write_text(doc.read_text().replace("Not written yet.", "Validation helps here."))
    ev.write_docs(tmp_path, text, QUICK, "python scripts/evaluate_attacks.py --quick", 2.0)
    assert "Validation helps here." in doc.read_text() and "(2 s)" in doc.read_text()
    ev.plot(quick_results, QUICK, tmp_path / "attacks.png")
    assert (tmp_path / "attacks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
