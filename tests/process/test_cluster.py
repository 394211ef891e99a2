"""Real daemons as separate processes on loopback: the product as users run it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def fednode(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process group; past `timeout_s` the whole group (the CLI and any daemons
    `fednode cluster` started) is killed, so a hung run fails the test and leaves no orphans."""
    command = [sys.executable, "-m", "node.cli", *args]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(f"fednode {' '.join(args)} ran over {timeout_s} s:\n{stderr[-3000:]}") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # daemons left behind by a CLI that exited
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def finished_cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("cluster") / "run"
    result = fednode("cluster", "--nodes", "4", "--rounds", "3", "--workdir", str(work), "--json",
                     "--stall-timeout", "180")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), work


def test_cluster_commits_every_round_with_equal_heads(finished_cluster: tuple[dict, Path]) -> None:
    summary, _ = finished_cluster
    assert summary["rounds_committed"] == 3
    assert len(summary["head_hashes"]) == 4 and len(set(summary["head_hashes"])) == 1
    assert summary["accuracy"] >= 0.93


def test_the_ledger_holds_every_sites_eval_and_their_pooled_accuracy(finished_cluster: tuple[dict, Path]) -> None:
    """The consortium accuracy the members' `eval`s committed is the pooled figure of the sites' own
    evaluations (each site's /status), for every round."""
    summary, _ = finished_cluster
    ledger = summary["consortium_accuracy"]
    assert ledger["sites_reported"] == 4 and len(ledger["sites"]) == 4
    assert ledger["pooled_accuracy"] == pytest.approx(summary["accuracy"], abs=1e-9)
    assert ledger["pooled_accuracy"] == pytest.approx(ledger["correct"] / ledger["held_out_rows"])
    assert list(summary["consortium_accuracy_by_round"].values()) == summary["accuracy_by_round"]
    accuracies = sorted(site["accuracy"] for site in ledger["sites"])
    assert ledger["median_site_accuracy"] == pytest.approx((accuracies[1] + accuracies[2]) / 2)


def test_audit_passes_on_untouched_homes(finished_cluster: tuple[dict, Path]) -> None:
    summary, work = finished_cluster
    for i in range(4):
        result = fednode("audit", str(work / f"node-{i}"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"consortium accuracy {summary['consortium_accuracy']['pooled_accuracy']:.4f} pooled over " \
               f"{summary['consortium_accuracy']['held_out_rows']} held-out rows of 4 sites" in result.stdout


def test_audit_fails_after_a_flipped_byte(finished_cluster: tuple[dict, Path], tmp_path: Path) -> None:
    _, work = finished_cluster
    import shutil

    home = tmp_path / "node-1"
    shutil.copytree(work / "node-1", home)
    (home / "config.json").write_text(
        (home / "config.json").read_text().replace('"../genesis.json"', json.dumps(str(work / "genesis.json"))))
    ledger_files = sorted(p for p in (home / "ledger").iterdir() if p.suffix in (".ldb", ".log") and p.stat().st_size)
    target = ledger_files[-1]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x40
    target.write_bytes(bytes(data))
    result = fednode("audit", str(home))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_give_one_line_errors(tmp_path: Path) -> None:
    missing = fednode("start", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    csv = fednode("testnet", "--out", str(tmp_path / "t"), "--dataset", "csv")
    assert csv.returncode == 2 and "--csv" in csv.stderr
