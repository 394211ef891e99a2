"""Datasets, held-out test split and partitions of the training data across hospitals.

Everything here is a deterministic function of frozen specs, so every process of a simulated
consortium (and every real node given the same genesis) derives the same test split and the same
partition without talking to the others. Randomness comes only from ``numpy.random.default_rng``
and scikit-learn's ``random_state``, both seeded from the specs.

A real hospital has only its own rows: it would use ``DatasetSpec(name="csv", ...)`` with
``n_nodes=1`` and the consortium's agreed scaling. The splits exist to simulate a consortium from one
public dataset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

DATASET_NAMES = ("breast_cancer", "lung", "csv", "digits", "actg175")
SPLIT_KINDS = ("iid", "dirichlet", "column")

# A Dirichlet draw can leave a hospital (almost) empty; the repair step tops every node up to this
# many training rows (or to an equal share when the data is too small for that).
MIN_ROWS_PER_NODE = 8

# lung: the label is "died within one year of inclusion"; rows censored before one year have an
# unknown label and are dropped. Time and status define the label, so they are not features, and
# `inst` identifies the institution, which is a grouping (for the "column" split), not a feature.
LUNG_HORIZON_DAYS = 365
LUNG_FEATURES = ("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss")
LUNG_GROUP_COLUMN = "inst"

MAX_CSV_BYTES = 512 * 1024 * 1024


class DataError(ValueError):
    """Input data (a spec, a CSV file) that cannot be turned into a dataset; the message says why."""


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """Which data to load and how to hold out the test split (fraction and seed)."""

    name: str = "breast_cancer"
    csv_path: str | None = None
    label_column: str | None = None
    test_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """How the training rows are partitioned across nodes.

    ``iid``: a seeded shuffle cut into near-equal parts. ``dirichlet``: label skew, each class spread
    over the nodes with proportions drawn from Dirichlet(alpha); small alpha means more skew.
    ``column``: rows grouped by the values of ``column`` (e.g. lung's ``inst``), whole groups given
    to nodes.
    """

    kind: str = "iid"
    alpha: float = 0.5
    column: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """A whole dataset: features as float32, labels as int64 in ``range(n_classes)``.

    ``groups`` holds non-feature columns that a ``column`` split may use (lung's ``inst``).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    n_classes: int
    groups: dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class LocalData:
    """What one node trains on (its partition) and evaluates on (the shared test split)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Load the dataset named by ``spec``; results are cached per spec (a CSV file is read once
    per process) and their arrays are read-only, so callers cannot corrupt the shared copy."""
    return _load_cached(spec)


@functools.lru_cache(maxsize=16)
def _load_cached(spec: DatasetSpec) -> Dataset:
    _check_spec(spec)
    from ml.datasets import LOADERS

    loaders = {"breast_cancer": _load_breast_cancer, "lung": _load_lung, "csv": _load_csv, **LOADERS}
    dataset = loaders[spec.name](spec)
    for array in (dataset.X, dataset.y, *dataset.groups.values()):
        array.setflags(write=False)
    return dataset


def _check_spec(spec: DatasetSpec) -> None:
    if spec.name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {spec.name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if not 0.0 < spec.test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {spec.test_fraction}")
    if spec.name == "csv" and (spec.csv_path is None or spec.label_column is None):
        raise DataError("dataset 'csv' needs both csv_path and label_column")


def _load_breast_cancer(spec: DatasetSpec) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return Dataset(
        X=np.ascontiguousarray(bunch.data, dtype=np.float32),
        y=bunch.target.astype(np.int64),
        feature_names=tuple(str(name) for name in bunch.feature_names),
        n_classes=2,
        groups={},
    )


def _load_lung(spec: DatasetSpec) -> Dataset:
    """Lung cancer survival (NCCTG): label 1 = died within a year, 0 = alive after a year.

    Rows censored before a year are dropped (their label is unknown), as is the one row without an
    institution. Missing feature values are imputed with the column median over the kept rows, a
    deterministic choice that every node makes identically.
    """
    from lifelines.datasets import load_lung

    frame = load_lung()
    frame = frame[frame[LUNG_GROUP_COLUMN].notna()]
    died_within = (frame["status"] == 1) & (frame["time"] <= LUNG_HORIZON_DAYS)
    alive_after = frame["time"] > LUNG_HORIZON_DAYS
    frame = frame[died_within | alive_after]
    features = frame[list(LUNG_FEATURES)]
    features = features.fillna(features.median())
    return Dataset(
        X=np.ascontiguousarray(features.to_numpy(), dtype=np.float32),
        y=died_within[frame.index].to_numpy().astype(np.int64),
        feature_names=LUNG_FEATURES,
        n_classes=2,
        groups={LUNG_GROUP_COLUMN: frame[LUNG_GROUP_COLUMN].to_numpy().astype(np.int64)},
    )


def _load_csv(spec: DatasetSpec) -> Dataset:
    """A hospital's own CSV: one header row, numeric feature columns and one label column.

    Labels may be any values (numbers or strings); they are mapped to ``0..k-1`` in sorted order so
    that all hospitals with the same label set agree on the encoding.
    """
    assert spec.csv_path is not None and spec.label_column is not None
    frame = _read_csv(Path(spec.csv_path))
    if spec.label_column not in frame.columns:
        raise DataError(
            f"{spec.csv_path}: no label column {spec.label_column!r}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    labels = frame[spec.label_column]
    features = frame.drop(columns=[spec.label_column])
    _check_csv_content(spec.csv_path, features, labels)
    classes = sorted(labels.unique().tolist())
    return Dataset(
        X=np.ascontiguousarray(features.to_numpy(), dtype=np.float32),
        y=np.searchsorted(np.asarray(classes), labels.to_numpy()).astype(np.int64),
        feature_names=tuple(str(name) for name in features.columns),
        n_classes=len(classes),
        groups={},
    )


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than {MAX_CSV_BYTES} bytes")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc


def _check_csv_content(path: str, features: pd.DataFrame, labels: pd.Series) -> None:
    if len(features) == 0:
        raise DataError(f"{path}: no data rows")
    if features.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides the label")
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DataError(f"{path}: non-numeric feature columns: {', '.join(non_numeric)}")
    missing = [str(c) for c in features.columns if features[c].isna().any()]
    if missing or labels.isna().any():
        raise DataError(f"{path}: missing values in columns: {', '.join(missing or [str(labels.name)])}")
    if not np.isfinite(features.to_numpy(dtype=np.float64)).all():
        raise DataError(f"{path}: infinite feature values")
    if labels.nunique() < 2:
        raise DataError(f"{path}: label column {labels.name!r} has a single class; need at least two")


def _train_test_indices(spec: DatasetSpec, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Stratified held-out test split, identical for every node (it depends on the spec only)."""
    rows = np.arange(len(dataset.y))
    try:
        train, test = train_test_split(
            rows, test_size=spec.test_fraction, random_state=spec.seed, stratify=dataset.y
        )
    except ValueError as exc:
        raise DataError(f"cannot make a stratified test split of {len(rows)} rows: {exc}") from exc
    return np.sort(train), np.sort(test)


def feature_scaling(dataset: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (mean, std) of the training rows, as float32; std of a constant column is 1.

    In a simulation every node can compute this because it holds the whole public dataset. In a
    real deployment no node sees the others' rows, so the hospitals agree on the scaling out of band
    (e.g. published reference ranges, or a one-off secure aggregate of sums and sums of squares) and
    store it in the genesis file; ``node_data(..., scaling=...)`` then uses that instead.
    """
    data = load_dataset(dataset)
    train, _ = _train_test_indices(dataset, data)
    X = data.X[train].astype(np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0.0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def partition(
    dataset: DatasetSpec, split: SplitSpec, n_nodes: int
) -> list[np.ndarray]:
    """Row indices (into the full dataset) of each node's training part; each training row is in
    exactly one node's part, and every part is non-empty and sorted."""
    data = load_dataset(dataset)
    train, _ = _train_test_indices(dataset, data)
    if not 1 <= n_nodes <= len(train):
        raise DataError(f"cannot split {len(train)} training rows across {n_nodes} nodes")
    rng = np.random.default_rng([dataset.seed, n_nodes, 0x5EED])
    if split.kind == "iid":
        parts = np.array_split(rng.permutation(len(train)), n_nodes)
    elif split.kind == "dirichlet":
        parts = _dirichlet_parts(data.y[train], split.alpha, n_nodes, rng)
    elif split.kind == "column":
        parts = _column_parts(_group_values(data, split.column)[train], n_nodes)
    else:
        raise DataError(f"unknown split {split.kind!r}; expected one of {', '.join(SPLIT_KINDS)}")
    return [np.sort(train[part]) for part in parts]


def _dirichlet_parts(
    labels: np.ndarray, alpha: float, n_nodes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label-skewed parts: each class's rows are cut by proportions drawn from Dirichlet(alpha)."""
    if not alpha > 0.0:
        raise DataError(f"dirichlet alpha must be positive, got {alpha}")
    owners = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(n_nodes, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
        for node, chunk in enumerate(np.split(rows, cuts)):
            owners[chunk] = node
    _top_up(owners, n_nodes, min(MIN_ROWS_PER_NODE, len(labels) // n_nodes))
    return [np.flatnonzero(owners == node) for node in range(n_nodes)]


def _top_up(owners: np.ndarray, n_nodes: int, min_rows: int) -> None:
    """Move rows from the largest node to any node below ``min_rows``, deterministically (the
    largest node's highest row indices first, ties between nodes broken by lowest node index)."""
    for node in range(n_nodes):
        while (owners == node).sum() < min_rows:
            counts = np.bincount(owners, minlength=n_nodes)
            donor = int(np.argmax(counts))
            owners[np.flatnonzero(owners == donor)[-1]] = node


def _group_values(data: Dataset, column: str | None) -> np.ndarray:
    if column is None:
        raise DataError("a 'column' split needs SplitSpec.column")
    if column in data.groups:
        return data.groups[column]
    if column in data.feature_names:
        return data.X[:, data.feature_names.index(column)]
    known = sorted(data.groups) + list(data.feature_names)
    raise DataError(f"no column {column!r} to split by; known columns: {', '.join(known)}")


def _column_parts(values: np.ndarray, n_nodes: int) -> list[np.ndarray]:
    """Whole groups to nodes: largest group first, each to the node holding the fewest rows so far
    (ties by lowest node index); groups of equal size are taken in order of their value."""
    groups, counts = np.unique(values, return_counts=True)
    if len(groups) < n_nodes:
        raise DataError(f"only {len(groups)} distinct group values for {n_nodes} nodes")
    order = sorted(range(len(groups)), key=lambda g: (-counts[g], groups[g]))
    load = np.zeros(n_nodes, dtype=np.int64)
    owner_of_group = np.empty(len(groups), dtype=np.int64)
    for g in order:
        node = int(np.argmin(load))
        owner_of_group[g] = node
        load[node] += counts[g]
    owners = owner_of_group[np.searchsorted(groups, values)]
    return [np.flatnonzero(owners == node) for node in range(n_nodes)]


def node_data(
    dataset: DatasetSpec,
    split: SplitSpec,
    n_nodes: int,
    node_index: int,
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
) -> LocalData:
    """Node ``node_index``'s standardized training part and the shared standardized test split.

    Standardization uses ``scaling`` = (mean, std) when given (the consortium's agreed values from
    genesis), otherwise ``feature_scaling(dataset)``, computed on the pooled training rows, which is
    only possible in a simulation; see ``feature_scaling`` for what a real deployment does.
    """
    if not 0 <= node_index < n_nodes:
        raise DataError(f"node_index {node_index} out of range for {n_nodes} nodes")
    data = load_dataset(dataset)
    _, test = _train_test_indices(dataset, data)
    rows = partition(dataset, split, n_nodes)[node_index]
    mean, std = scaling if scaling is not None else feature_scaling(dataset)
    return _standardized(data, rows, test, mean, std)


def centralized_data(
    dataset: DatasetSpec, split: SplitSpec | None = None
) -> LocalData:
    """All training rows pooled, with the same test split and scaling as the nodes: the baseline.

    ``split`` does not change the pooled rows (every split covers all of them); it is accepted so
    that callers can pass the same pair of specs to ``node_data`` and here.
    """
    data = load_dataset(dataset)
    train, test = _train_test_indices(dataset, data)
    mean, std = feature_scaling(dataset)
    return _standardized(data, train, test, mean, std)


def _standardized(
    data: Dataset, train: np.ndarray, test: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> LocalData:
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (data.X.shape[1],) or std.shape != mean.shape or not (std > 0).all():
        raise DataError(
            f"scaling must be two vectors of {data.X.shape[1]} values with positive std"
        )
    return LocalData(
        X_train=(data.X[train] - mean) / std,
        y_train=data.y[train].copy(),
        X_test=(data.X[test] - mean) / std,
        y_test=data.y[test].copy(),
    )
