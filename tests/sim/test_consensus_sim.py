"""Seeded simulations of the PBFT core against an adaptive adversary (every failure names its seed).

CI's share of `fednode simulate`: a smaller random sweep, every strategy on its own, restarts enumerated
at every step of a view change, and the Twins enumeration for N=4. The file takes about 62 CPU-seconds
(a little over a minute on an idle core of this machine; wall time grows with the machine's load).
"""

from __future__ import annotations

import io

import pytest

from consensus.adversary import STRATEGIES
from consensus.simulation import SimConfig, run_one, run_simulations, run_twins, twins_scenarios


def assert_clean(nodes: int, byzantine: int, seeds: range, config: SimConfig | None = None) -> None:
    out = io.StringIO()
    report = run_simulations(nodes, byzantine, seeds, config=config, out=out)
    assert report.runs == len(seeds)
    assert report.failing_seeds == [], out.getvalue()
    assert report.stats["deliveries"] > 0


def test_four_replicas_one_byzantine() -> None:
    assert_clean(4, 1, range(300))


def test_seven_replicas_two_byzantine() -> None:
    assert_clean(7, 2, range(1000, 1060))


def test_four_replicas_crash_faults_only() -> None:
    assert_clean(4, 0, range(2000, 2040))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_each_strategy(strategy: str) -> None:
    out = io.StringIO()
    report = run_simulations(4, 1, range(3000, 3016), config=SimConfig(behaviours=(strategy,)), out=out)
    assert report.failing_seeds == [], out.getvalue()
    assert report.strategies[strategy] == 16


@pytest.mark.parametrize("strategy", ["fresh_after_new_view", "chosen_view_change", "equivocate", "withhold_commits"])
def test_a_restart_at_every_step_of_a_view_change(strategy: str) -> None:
    """One honest node crashes at its k-th action list after it starts a view change, for every k up to
    16 (the view change, the NEW-VIEW, the forced block's validation, its votes), cut after the persist
    batch or between two actions, against the strategies that attack a view change."""
    out = io.StringIO()
    crashed = 0
    for step in range(16):
        config = SimConfig(behaviours=(strategy,), crash_view_change_step=step)
        report = run_simulations(4, 1, range(100 * step, 100 * step + 3), config=config, out=out)
        assert report.failing_seeds == [], out.getvalue()
        crashed += report.stats["crashes"]
    assert crashed >= 16, "the enumerated crash points must be reached"


def test_twins_enumeration_for_four_replicas() -> None:
    scenarios = twins_scenarios(4)
    assert len(scenarios) == 48 and len(set(scenarios)) == 48
    out = io.StringIO()
    report = run_twins(config=SimConfig(), out=out)
    assert report.runs == 48
    assert report.failing_seeds == [], out.getvalue()
    assert report.stats["evidence_preprepare"] + report.stats["evidence_prepare"] > 0, "twins equivocate"


def test_a_censoring_primary_is_replaced_and_its_victim_commits() -> None:
    report = run_simulations(4, 1, range(6000, 6020), config=SimConfig(behaviours=("censor",)))
    assert report.failing_seeds == [] and report.liveness_failures == 0
    assert report.stats["replica_request_timeouts"] > 0, "only the request timer can replace it"


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
    assert any("fork" in v or "certificate" in v for v in report.details[report.failing_seeds[0]])


def test_byzantine_traffic_exercises_the_rejection_paths() -> None:
    report = run_simulations(4, 1, range(4000, 4030), config=SimConfig(behaviours=("forge",)))
    assert report.failing_seeds == [], report.details
    assert report.stats["replica_bad_signature"] > 0
    assert report.stats["replica_bad_view_change"] > 0
    assert report.stats["replica_bad_new_view"] + report.stats["replica_bad_signature"] > 0
    report = run_simulations(4, 1, range(4000, 4030), config=SimConfig(behaviours=("forge_certificates",)))
    assert report.failing_seeds == []
    assert report.stats["replica_catchup_bad_certificate"] + report.stats["replica_bad_view_change"] > 0
    for behaviour, kinds in (("twins", ("preprepare",)), ("equivocate", ("preprepare",)),
                             ("vote_flood", ("prepare", "commit")), ("checkpoint_flood", ("checkpoint",))):
        report = run_simulations(4, 1, range(4000, 4020), config=SimConfig(behaviours=(behaviour,)))
        assert report.failing_seeds == [], "evidence is checked genuine and never names an honest replica"
        assert all(report.stats["evidence_" + kind] > 0 for kind in kinds), (behaviour, report.stats)


def test_five_replicas_need_a_quorum_of_four() -> None:
    """N=5, f=1: q = ceil((N+f+1)/2) = 4 is safe; the textbook 2f+1 = 3 lets two quorums meet only in
    the Byzantine replica, and the simulator finds the resulting fork."""
    assert_clean(5, 1, range(5000, 5030))
    report = run_simulations(5, 1, range(100, 400), config=SimConfig(quorum_override=3), stop_after_failures=1)
    assert report.safety_violations == 1, "quorum 3 of 5 must fork within these seeds"
    assert any("fork" in v or "certificate" in v for v in report.details[report.failing_seeds[0]])
