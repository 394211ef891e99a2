"""A site's data file against the genesis task schema: one-line errors naming file, row and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml import data as mldata
from ml.sitedata import SiteDataError, load_site_data, site_frames, task_for_dataset, write_table

TASK: dict[str, Any] = {
    "features": [{"name": "age", "type": "int", "unit": "years", "min": 0, "max": 120},
                 {"name": "bmi", "type": "float", "unit": "kg/m2"},
                 {"name": "smoker", "type": "binary"}],
    "label": {"name": "outcome", "values": ["healthy", "ill"]},
    "missing": "reject", "preprocessing": "none", "test_fraction": 0.25,
}
GOOD = "age,bmi,smoker,outcome,site_notes\n" + "".join(
    f"{30 + i},{20.5 + i},{i % 2},{'ill' if i % 2 else 'healthy'},x\n" for i in range(12))


def _load(tmp_path: Path, text: str, task: dict[str, Any] = TASK, name: str = "site.csv") -> Any:
    path = tmp_path / name
    path.write_text(text)
    return load_site_data(task, path, seed=1, scaling=(np.zeros(3), np.ones(3)))


def _replace_line(line_no: int, new: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


def test_a_good_file_splits_its_own_rows(tmp_path: Path) -> None:
    local = _load(tmp_path, GOOD)
    assert len(local.y_train) + len(local.y_test) == 12
    assert len(local.y_test) == 3
    assert local.X_train.shape[1] == 3
    assert set(local.y_train.tolist()) == {0, 1}


@pytest.mark.parametrize("text, expected", [
    (_replace_line(4, "32,abc,0,healthy,x"), "row 4, column 'bmi': 'abc' is not a finite number"),
    (_replace_line(5, "33.5,20,1,ill,x"), "row 5, column 'age': 33.5 is not an integer"),
    (_replace_line(6, "34,20,2,healthy,x"), "row 6, column 'smoker': 2 is not 0 or 1"),
    (_replace_line(7, "150,20,0,ill,x"), "row 7, column 'age': 150 is above the maximum 120"),
    (_replace_line(8, "36,,0,healthy,x"), "row 8, column 'bmi': missing value"),
    (_replace_line(9, "37,20,1,sick,x"), "row 9, column 'outcome': label 'sick' is not one of"),
    (_replace_line(10, "38,20,1,,x"), "row 10, column 'outcome': missing label"),
    (_replace_line(3, "31,inf,1,ill,x"), "row 3, column 'bmi'"),
    (GOOD.replace("bmi,", "bmj,", 1), "row 1: missing column(s) 'bmi'"),
    ("", "not a readable csv file"),
    ("age,bmi,smoker,outcome\n1,2,0,ill\n", "1 usable rows"),
])
def test_bad_file_is_one_line_naming_row_and_column(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SiteDataError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "site.csv") in message
    assert expected in message


def test_missing_values_policies(tmp_path: Path) -> None:
    text = _replace_line(8, "36,,0,healthy,x")
    dropped = _load(tmp_path, text, {**TASK, "missing": "drop_row"})
    assert len(dropped.y_train) + len(dropped.y_test) == 11
    imputed = _load(tmp_path, text, {**TASK, "missing": "impute_mean"})
    assert len(imputed.y_train) + len(imputed.y_test) == 12
    assert np.isfinite(imputed.X_train).all() and np.isfinite(imputed.X_test).all()


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SiteDataError, match="unknown data format"):
        _load(tmp_path, GOOD, name="site.xlsx")
    with pytest.raises(SiteDataError, match="no such data file"):
        load_site_data(TASK, tmp_path / "absent.csv", seed=1, scaling=None)


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    frame = pd.read_csv(pd.io.common.StringIO(GOOD))
    write_table(frame, tmp_path / "site.parquet")
    from_parquet = load_site_data(TASK, tmp_path / "site.parquet", seed=1, scaling=None)
    from_csv = _load(tmp_path, GOOD)
    assert np.array_equal(from_parquet.X_train, from_csv.X_train)
    assert np.array_equal(from_parquet.y_test, from_csv.y_test)


def test_bundled_dataset_sites_hold_every_row_once_and_pass_their_task(tmp_path: Path) -> None:
    spec = mldata.DatasetSpec(name="breast_cancer", seed=1)
    task, scaling = task_for_dataset(spec)
    frames = site_frames(spec, mldata.SplitSpec(kind="dirichlet", alpha=0.5), 4)
    assert sum(len(f) for f in frames) == len(mldata.load_dataset(spec).y)
    for i, frame in enumerate(frames):
        write_table(frame, tmp_path / f"site-{i}.csv")
        local = load_site_data(task, tmp_path / f"site-{i}.csv", seed=i,
                               scaling=(np.asarray(scaling["mean"]), np.asarray(scaling["std"])))
        assert len(local.y_train) + len(local.y_test) == len(frame)
