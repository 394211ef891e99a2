"""The CLI answers --help and --version without loading the heavy libraries (torch, sklearn, libp2p)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli import cli

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "sklearn", "libp2p", "pandas", "trio", "pydantic")

PROBE = """
import sys
from node.cli import main
sys.argv = ["fednode", *{args!r}]
try:
    main()
except SystemExit:
    pass
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["start", "--help"], ["testnet", "--help"],
                                  ["genesis", "--help"], ["export", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_version_names_the_package() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("fednode ")


def test_verbose_flag_after_the_subcommand() -> None:
    result = CliRunner().invoke(cli, ["status", "-v", "--config", "/nonexistent/config.json"])
    assert result.exit_code == 2
    assert "No such option" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_malicious_members_choose_who_misbehaves() -> None:
    from node.cli_options import UserError, malicious_members
    assert malicious_members({"malicious": 2}, 5) == (3, 4)
    assert malicious_members({"malicious": 0, "malicious_members": "2,0"}, 4) == (0, 2)
    assert malicious_members({"malicious": 1, "malicious_members": "0"}, 4) == (0,)
    for kw, match in [({"malicious": 5}, "exceeds"), ({"malicious": 0, "malicious_members": "0,0"}, "distinct"),
                      ({"malicious": 0, "malicious_members": "4"}, "distinct"),
                      ({"malicious": 0, "malicious_members": "a"}, "indices like"),
                      ({"malicious": 2, "malicious_members": "0"}, "contradicts")]:
        with pytest.raises(UserError, match=match):
            malicious_members(kw, 4)


def test_rule_changes_reach_genesis_or_fail_in_one_line(tmp_path: Path) -> None:
    from ml.robust import rule_changes
    from node.cli_options import UserError, make_testnet

    assert rule_changes("clip_factor=1,norm_ratio=0,spread_power=2") == {"clip_factor": 1.0, "norm_ratio": 0.0,
                                                                          "spread_power": 2}
    for text, match in [("f=2", "'f' is not one of"), ("clip_factor=x", "is not a number"),
                        ("clip_factor=nan", "finite"), ("distance_ratio=-1", "finite"), ("kind=x", "not one of")]:
        with pytest.raises(ValueError, match=match):
            rule_changes(text)
    kw = {"dataset": "breast_cancer", "csv_path": None, "label_column": None, "split": "iid", "alpha": 0.5,
          "split_column": None, "model_kind": "logreg", "hidden": 8, "epochs": None, "lr": None, "plain": False,
          "no_validation": False, "malicious": 0, "attack": "sign-flip", "shell_faults": (),
          "validator_fault": "none", "consensus_fault": "none", "rule_text": "clip_factor=x"}
    with pytest.raises(UserError, match=r"^--rule 'clip_factor=x': clip_factor='x' is not a number$"):
        make_testnet(tmp_path / "bad", 4, 1, 0, kw)
    assert not (tmp_path / "bad").exists()
    make_testnet(tmp_path / "default", 4, 1, 0, {**kw, "rule_text": ""})
    rule = json.loads((tmp_path / "default" / "genesis.json").read_text())["validation"]["rule"]
    assert rule == {"kind": "bounded_distance", "clip_factor": 1.0, "norm_ratio": 0.0, "distance_ratio": 2.5,
                    "spread_power": 3}
    make_testnet(tmp_path / "net", 4, 1, 0, {**kw, "rule_text": "clip_factor=0,norm_ratio=2,distance_ratio=1.5"})
    rule = json.loads((tmp_path / "net" / "genesis.json").read_text())["validation"]["rule"]
    assert rule["clip_factor"] == 0.0 and rule["norm_ratio"] == 2.0 and rule["distance_ratio"] == 1.5
