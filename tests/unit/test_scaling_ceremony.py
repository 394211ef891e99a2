"""The scaling ceremony among four sites in separate homes, relayed by a coordinator: each site's statistics
go in masked, the result is the pooled mean and std, every site computes the same, and neither a forged relay
file nor a genesis whose scaling differs from a site's own result gets through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ml import sitedata
from node.cli import cli
from node.scaling import statistics_vector, vector_length
from node.scaling_ceremony import RESULT_FILE, SECRET_FILE, ceremony_id
from smpc import messages as sam
from smpc.secagg import RoundConfig

N = 4


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.output


def _consortium(tmp_path: Path) -> tuple[list[Path], Path, dict]:
    _ok("data", "split", "--sites", str(N), "--out", str(tmp_path / "public"))
    task_doc = json.loads((tmp_path / "public" / "task.json").read_text())
    (tmp_path / "task.json").write_text(json.dumps({"task": task_doc["task"]}))
    homes = [tmp_path / f"site-{i}" for i in range(N)]
    for i, home in enumerate(homes):
        _ok("init", "--home", str(home), "--name", f"hospital-{i}", "--port", str(27000 + i), "--status-port",
            str(27100 + i), "--data", str(tmp_path / "public" / f"site-{i}.csv"))
    genesis = tmp_path / "genesis.json"
    _ok("genesis", "new", "--out", str(genesis), "--task", str(tmp_path / "task.json"), "--rounds", "2")
    _ok("genesis", "add-member", str(genesis), *(str(h / "member.json") for h in homes))
    return homes, genesis, task_doc["task"]


def _rows(task: dict, path: Path) -> np.ndarray:
    frame, offset = sitedata.read_table(path)
    return sitedata.check_table(task, frame, path, offset, None)[0]


def _relay_round(homes: list[Path], genesis: Path, relay: Path) -> list[str]:
    """Every site runs one step; the coordinator gathers their outboxes into the relay."""
    outputs = [_ok("genesis", "scaling", "--home", str(h), "--genesis", str(genesis), "--relay", str(relay))
               for h in homes]
    relay.mkdir(exist_ok=True)
    for home in homes:
        for path in (home / "scaling-outbox").glob("*.bin"):
            shutil.copy(path, relay / path.name)
    return outputs


def test_four_sites_agree_on_the_pooled_scaling_without_revealing_their_statistics(tmp_path: Path) -> None:
    homes, genesis, task = _consortium(tmp_path)
    relay = tmp_path / "relay"
    for _ in range(5):
        outputs = _relay_round(homes, genesis, relay)
        if all("scaling:" in out for out in outputs):
            break
    assert all((h / RESULT_FILE).exists() and not (h / SECRET_FILE).exists() for h in homes)
    results = [json.loads((h / RESULT_FILE).read_text()) for h in homes]
    assert all(r == results[0] for r in results)
    pooled = np.concatenate([_rows(task, tmp_path / "public" / f"site-{i}.csv") for i in range(N)])
    np.testing.assert_allclose(results[0]["mean"], pooled.mean(axis=0), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(results[0]["std"], pooled.std(axis=0), rtol=1e-5, atol=1e-4)
    config = RoundConfig(ceremony_id(json.loads(genesis.read_text())), 0, tuple(range(1, N + 1)), 2,
                         vector_length(len(task["features"])))
    masked = np.frombuffer(sam.decode((relay / "masked-0.bin").read_bytes(), config.limits).masked, "<u4")
    plain = statistics_vector(sitedata.site_statistics(task, tmp_path / "public" / "site-0.csv"))
    assert np.mean(masked == plain) < 0.01  # what the relay sees of site 0 is masked

    _ok("genesis", "set-scaling", str(genesis), *(str(h / RESULT_FILE) for h in homes))
    chain = _ok("genesis", "check", str(genesis)).splitlines()[0].split()[-1]
    for home in homes:
        _ok("genesis", "check", str(genesis), "--home", str(home), "--confirm", chain)


def test_a_genesis_whose_scaling_is_not_the_sites_own_result_is_refused(tmp_path: Path) -> None:
    homes, genesis, _ = _consortium(tmp_path)
    relay = tmp_path / "relay"
    for _ in range(5):
        if all("scaling:" in out for out in _relay_round(homes, genesis, relay)):
            break
    _ok("genesis", "set-scaling", str(genesis), str(homes[0] / RESULT_FILE))
    raw = json.loads(genesis.read_text())
    raw["scaling"]["mean"][0] += 1.0
    genesis.write_text(json.dumps(raw))
    chain = _ok("genesis", "check", str(genesis)).splitlines()[0].split()[-1]
    result = CliRunner().invoke(cli, ["genesis", "check", str(genesis), "--home", str(homes[1]), "--confirm", chain])
    assert result.exit_code == 2 and "not the result of this site's scaling ceremony" in result.output


@pytest.mark.parametrize("forgery", ["another-members-file", "garbage"])
def test_a_relay_file_the_coordinator_forged_is_refused_naming_it(tmp_path: Path, forgery: str) -> None:
    homes, genesis, _ = _consortium(tmp_path)
    relay = tmp_path / "relay"
    _relay_round(homes, genesis, relay)
    forged = (relay / "keys-2.bin").read_bytes() if forgery == "another-members-file" else b"\x00" * 40
    (relay / "keys-1.bin").write_bytes(forged)
    result = CliRunner().invoke(cli, ["genesis", "scaling", "--home", str(homes[0]), "--genesis", str(genesis),
                                      "--relay", str(relay)])
    assert result.exit_code == 2 and "keys-1.bin" in result.output, result.output
