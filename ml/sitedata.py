"""One site's own data file, read and checked against the task schema the consortium agreed in genesis.

The task (a plain dict, the genesis file's `task` section) lists the feature columns (name, type, unit,
optional range), the label column and its values, the missing-value policy and the preprocessing. A site's
file (CSV with a header row, or Parquet) must hold those columns; any other column is ignored. Every error
names the file, the row (the line number for CSV, counting the header as line 1) and the column.

Each site holds out its own test rows (a seeded, stratified `test_fraction` of its file); nothing is shared.
Standardization uses the scaling fixed in genesis, so no site's statistics are revealed by it.
`site_statistics` gives this site's part of a scaling the consortium computes by secure aggregation: per
feature, the count, sum and sum of squares of its rows in fixed point (`node.scaling`).

`site_files` builds a task and one file per site from a bundled public dataset, for local clusters and
walk-throughs: the local cluster then runs exactly the path a hospital runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml import data as mldata

MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
STAT_FRAC_BITS = 16
"""Fixed point of `site_statistics`: a value x counts as round(x * 2^16), a resolution of 1.5e-5 units."""
STAT_MAX_ABS = float(1 << 24)
"""Largest |value| `site_statistics` takes: a bound on what the sums can reach (`node.scaling`)."""
MIN_ROWS = 4
FORMATS = ("csv", "parquet")

# Readable label values and units of the bundled datasets (anything else: the class index as a string).
LABEL_VALUES = {"breast_cancer": ["malignant", "benign"], "lung": ["alive at 1 year", "died within 1 year"]}
UNITS = {"age": "years", "sex": "1=male 2=female", "ph.ecog": "ECOG score", "ph.karno": "Karnofsky score",
         "pat.karno": "Karnofsky score", "meal.cal": "kcal", "wt.loss": "lbs"}
LABEL_COLUMN = {"breast_cancer": "diagnosis", "lung": "died_within_1y"}


class SiteDataError(mldata.DataError):
    """This site's data file does not match the task schema; the message names file, row and column."""


@dataclass(frozen=True)
class SiteData:
    """What this site trains on and evaluates on: both standardized, both from its own file only."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def file_format(path: Path, declared: str | None) -> str:
    fmt = declared or path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise SiteDataError(f"{path}: unknown data format {fmt!r}; use a .csv or .parquet file "
                            f"(or set data.format)")
    return fmt


def read_table(path: Path, fmt: str | None = None) -> tuple[pd.DataFrame, int]:
    """The file as strings-or-numbers per column, and the offset from a row index to the row number shown."""
    fmt = file_format(path, fmt)
    if not path.is_file():
        raise SiteDataError(f"{path}: no such data file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SiteDataError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        if fmt == "parquet":
            return pd.read_parquet(path), 1
        return pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True), 2
    except ImportError:
        raise SiteDataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise SiteDataError(f"{path}: not a readable {fmt} file ({str(exc).splitlines()[0]})") from None


def load_site_data(task: dict[str, Any], path: Path, *, fmt: str | None = None, seed: int,
                   scaling: tuple[np.ndarray, np.ndarray] | None) -> SiteData:
    """Read, check, encode and split this site's file; raise SiteDataError naming file, row and column."""
    frame, row_offset = read_table(path, fmt)
    X, y = check_table(task, frame, path, row_offset, scaling)
    train, test = _own_split(y, float(task.get("test_fraction", 0.2)), seed, path)
    if task.get("preprocessing", "standardize") == "standardize":
        if scaling is None:
            raise SiteDataError("genesis: task.preprocessing 'standardize' needs a 'scaling' section")
        mean, std = scaling
        X = (X - mean) / std
    X = np.ascontiguousarray(X, dtype=np.float32)
    return SiteData(X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test])


