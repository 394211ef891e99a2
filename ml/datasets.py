"""Benchmarks where poisoning hurts, from data shipped inside installed packages (no download).

Breast cancer with logistic regression is too easy to hurt: undefended FedAvg loses at most a few
points to any attack there. These two are harder and attackable:

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes, 64 pixel features),
  for a small MLP. Ten classes give label flipping and backdoors room to do damage, and a
  Dirichlet(alpha) label split gives hospitals really different data.
- ``actg175``: the ACTG 175 AIDS clinical trial shipped with lifelines (2,139 patients), label "an
  event (AIDS, death or a CD4 drop) was observed", baseline covariates only. Its treatment arm and
  antiretroviral-history stratum are a natural grouping (``site``: 4 arms x 3 strata = 12 groups), so
  a ``column`` split on ``site`` gives each simulated hospital whole groups of real, differing patients.

Each loader returns an ``ml.data.Dataset``; ``ml.data`` registers them by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ml.data import Dataset, DatasetSpec

ACTG_FEATURES = ("age", "wtkg", "hemo", "homo", "drugs", "karnof", "oprior", "z30", "zprior", "preanti", "race",
                 "gender", "symptom", "cd40", "cd80")
"""Covariates measured at baseline; follow-up measurements (cd420, cd496, cd820, offtrt, days) would leak the label."""
ACTG_LABEL = "cens"
ACTG_SITE_COLUMN = "site"


def load_digits_dataset(spec: DatasetSpec) -> Dataset:
    """scikit-learn's digits: pixels 0-16 as float32, labels 0-9."""
    from sklearn.datasets import load_digits

    from ml.data import Dataset

    bunch = load_digits()
    return Dataset(X=np.ascontiguousarray(bunch.data, dtype=np.float32), y=bunch.target.astype(np.int64),
                   feature_names=tuple(str(name) for name in bunch.feature_names), n_classes=10, groups={})


def load_actg175_dataset(spec: DatasetSpec) -> Dataset:
    """ACTG 175 from the CSV inside lifelines: baseline covariates, label ``cens``, group ``site`` =
    3 * arm + stratum - 1 (0-11). No baseline covariate is missing, so no imputation is needed."""
    import lifelines.datasets
    import pandas as pd

    from ml.data import Dataset

    frame = pd.read_csv(Path(lifelines.datasets.__file__).parent / "ACTG175.csv")
    features = frame[list(ACTG_FEATURES)]
    assert not features.isna().any().any(), "ACTG175 baseline covariates are complete"
    site = (3 * frame["arms"] + frame["strat"] - 1).to_numpy().astype(np.int64)
    return Dataset(X=np.ascontiguousarray(features.to_numpy(), dtype=np.float32),
                   y=frame[ACTG_LABEL].to_numpy().astype(np.int64), feature_names=ACTG_FEATURES, n_classes=2,
                   groups={ACTG_SITE_COLUMN: site})


LOADERS = {"digits": load_digits_dataset, "actg175": load_actg175_dataset}
