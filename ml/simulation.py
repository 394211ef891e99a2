"""In-process federated averaging over simulated hospitals: the plaintext reference.

This is what the consortium computes, minus secure aggregation, consensus and networking: every
round each node trains from the global model on its partition, malicious nodes apply their attack,
updates are optionally clipped and filtered by a robust rule computed on their exact statistics, and
the survivors are averaged by sample count. Baselines and attack evaluations compare the real
cluster against it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ml.attacks import Attack, AttackContext, Backdoor, NoAttack, backdoor_success_rate, malicious_train
from ml.data import DatasetSpec, LocalData, SplitSpec, node_data
from ml.models import ModelSpec
from ml.params import initial_params
from ml.robust import RobustRule, decide
from ml.train import TrainConfig, clip_update, evaluate, fedavg, local_train


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """One simulated federation. ``malicious`` lists the attacking node indices; ``clip_norm`` (L2,
    0 = off) is applied to every submitted update as honest nodes do before masking; ``rule`` (None
    = plain FedAvg) filters updates on their exact squared norms and distances; ``omniscient`` gives
    ALIE/min-max attackers the honest updates instead of estimates from their own data."""

    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainConfig = field(default_factory=TrainConfig)
    n_nodes: int = 4
    rounds: int = 5
    seed: int = 0
    attack: Attack = field(default_factory=NoAttack)
    malicious: tuple[int, ...] = ()
    clip_norm: float = 0.0
    rule: RobustRule | None = None
    omniscient: bool = False


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Per-round test accuracy and rejected node indices, the final model, the backdoor success
    rate (for a backdoor attack, else None) and the mean wall time of one local training."""

    accuracy_per_round: list[float]
    rejected_per_round: list[tuple[int, ...]]
    final_params: np.ndarray
    backdoor_rate: float | None
    train_s_per_node_round: float

    @property
    def accuracy(self) -> float:
        return self.accuracy_per_round[-1]


def train_seed(seed: int, round_id: int, node_index: int) -> int:
    """The training seed of one node in one round: distinct for every (seed, round, node)."""
    return (seed * 1_000_003 + round_id) * 1_009 + node_index


def simulate(config: SimulationConfig) -> SimulationResult:
    """Run ``config.rounds`` rounds and evaluate the global model on the shared test split."""
    if not set(config.malicious) <= set(range(config.n_nodes)):
        raise ValueError(f"malicious nodes {config.malicious} out of range for {config.n_nodes} nodes")
    nodes = [node_data(config.dataset, config.split, config.n_nodes, i) for i in range(config.n_nodes)]
    test = nodes[0]
    global_vec = initial_params(config.model, config.seed)
    accuracies: list[float] = []
    rejected: list[tuple[int, ...]] = []
    train_s = 0.0
    for round_id in range(config.rounds):
        began = time.perf_counter()
        updates, weights = _round_updates(config, nodes, global_vec, round_id)
        train_s += time.perf_counter() - began
        accepted = _accepted(config, updates)
        rejected.append(tuple(i for i in range(config.n_nodes) if i not in accepted))
        global_vec = fedavg(global_vec, [updates[i] for i in accepted], [weights[i] for i in accepted])
        accuracies.append(evaluate(config.model, global_vec, test.X_test, test.y_test).accuracy)
    backdoor = None
    if isinstance(config.attack, Backdoor):
        backdoor = backdoor_success_rate(config.attack, config.model, global_vec, test.X_test, test.y_test)
    return SimulationResult(accuracies, rejected, global_vec, backdoor, train_s / (config.rounds * config.n_nodes))


def _round_updates(
    config: SimulationConfig, nodes: Sequence[LocalData], global_vec: np.ndarray, round_id: int
) -> tuple[list[np.ndarray], list[float]]:
    honest = {}
    for i, local in enumerate(nodes):
        if i not in config.malicious:
            honest[i] = _train(config, local.X_train, local.y_train, global_vec, round_id, i)
    updates: list[np.ndarray] = []
    weights: list[float] = []
    for i, local in enumerate(nodes):
        if i in config.malicious:
            update = _malicious_update(config, local, global_vec, round_id, i, list(honest.values()))
        else:
            update = honest[i]
        updates.append(clip_update(update, config.clip_norm))
        weights.append(float(len(local.y_train)))
    return updates, weights


def _train(
    config: SimulationConfig, X: np.ndarray, y: np.ndarray, global_vec: np.ndarray, round_id: int, node: int
) -> np.ndarray:
    seed = train_seed(config.seed, round_id, node)
    return local_train(config.model, global_vec, X, y, config.training, seed).update


def _malicious_update(
    config: SimulationConfig,
    local: LocalData,
    global_vec: np.ndarray,
    round_id: int,
    node: int,
    honest_updates: list[np.ndarray],
) -> np.ndarray:
    omniscient = config.omniscient and config.attack.needs_benign and len(honest_updates) >= 2
    ctx = AttackContext(
        round=round_id,
        node_index=node,
        n_nodes=config.n_nodes,
        rng=np.random.default_rng([config.seed, round_id, node]),
        global_params=global_vec,
        n_malicious=len(config.malicious),
        n_classes=config.model.n_classes,
        benign_updates=np.stack(honest_updates) if omniscient else None,
    )
    seed = train_seed(config.seed, round_id, node)
    return malicious_train(config.attack, config.model, global_vec, local.X_train, local.y_train, config.training,
                           seed, ctx).update


def _accepted(config: SimulationConfig, updates: list[np.ndarray]) -> list[int]:
    if config.rule is None:
        return list(range(len(updates)))
    stacked = np.stack(updates).astype(np.float64)
    sq_norms = (stacked**2).sum(axis=1)
    gram = stacked @ stacked.T
    sq_dists = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * gram, 0.0)
    sq_dists = (sq_dists + sq_dists.T) / 2
    np.fill_diagonal(sq_dists, 0.0)
    return list(decide(config.rule, sq_norms, sq_dists).accepted)
