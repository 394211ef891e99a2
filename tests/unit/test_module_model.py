"""A consortium's own model file, pinned in genesis by its sha256: sites with the same file build the same
initial model and train it; a site whose file differs refuses to start, naming both hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ml.params import params_hash
from node.cli import cli
from node.config import ConfigError, load_node
from node.learning import Learner, LearningPlan

MODEL = """from torch import nn


def build(n_features, n_classes):
    return nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, n_classes))
"""


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("module")
    (root / "mymodel.py").write_text(MODEL)
    assert _run("data", "split", "--sites", "2", "--out", str(root / "public"))[0] == 0
    for i in range(2):
        assert _run("init", "--home", str(root / f"site-{i}"), "--name", f"h{i}", "--port", str(19100 + i),
                    "--data", str(root / "public" / f"site-{i}.csv"))[0] == 0
    code, out = _run("genesis", "new", "--out", str(root / "genesis.json"), "--task",
                     str(root / "public" / "task.json"), "--model-module", f"{root / 'mymodel.py'}:build")
    assert code == 0, out
    assert _run("genesis", "add-member", str(root / "genesis.json"),
                *(str(root / f"site-{i}" / "member.json") for i in range(2)))[0] == 0
    return root


def _chain(root: Path) -> str:
    return _run("genesis", "check", str(root / "genesis.json"))[1].splitlines()[0].split()[-1]


def test_genesis_pins_the_file_and_the_initial_model(consortium: Path) -> None:
    genesis = json.loads((consortium / "genesis.json").read_text())
    assert genesis["model"]["kind"] == "module"
    assert genesis["model"]["module"] == "mymodel.py:build"
    assert len(genesis["model"]["module_sha256"]) == 64
    assert len(genesis["initial_model_hash"]) == 64


def test_a_site_without_the_file_cannot_confirm(consortium: Path) -> None:
    code, out = _run("genesis", "check", str(consortium / "genesis.json"), "--home", str(consortium / "site-1"),
                     "--confirm", _chain(consortium))
    assert code == 2 and "copy the consortium's model file" in out


def test_same_file_same_initial_model_and_it_trains(consortium: Path) -> None:
    shutil.copy(consortium / "mymodel.py", consortium / "site-0" / "mymodel.py")
    code, out = _run("genesis", "check", str(consortium / "genesis.json"), "--home", str(consortium / "site-0"),
                     "--confirm", _chain(consortium))
    assert code == 0, out
    cfg, genesis = load_node(consortium / "site-0" / "config.json")
    plan = LearningPlan.from_genesis(genesis)
    initial = plan.initial_model()
    assert params_hash(initial) == plan.initial_model_hash
    assert plan.n_params == 30 * 8 + 8 + 8 * 2 + 2
    learner = Learner(plan, genesis.n, 0, cfg.data_path)
    result = learner.train(initial, 1)
    assert np.isfinite(result.update).all() and np.abs(result.update).sum() > 0


def test_a_site_with_a_different_file_refuses_naming_both_hashes(consortium: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(consortium / "site-0", site)
    shutil.copy(consortium / "genesis.json", site / "genesis.json")
    (site / "mymodel.py").write_text(MODEL.replace("8", "9"))
    _, genesis = load_node(site / "config.json")
    pinned = genesis.raw["model"]["module_sha256"]
    with pytest.raises(ConfigError) as err:
        LearningPlan.from_genesis(genesis)
    assert pinned in str(err.value) and "has sha256" in str(err.value)
    code, out = _run("start", "--config", str(site / "config.json"))
    assert code == 2 and pinned in out and len(out.strip().splitlines()) == 1
    assert not (site / "ledger").exists()

