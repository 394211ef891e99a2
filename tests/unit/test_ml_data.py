"""ml.data: splits cover every training row exactly once, are deterministic, and CSV errors are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data import (
    DataError,
    DatasetSpec,
    SplitSpec,
    centralized_data,
    feature_scaling,
    load_dataset,
    node_data,
    partition,
)

BREAST = DatasetSpec()
LUNG = DatasetSpec(name="lung")


def _train_rows(spec: DatasetSpec) -> np.ndarray:
    return np.sort(np.concatenate(partition(spec, SplitSpec(), 1)))


@settings(max_examples=25, deadline=None)
@given(
    n_nodes=st.integers(1, 12),
    kind=st.sampled_from(["iid", "dirichlet"]),
    alpha=st.sampled_from([0.05, 0.5, 5.0]),
    seed=st.integers(0, 3),
)
def test_every_training_row_in_exactly_one_node(n_nodes: int, kind: str, alpha: float, seed: int) -> None:
    spec = DatasetSpec(seed=seed)
    parts = partition(spec, SplitSpec(kind=kind, alpha=alpha), n_nodes)
    joined = np.concatenate(parts)
    assert len(parts) == n_nodes
    assert len(np.unique(joined)) == len(joined), "a row is in two nodes"
    assert np.array_equal(np.sort(joined), _train_rows(spec)), "a training row is in no node"
    assert min(len(p) for p in parts) >= min(8, len(joined) // n_nodes)


def test_test_split_is_stratified_disjoint_and_shared() -> None:
    data = load_dataset(BREAST)
    a = node_data(BREAST, SplitSpec(), 4, 0)
    b = node_data(BREAST, SplitSpec(kind="dirichlet"), 4, 3)
    assert np.array_equal(a.X_test, b.X_test) and np.array_equal(a.y_test, b.y_test)
    assert len(a.y_test) == round(0.2 * len(data.y))
    assert abs(a.y_test.mean() - data.y.mean()) < 0.02
    train_rows = set(_train_rows(BREAST).tolist())
    assert len(train_rows) + len(a.y_test) == len(data.y)


def test_dirichlet_small_alpha_skews_labels() -> None:
    data = load_dataset(BREAST)
    skewed = [data.y[p].mean() for p in partition(BREAST, SplitSpec(kind="dirichlet", alpha=0.05), 5)]
    even = [data.y[p].mean() for p in partition(BREAST, SplitSpec(kind="iid"), 5)]
    assert np.std(skewed) > 0.2
    assert np.std(even) < 0.1


def test_column_split_keeps_institutions_whole() -> None:
    data = load_dataset(LUNG)
    parts = partition(LUNG, SplitSpec(kind="column", column="inst"), 4)
    owners: dict[int, set[int]] = {}
    for node, rows in enumerate(parts):
        for inst in data.groups["inst"][rows]:
            owners.setdefault(int(inst), set()).add(node)
    assert all(len(nodes) == 1 for nodes in owners.values())
    assert len(np.concatenate(parts)) == len(_train_rows(LUNG))


def test_column_split_errors() -> None:
    with pytest.raises(DataError, match="no column 'nope'"):
        partition(LUNG, SplitSpec(kind="column", column="nope"), 4)
    with pytest.raises(DataError, match="distinct group values"):
        partition(LUNG, SplitSpec(kind="column", column="sex"), 4)


def test_lung_label_and_features() -> None:
    data = load_dataset(LUNG)
    assert data.X.dtype == np.float32 and data.y.dtype == np.int64
    assert np.isfinite(data.X).all()
    assert set(np.unique(data.y)) == {0, 1}
    assert "inst" not in data.feature_names and len(data.feature_names) == data.X.shape[1]


def test_standardization_uses_training_statistics_or_given_scaling() -> None:
    pooled = centralized_data(BREAST)
    assert np.allclose(pooled.X_train.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(pooled.X_train.std(axis=0), 1, atol=1e-3)
    mean, std = feature_scaling(BREAST)
    raw = load_dataset(BREAST).X
    given_scaling = (np.zeros_like(mean), np.full_like(std, 2.0))
    local = node_data(BREAST, SplitSpec(), 1, 0, scaling=given_scaling)
    assert np.allclose(local.X_train * 2.0, raw[_train_rows(BREAST)])
    with pytest.raises(DataError, match="scaling"):
        node_data(BREAST, SplitSpec(), 1, 0, scaling=(mean[:3], std[:3]))


def test_node_data_is_deterministic() -> None:
    split = SplitSpec(kind="dirichlet", alpha=0.3)
    a = node_data(DatasetSpec(seed=5), split, 6, 2)
    b = node_data(DatasetSpec(seed=5), split, 6, 2)
    assert a.X_train.tobytes() == b.X_train.tobytes() and a.y_train.tobytes() == b.y_train.tobytes()


def test_bad_specs() -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(DatasetSpec(name="mnist"))
    with pytest.raises(DataError, match="unknown split"):
        partition(BREAST, SplitSpec(kind="random"), 2)
    with pytest.raises(DataError, match="out of range"):
        node_data(BREAST, SplitSpec(), 2, 2)
    with pytest.raises(DataError, match="alpha"):
        partition(BREAST, SplitSpec(kind="dirichlet", alpha=0.0), 2)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hospital.csv"
    path.write_text(text)
    return str(path)


def test_csv_loads_and_encodes_labels(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(20))
    spec = DatasetSpec(name="csv", csv_path=_write(tmp_path, "age,score,outcome\n" + rows), label_column="outcome")
    data = load_dataset(spec)
    assert data.feature_names == ("age", "score") and data.n_classes == 2
    assert data.y.tolist() == [i % 2 for i in range(20)]
    local = node_data(spec, SplitSpec(), 2, 1)
    assert local.X_train.shape[1] == 2 and len(local.y_test) == 4


@pytest.mark.parametrize(
    ("text", "label", "message"),
    [
        (None, "y", "no such file"),
        ("a,b\n1,0\n2,1\n", "y", "no label column 'y'"),
        ("a,y\n", "y", "no data rows"),
        ("", "y", "not a readable CSV"),
        ("a,b,y\n1,x,0\n2,z,1\n", "y", "non-numeric feature columns: b"),
        ("a,y\n1,0\n,1\n", "y", "missing values in columns: a"),
        ("a,y\n1,0\n2,0\n", "y", "single class"),
        ("y\n0\n1\n", "y", "no feature columns"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str | None, label: str, message: str) -> None:
    path = str(tmp_path / "absent.csv") if text is None else _write(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load_dataset(DatasetSpec(name="csv", csv_path=path, label_column=label))


def test_csv_needs_path_and_label() -> None:
    with pytest.raises(DataError, match="csv_path and label_column"):
        load_dataset(DatasetSpec(name="csv"))


@settings(max_examples=100, deadline=None)
@given(content=st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(st.sampled_from(["1", "0", "2.5", "", "x", "nan", "inf", "-1e400", '"', "y"]), min_size=1,
                      max_size=4), min_size=1, max_size=8).map(lambda rows: "\n".join(",".join(r) for r in rows).encode()),
))
def test_any_csv_loads_or_raises_data_error(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    path.write_bytes(b"a,b,y\n" + content)
    try:
        data = load_dataset(DatasetSpec(name="csv", csv_path=str(path), label_column="y"))
    except DataError:
        return
    assert np.isfinite(data.X).all() and data.n_classes >= 2 and data.X.shape[0] == len(data.y)
