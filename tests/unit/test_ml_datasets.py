"""ml.datasets: the packaged benchmarks load without a download and split as the evaluation expects."""

from __future__ import annotations

import numpy as np

from ml.data import DatasetSpec, SplitSpec, load_dataset, partition


def test_digits_is_ten_classes_of_64_pixels() -> None:
    data = load_dataset(DatasetSpec(name="digits"))
    assert data.X.shape == (1797, 64) and data.n_classes == 10
    assert sorted(np.unique(data.y).tolist()) == list(range(10))


def test_actg175_sites_are_arm_by_stratum_and_give_a_natural_split() -> None:
    data = load_dataset(DatasetSpec(name="actg175"))
    assert data.X.shape == (2139, 15) and data.n_classes == 2 and np.isfinite(data.X).all()
    assert sorted(np.unique(data.groups["site"]).tolist()) == list(range(12))
    parts = partition(DatasetSpec(name="actg175"), SplitSpec(kind="column", column="site"), 7)
    site = data.groups["site"]
    assert all(len(set(site[part].tolist()) & set(site[other].tolist())) == 0
               for k, part in enumerate(parts) for other in parts[k + 1:])
