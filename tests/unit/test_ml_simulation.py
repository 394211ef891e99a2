"""ml.simulation: the plaintext federation reference is deterministic, and a robust rule stops
an attack that plain FedAvg does not."""

from __future__ import annotations

import dataclasses

import numpy as np

from ml.attacks import NoAttack, make_attack
from ml.data import SplitSpec, node_data
from ml.robust import RobustRule
from ml.simulation import SimulationConfig, simulate
from ml.train import predict


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


def test_backdoor_rate_is_the_share_of_triggered_victims_classified_as_the_target() -> None:
    """Recomputed here by hand: stamp features 0-2 at 8.0 on the test rows whose label is not the target
    (1), and count how many the final model calls 1. The backdoored federation scores above a clean one."""
    config = SimulationConfig(n_nodes=4, rounds=2, attack=make_attack("backdoor"), malicious=(0,))
    backdoored = simulate(config)
    clean = simulate(dataclasses.replace(config, attack=NoAttack(), malicious=()))
    test = node_data(config.dataset, config.split, config.n_nodes, 0)
    victims = np.array(test.X_test[test.y_test != 1], dtype=np.float32)
    victims[:, [0, 1, 2]] = 8.0

    def rate(params: np.ndarray) -> float:
        return float(np.mean(predict(config.model, params, victims) == 1))

    assert backdoored.backdoor_rate == rate(backdoored.final_params)
    assert clean.backdoor_rate is None
    assert rate(clean.final_params) < backdoored.backdoor_rate
