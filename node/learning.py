"""The node's learning side: genesis sections turned into ml specs, local data, training and evaluation.

Everything here runs in a worker thread (trio.to_thread) because torch blocks; nothing here touches the
network or the ledger. Model vectors travel as raw little-endian float32 bytes, whose sha256 is the model
hash the ledger commits to (`ml.params.params_hash`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
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


def _resolve_module(model: ModelSpec, genesis: Genesis) -> ModelSpec:
    """A module model's file is the one next to the genesis file; its hash is checked when it is loaded."""
    if model.kind != "module" or model.module is None:
        return model
    from ml.custom_model import split_reference

    try:
        path, func = split_reference(model.module)
    except ValueError as exc:
        raise ConfigError(f"genesis: model.module: {exc}") from None
    base = genesis.source.parent if genesis.source is not None else Path.cwd()
    return replace(model, module=f"{path if path.is_absolute() else base / path}:{func}")


@dataclass(frozen=True)
class LearningPlan:
    """The consortium's learning parameters, all read from genesis."""

    model: ModelSpec
    dataset: mldata.DatasetSpec | None
    split: mldata.SplitSpec
    training: TrainConfig
    scaling: tuple[np.ndarray, np.ndarray] | None
    seed: int
    initial_model_hash: bytes
    task: dict[str, Any] | None = None

    @staticmethod
    def from_genesis(genesis: Genesis) -> LearningPlan:
        model = _resolve_module(_build(ModelSpec, genesis.section("model"), "model"), genesis)
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
            dataset=_build(mldata.DatasetSpec, genesis.section("dataset"), "dataset") if "dataset" in genesis.raw
            else None,
            split=_build(mldata.SplitSpec, genesis.section("split"), "split"),
            training=training,
            scaling=scaling,
            seed=int(genesis.raw.get("seed", DEFAULT_SEED)),
            initial_model_hash=bytes.fromhex(initial_hash) if initial_hash else b"",
            task=genesis.section("task") or None,
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
    """One hospital's data and the training/evaluation calls the daemon makes each round.

    With a genesis `task`, the data is this site's own file (`data_path`, checked against the task schema)
    and its own held-out rows; with a genesis `dataset` (simulations only), it is this member's slice of a
    public dataset and the shared test split.
    """

    def __init__(self, plan: LearningPlan, n_nodes: int, node_index: int, data_path: Path | None = None,
                 data_format: str | None = None) -> None:
        self.plan = plan
        self.node_index = node_index
        self.local = self._local_data(n_nodes, data_path, data_format)

    def _local_data(self, n_nodes: int, data_path: Path | None, data_format: str | None) -> Any:
        if self.plan.task is not None:
            from ml.sitedata import load_site_data

            if data_path is None:
                raise ConfigError("genesis declares a task: set 'data' = {path = ...} in the node config to "
                                  "this site's data file")
            return load_site_data(self.plan.task, data_path, fmt=data_format,
                                  seed=self.plan.seed * 1_000_003 + self.node_index, scaling=self.plan.scaling)
        if self.plan.dataset is None:
            raise ConfigError("genesis declares neither a 'task' nor a 'dataset'")
        return mldata.node_data(self.plan.dataset, self.plan.split, n_nodes, self.node_index, self.plan.scaling)

    def train(self, global_vec: np.ndarray, round_id: int) -> TrainResult:
        seed = (self.plan.seed * 1_000_003 + round_id) * 1_009 + self.node_index
        return local_train(self.plan.model, global_vec, self.local.X_train, self.local.y_train,
                           self.plan.training, seed)

    def evaluate(self, vec: np.ndarray) -> EvalResult:
        return evaluate(self.plan.model, vec, self.local.X_test, self.local.y_test)

