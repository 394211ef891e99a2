"""The attack evaluation driver (scripts/evaluate_attacks.py) on tiny settings: its in-process secure
round sums what it should, its validation rejects a poisoned update, and a --quick grid yields the
tables, the plot and docs that keep their hand-written reading."""

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


@pytest.fixture(scope="module")
def quick_results():  # type: ignore[no-untyped-def]
    return ev.evaluate_grid(ev.QUICK, jobs=1)


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


def test_rule_kind_reaches_the_validation_setup() -> None:
    """--rule picks the genesis rule kind of every fednode run; the default is the library default."""
    assert ev.ProtocolRound(7, validate=True, seed=1).setup.rule == ev.RobustRule(f=2)
    old = ev.ProtocolRound(7, validate=True, seed=1, rule_kind="median_distance").setup.rule
    assert (old.kind, old.f, old.factor) == ("median_distance", 2, 2.0)
    assert ev.Scenario(7, "none", "iid", 0, 1, rule="median_distance").rule == "median_distance"
    assert "median_mad (min_ratio 3.0, spread_power 3)" == ev._rule_text("median_mad")


def test_quick_grid_measures_every_setting(quick_results) -> None:  # type: ignore[no-untyped-def]
    grid = ev.QUICK
    for n in grid.nodes:
        for attack in ("none", *grid.attacks):
            for setting in ev.SETTINGS:
                runs = quick_results[("iid", n, attack, setting)]
                assert len(runs) == len(grid.seeds)
                assert all(0.5 < r.accuracy <= 1.0 for r in runs), (attack, setting, runs)
        clean = {s: quick_results[("iid", n, "none", s)][0].accuracy for s in ev.SETTINGS}
        assert abs(clean["secagg"] - clean["fedavg"]) <= 0.02, clean
        for setting in ("fedavg", "secagg"):
            assert all(r.honest_rejected == r.malicious_rejected == 0
                       for r in quick_results[("iid", n, "sign-flip", setting)])
        flipped = quick_results[("iid", n, "sign-flip", "fednode")][0]
        assert flipped.malicious_total == grid.rounds * ev.max_faulty(n)
        assert flipped.malicious_rejected == flipped.malicious_total, flipped
        assert quick_results[("dirichlet", n, "none", "fednode")][0].honest_total == grid.rounds * n


def test_docs_tables_plot_and_kept_reading(quick_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = ev.table(quick_results, ev.QUICK)
    assert "| sign-flip | 4 | 1 |" in text and "| Dirichlet(0.5) | 4 |" in text
    ev.write_docs(tmp_path, text, ev.QUICK, "python scripts/evaluate_attacks.py --quick", 1.0)
    doc = tmp_path / "attacks.md"
    doc.write_text(doc.read_text().replace("Not written yet.", "Validation helps here."))
    ev.write_docs(tmp_path, text, ev.QUICK, "python scripts/evaluate_attacks.py --quick", 2.0)
    assert "Validation helps here." in doc.read_text() and "(2 s)" in doc.read_text()
    ev.plot(quick_results, ev.QUICK, tmp_path / "attacks.png")
    assert (tmp_path / "attacks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
