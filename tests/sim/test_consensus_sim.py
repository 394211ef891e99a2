"""Seeded simulations of the PBFT core under faults and Byzantine replicas (every failure names its seed)."""

from __future__ import annotations

import io

import pytest

from consensus.simulation import SimConfig, run_one, run_simulations


def assert_clean(nodes: int, byzantine: int, seeds: range, config: SimConfig | None = None) -> None:
    out = io.StringIO()
    report = run_simulations(nodes, byzantine, seeds, config=config, out=out)
    assert report.runs == len(seeds)
    assert report.failing_seeds == [], out.getvalue()
    assert report.stats["deliveries"] > 0


def test_four_replicas_one_byzantine() -> None:
    assert_clean(4, 1, range(250))


def test_seven_replicas_two_byzantine() -> None:
    assert_clean(7, 2, range(1000, 1100))


def test_four_replicas_crash_faults_only() -> None:
    assert_clean(4, 0, range(2000, 2060))


@pytest.mark.parametrize("behaviour", ["silent", "equivocate", "conflicting_votes", "forge", "replay", "twins"])
def test_each_byzantine_behaviour(behaviour: str) -> None:
    assert_clean(4, 1, range(3000, 3012), SimConfig(behaviours=(behaviour,)))


def test_a_run_is_reproducible_from_its_seed() -> None:
    a, b = run_one(7, SimConfig()), run_one(7, SimConfig())
    assert a.heights == b.heights and a.stats == b.stats


def test_planted_bug_quorum_of_2f_is_caught() -> None:
    """With quorum 2f (= 2 for N=4) two halves can commit different blocks; the checker must see it."""
    out = io.StringIO()
    bad = SimConfig(quorum_override=2)
    report = run_simulations(4, 1, range(300), config=bad, out=out, stop_after_failures=1)
    assert report.safety_violations == 1, "a quorum of 2f must produce a fork within 300 seeds"
    assert f"FAILED seed={report.failing_seeds[0]}" in out.getvalue()
    assert any("fork" in v for v in report.details[report.failing_seeds[0]])


def test_byzantine_traffic_exercises_the_rejection_paths() -> None:
    report = run_simulations(4, 1, range(4000, 4030), config=SimConfig(behaviours=("forge",)))
    assert report.stats["replica_bad_signature"] > 0
    assert report.stats["replica_bad_view_change"] > 0
    assert report.stats["replica_bad_new_view"] + report.stats["replica_bad_signature"] > 0
    for behaviour, kinds in (("twins", ("preprepare",)), ("equivocate", ("preprepare",)),
                             ("conflicting_votes", ("prepare", "commit"))):
        report = run_simulations(4, 1, range(4000, 4020), config=SimConfig(behaviours=(behaviour,)))
        assert report.failing_seeds == [], "evidence is checked genuine and never names an honest replica"
        assert all(report.stats["evidence_" + kind] > 0 for kind in kinds), (behaviour, report.stats)


def test_five_replicas_need_a_quorum_of_four() -> None:
    """N=5, f=1: q = ceil((N+f+1)/2) = 4 is safe; the textbook 2f+1 = 3 lets two quorums meet only in
    the Byzantine replica, and the simulator finds the resulting fork."""
    assert_clean(5, 1, range(5000, 5030))
    report = run_simulations(5, 1, range(100, 400), config=SimConfig(quorum_override=3), stop_after_failures=1)
    assert report.safety_violations == 1, "quorum 3 of 5 must fork within these seeds"
    assert any("fork" in v for v in report.details[report.failing_seeds[0]])