def site_statistics(task: dict[str, Any], path: Path, *, fmt: str | None = None) -> list[tuple[int, int, int]]:
    """Per feature: (cells with a value, sum, sum of squares) over this site's rows, values in fixed point
    (`STAT_FRAC_BITS`), as exact integers.

    Every row the task keeps counts, held-out rows included: the scaling is agreed before genesis fixes the
    seed that splits them. Rows the missing-value policy drops are left out; under `impute_mean` a missing
    cell is left out of its feature's count and sums (the mean to impute is what is being computed)."""
    frame, row_offset = read_table(path, fmt)
    policy = task.get("missing", "reject")
    X, _ = check_table({**task, "missing": "keep" if policy == "impute_mean" else policy}, frame, path, row_offset,
                       None)
    too_big = np.abs(np.nan_to_num(X)) > STAT_MAX_ABS
    if too_big.any():
        row, col = (int(v[0]) for v in np.nonzero(too_big))
        raise SiteDataError(f"{path}: column {task['features'][col]['name']!r}: |{X[row, col]:g}| is above "
                            f"{STAT_MAX_ABS:g}, the largest value the scaling statistics take")
    stats = []
    for column in X.T:
        fixed = np.round(column[~np.isnan(column)] * (1 << STAT_FRAC_BITS)).astype(np.int64).astype(object)
        stats.append((len(fixed), int(fixed.sum()), int((fixed * fixed).sum())))
    return stats


