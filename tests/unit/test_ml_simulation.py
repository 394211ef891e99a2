"""ml.simulation: the plaintext federation reference is deterministic, and a robust rule stops
an attack that plain FedAvg does not."""

from __future__ import annotations

import dataclasses

from ml.attacks import make_attack
from ml.data import SplitSpec
from ml.robust import RobustRule
from ml.simulation import SimulationConfig, simulate


def test_simulation_is_deterministic_and_learns() -> None:
    config = SimulationConfig(split=SplitSpec(kind="dirichlet"), n_nodes=4, rounds=3, seed=2)
    a, b = simulate(config), simulate(config)
    assert a.final_params.tobytes() == b.final_params.tobytes()
    assert a.accuracy >= 0.93 and a.rejected_per_round == [(), (), ()]
    assert a.backdoor_rate is None


def test_rule_rejects_noise_that_hurts_plain_fedavg() -> None:
    base = SimulationConfig(n_nodes=7, rounds=4, attack=make_attack("gaussian", sigma=2.0), malicious=(0, 1))
    plain = simulate(base)
    defended = simulate(dataclasses.replace(base, rule=RobustRule(kind="median_distance", f=2, factor=2.0)))
    assert defended.accuracy > plain.accuracy + 0.05
    assert all({0, 1} <= set(rejected) for rejected in defended.rejected_per_round)


def test_backdoor_rate_is_reported() -> None:
    result = simulate(SimulationConfig(n_nodes=4, rounds=2, attack=make_attack("backdoor"), malicious=(0,)))
    assert result.backdoor_rate is not None and 0.0 <= result.backdoor_rate <= 1.0
