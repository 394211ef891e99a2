"""Feature scaling from a secure sum of the sites' counts, sums and sums of squares (node.scaling).

The sites' statistics vectors go through a real Bonawitz round (smpc.simulation, round id 0): the consortium's
mean and std decoded from the ring sum must equal those of the sites' rows pooled, to the fixed
point's resolution, with a site dropping out before masking too; the limb encoding must not wrap at its bound.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ml import data as mldata
from ml import sitedata
from node import scaling
from smpc import limbs
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round

N_SITES = 4
SEED = 3


def _sites(tmp_path: Path) -> tuple[dict, list[Path]]:
    spec = mldata.DatasetSpec(seed=1)
    task, _ = sitedata.task_for_dataset(spec)
    paths = []
    for i, frame in enumerate(sitedata.site_frames(spec, mldata.SplitSpec(), N_SITES)):
        paths.append(tmp_path / f"site-{i}.csv")
        sitedata.write_table(frame, paths[-1])
    return task, paths


def _rows(task: dict, path: Path) -> np.ndarray:
    frame, offset = sitedata.read_table(path)
    return sitedata.check_table(task, frame, path, offset, None)[0]


@pytest.mark.parametrize("dropped", [frozenset(), frozenset({2})], ids=["all-sites", "one-drops-before-masking"])
def test_the_secure_sum_gives_the_pooled_mean_and_std(tmp_path: Path, dropped: frozenset[int]) -> None:
    task, paths = _sites(tmp_path)
    n_features = len(task["features"])
    vectors = {i + 1: scaling.statistics_vector(sitedata.site_statistics(task, p))
               for i, p in enumerate(paths)}
    config = RoundConfig(hashlib.sha256(b"consortium").digest(), scaling.STATISTICS_ROUND,
                         tuple(range(1, N_SITES + 1)), 2, scaling.vector_length(n_features))
    outcome = run_round(config, vectors, DropSchedule(before_mask=frozenset(i + 1 for i in dropped)), seed=SEED)
    assert outcome.results, outcome.aborted
    totals = {r.total.tobytes() for r in outcome.results.values()}
    assert len(totals) == 1
    result = scaling.scaling_from_sum(next(iter(outcome.results.values())).total, n_features,
                                      N_SITES - len(dropped))
    pooled = np.concatenate([_rows(task, p) for i, p in enumerate(paths) if i not in dropped])
    np.testing.assert_allclose(result["mean"], pooled.mean(axis=0), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(result["std"], pooled.std(axis=0), rtol=1e-5, atol=1e-4)
    assert f"{N_SITES - len(dropped)} sites" in result["source"]


def test_no_cancellation_for_a_large_mean_and_a_small_spread() -> None:
    rng = np.random.default_rng(SEED)
    sites = [1_000_000.0 + rng.normal(scale=0.01, size=500) for _ in range(3)]
    unit = 1 << scaling.FRAC_BITS
    stats = []
    for x in sites:
        fixed = np.round(x * unit).astype(np.int64).astype(object)
        stats.append([(len(fixed), int(fixed.sum()), int((fixed * fixed).sum()))])
    total = sum((scaling.statistics_vector(s).astype(np.uint64) for s in stats), np.zeros(1, np.uint64))
    result = scaling.scaling_from_sum((total % (1 << 32)).astype(np.uint32), 1, 3)
    pooled = np.concatenate(sites)
    assert result["mean"][0] == pytest.approx(pooled.mean(), abs=1e-4)
    assert result["std"][0] == pytest.approx(pooled.std(), rel=1e-3)


def test_limbs_sum_exactly_at_their_bound_and_refuse_beyond() -> None:
    bound = (1 << (16 * scaling.STAT_LIMBS - 1 - 16)) - 1
    values = [bound, -bound, 0, 12345]
    summed = np.zeros(4 * scaling.STAT_LIMBS, dtype=np.uint64)
    for _ in range(limbs.MAX_SUMMANDS):
        summed += limbs.encode(values, scaling.STAT_LIMBS)
    assert summed.max() < 1 << 32
    assert limbs.decode(summed.astype(np.uint32), 4, scaling.STAT_LIMBS) == [v * limbs.MAX_SUMMANDS for v in values]
    with pytest.raises(ValueError, match="too wide"):
        limbs.encode([bound + 1], scaling.STAT_LIMBS)


def test_a_value_beyond_the_statistics_bound_names_file_and_column(tmp_path: Path) -> None:
    task, paths = _sites(tmp_path)
    frame, _ = sitedata.read_table(paths[0])
    column = task["features"][0]["name"]
    frame[column] = frame[column].astype(float) * 0 + 2.0**25
    sitedata.write_table(frame, paths[0])
    with pytest.raises(sitedata.SiteDataError, match=f"site-0.csv: column '{column}'"):
        sitedata.site_statistics(task, paths[0])


def test_data_split_writes_the_secure_sum_scaling(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from node.cli import cli

    out = tmp_path / "split"
    result = CliRunner().invoke(cli, ["data", "split", "--sites", "3", "--out", str(out), "--scaling", "secure-sum"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "task.json").read_text())
    assert doc["scaling"]["source"].startswith("secure aggregation of 3 sites")
    pooled = np.concatenate([_rows(doc["task"], out / f"site-{i}.csv") for i in range(3)])
    np.testing.assert_allclose(doc["scaling"]["mean"], pooled.mean(axis=0), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(doc["scaling"]["std"], pooled.std(axis=0), rtol=1e-5, atol=1e-4)