def check_table(task: dict[str, Any], frame: pd.DataFrame, path: Path, row_offset: int,
                scaling: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64, missing values handled by the task's policy) and label indices of the file."""
    features = task["features"]
    label = task["label"]
    wanted = [f["name"] for f in features] + [label["name"]]
    absent = [name for name in wanted if name not in frame.columns]
    if absent:
        raise SiteDataError(f"{path}: row 1: missing column(s) {', '.join(map(repr, absent))}; the task needs "
                            f"{', '.join(map(repr, wanted))}")
    columns = [_numeric_column(frame[f["name"]], f, path, row_offset) for f in features]
    X = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    labels = frame[label["name"]]
    X, labels, kept = _missing(task, X, labels, path, row_offset, scaling)
    y = _label_indices(labels, label, path, row_offset, kept)
    if len(y) < MIN_ROWS:
        raise SiteDataError(f"{path}: {len(y)} usable rows; at least {MIN_ROWS} are needed")
    return X, y


def _where(path: Path, row: int, column: str) -> str:
    return f"{path}: row {row}, column {column!r}"


def _numeric_column(values: pd.Series, feature: dict[str, Any], path: Path, row_offset: int) -> np.ndarray:
    name = feature["name"]
    present = values.notna().to_numpy()
    parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = present & ~np.isfinite(parsed)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SiteDataError(f"{_where(path, row + row_offset, name)}: {values.iloc[row]!r} is not a finite number")
    checks = [(feature.get("type") == "int", lambda v: v != np.round(v), "is not an integer"),
              (feature.get("type") == "binary", lambda v: (v != 0) & (v != 1), "is not 0 or 1"),
              (feature.get("min") is not None, lambda v: v < feature["min"], f"is below the minimum {feature.get('min')}"),
              (feature.get("max") is not None, lambda v: v > feature["max"], f"is above the maximum {feature.get('max')}")]
    for active, test, message in checks:
        if not active:
            continue
        with np.errstate(invalid="ignore"):
            wrong = present & test(parsed)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise SiteDataError(f"{_where(path, row + row_offset, name)}: {parsed[row]:g} {message}")
    return parsed


def _missing(task: dict[str, Any], X: np.ndarray, labels: pd.Series, path: Path, row_offset: int,
             scaling: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Apply the missing-value policy; a missing label always drops the row under drop_row, else is an error.
    `keep` (`site_statistics` only, never a genesis value) leaves missing feature cells as NaN."""
    policy = task.get("missing", "reject")
    missing_x = np.isnan(X)
    missing_y = labels.isna().to_numpy()
    kept = np.arange(len(labels))
    if policy == "drop_row":
        keep = ~(missing_x.any(axis=1) | missing_y)
        return X[keep], labels[keep], kept[keep]
    if missing_y.any():
        row = int(np.flatnonzero(missing_y)[0])
        raise SiteDataError(f"{_where(path, row + row_offset, task['label']['name'])}: missing label")
    if policy == "keep":
        return X, labels, kept
    if policy == "impute_mean" and missing_x.any():
        if scaling is None:
            raise SiteDataError("genesis: task.missing 'impute_mean' needs a 'scaling' section (its mean)")
        X = np.where(missing_x, np.asarray(scaling[0], dtype=np.float64)[None, :], X)
    elif missing_x.any():
        row, col = (int(v[0]) for v in np.nonzero(missing_x))
        raise SiteDataError(f"{_where(path, row + row_offset, task['features'][col]['name'])}: missing value "
                            f"(the task's missing-value policy is 'reject')")
    return X, labels, kept


def _label_indices(labels: pd.Series, label: dict[str, Any], path: Path, row_offset: int,
                   kept: np.ndarray) -> np.ndarray:
    values = [str(v) for v in label["values"]]
    text = labels.map(_label_text).to_numpy(dtype=object)
    known = np.isin(text, values)
    if not known.all():
        at = int(np.flatnonzero(~known)[0])
        raise SiteDataError(f"{_where(path, int(kept[at]) + row_offset, label['name'])}: label {text[at]!r} is "
                            f"not one of {', '.join(map(repr, values))}")
    index = {v: i for i, v in enumerate(values)}
    return np.array([index[t] for t in text], dtype=np.int64)


def _label_text(value: Any) -> str:
    """A Parquet integer label 1 and a CSV label "1" both read as "1"; 1.0 from a float column too."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _own_split(y: np.ndarray, test_fraction: float, seed: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """This site's held-out rows: stratified when every class has two rows or more, else a seeded shuffle."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        train, test = train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise SiteDataError(f"{path}: cannot hold out a test split of {len(rows)} rows: {exc}") from None
    return np.sort(train), np.sort(test)


def task_for_dataset(spec: mldata.DatasetSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """A genesis task section and a scaling section for a bundled (public) dataset.

    The scaling is computed from the whole public dataset: public metadata, known before any site joins.
    """
    data = mldata.load_dataset(spec)
    values = LABEL_VALUES.get(spec.name) or [str(i) for i in range(data.n_classes)]
    task = {
        "features": [{"name": name, "type": "float", "unit": UNITS.get(name, "")} for name in data.feature_names],
        "label": {"name": LABEL_COLUMN.get(spec.name, spec.label_column or "label"), "values": values},
        "missing": "reject",
        "preprocessing": "standardize",
        "test_fraction": spec.test_fraction,
    }
    mean, std = mldata.feature_scaling(spec)
    scaling = {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
               "source": f"public dataset {spec.name}"}
    return task, scaling


def site_frames(spec: mldata.DatasetSpec, split: mldata.SplitSpec, n_sites: int) -> list[pd.DataFrame]:
    """Each site's rows of a bundled dataset, in the task's column layout (features then label).

    Site i gets training part i of `split` and the i-th of n near-equal slices of the held-out rows, so the
    sites together hold every row once.
    """
    data = mldata.load_dataset(spec)
    task, _ = task_for_dataset(spec)
    parts = mldata.partition(spec, split, n_sites)
    test = np.setdiff1d(np.arange(len(data.y)), np.concatenate(parts))
    test_parts = np.array_split(test, n_sites)
    names = task["label"]["values"]
    frames = []
    for rows in (np.sort(np.concatenate([p, t])) for p, t in zip(parts, test_parts)):
        frame = pd.DataFrame(data.X[rows].astype(np.float64), columns=list(data.feature_names))
        frame[task["label"]["name"]] = [names[int(c)] for c in data.y[rows]]
        frames.append(frame)
    return frames


def write_table(frame: pd.DataFrame, path: Path) -> None:
    fmt = file_format(path, None)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.7g")
