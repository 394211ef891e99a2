"""The node's learning side: genesis sections turned into ml specs, local data, training and evaluation.

Everything here runs in a worker thread (trio.to_thread) because torch blocks; nothing here touches the
network or the ledger. Model vectors travel as raw little-endian float32 bytes, whose sha256 is the model
hash the ledger commits to (`ml.params.params_hash`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ml import data as mldata
from ml.models import ModelSpec, check_spec, n_params
from ml.params import initial_params
from ml.train import EvalResult, TrainConfig, TrainResult, check_config, evaluate, local_train
from node.config import ConfigError, Genesis

DEFAULT_SEED = 1


def _build(cls: type, section: dict[str, Any], what: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(section) - names
    if unknown:
        raise ConfigError(f"genesis: unknown keys in '{what}': {', '.join(sorted(unknown))}")
    try:
        return cls(**section)
    except TypeError as exc:
        raise ConfigError(f"genesis: bad '{what}' section: {exc}") from None


@dataclass(frozen=True)
class LearningPlan:
    """The consortium's learning parameters, all read from genesis."""

    model: ModelSpec
    dataset: mldata.DatasetSpec
    split: mldata.SplitSpec
    training: TrainConfig
    scaling: tuple[np.ndarray, np.ndarray] | None
    seed: int
    initial_model_hash: bytes

    @staticmethod
    def from_genesis(genesis: Genesis) -> LearningPlan:
        model = _build(ModelSpec, genesis.section("model"), "model")
        training = _build(TrainConfig, genesis.section("training"), "training")
        try:
            check_spec(model)
            check_config(training)
        except ValueError as exc:
            raise ConfigError(f"genesis: {exc}") from None
        scaling_raw = genesis.raw.get("scaling")
        scaling = None
        if scaling_raw is not None:
            scaling = (np.asarray(scaling_raw["mean"], dtype=np.float32),
                       np.asarray(scaling_raw["std"], dtype=np.float32))
        initial_hash = genesis.raw.get("initial_model_hash", "")
        return LearningPlan(
            model=model,
            dataset=_build(mldata.DatasetSpec, genesis.section("dataset"), "dataset"),
            split=_build(mldata.SplitSpec, genesis.section("split"), "split"),
            training=training,
            scaling=scaling,
            seed=int(genesis.raw.get("seed", DEFAULT_SEED)),
            initial_model_hash=bytes.fromhex(initial_hash) if initial_hash else b"",
        )

    @property
    def n_params(self) -> int:
        return n_params(self.model)

    def initial_model(self) -> np.ndarray:
        return initial_params(self.model, self.seed)


def vector_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes, n_params: int) -> np.ndarray:
    """Parse a model or update blob; raise ValueError if it is not exactly n_params finite floats."""
    if len(data) != 4 * n_params:
        raise ValueError(f"blob of {len(data)} bytes, expected {4 * n_params}")
    vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(vec).all():
        raise ValueError("blob holds non-finite values")
    return vec


class Learner:
    """One hospital's data and the training/evaluation calls the daemon makes each round."""

    def __init__(self, plan: LearningPlan, n_nodes: int, node_index: int) -> None:
        self.plan = plan
        self.node_index = node_index
        self.local = mldata.node_data(plan.dataset, plan.split, n_nodes, node_index, plan.scaling)

    def train(self, global_vec: np.ndarray, round_id: int) -> TrainResult:
        seed = (self.plan.seed * 1_000_003 + round_id) * 1_009 + self.node_index
        return local_train(self.plan.model, global_vec, self.local.X_train, self.local.y_train,
                           self.plan.training, seed)

    def evaluate(self, vec: np.ndarray) -> EvalResult:
        return evaluate(self.plan.model, vec, self.local.X_test, self.local.y_test)

