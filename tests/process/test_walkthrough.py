"""A consortium set up as hospitals do it: four sites in separate directories, each with its own data file,
set up with `init` and the genesis commands only, started with `fednode start --config ... --peers ...`;
then `fednode export` and `fednode audit` of the export on a directory holding only the ledger and
genesis.json; a changed byte of the export fails the audit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
N = 4
ROUNDS = 3
TIMEOUT_S = 300


def fednode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _ok(*args: str) -> str:
    result = fednode(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr[-2000:])
    return result.stdout


def _status(home: Path) -> dict:
    result = fednode("status", "--config", str(home / "config.json"), "--json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def test_four_sites_set_up_without_a_shared_machine(tmp_path: Path) -> None:
    from node.testnet import free_ports

    ports = free_ports(2 * N)
    _ok("data", "split", "--sites", str(N), "--out", str(tmp_path / "public"))
    sites = [tmp_path / f"site-{i}" for i in range(N)]
    for i, home in enumerate(sites):
        _ok("init", "--home", str(home), "--name", f"hospital-{i}", "--listen-host", "127.0.0.1",
            "--port", str(ports[i]), "--announce", f"/ip4/127.0.0.1/tcp/{ports[i]}", "--status-port",
            str(ports[N + i]), "--data", str(tmp_path / "public" / f"site-{i}.csv"))
    genesis = tmp_path / "genesis.json"
    _ok("genesis", "new", "--out", str(genesis), "--task", str(tmp_path / "public" / "task.json"),
        "--rounds", str(ROUNDS), "--consortium", "walkthrough")
    _ok("genesis", "add-member", str(genesis), *(str(home / "member.json") for home in sites))
    summary = _ok("genesis", "check", str(genesis)).splitlines()
    chain = summary[0].split()[-1]
    peers = [line.split()[-1] for line in summary if line.startswith("member ")]
    for home in sites:
        _ok("genesis", "check", str(genesis), "--home", str(home), "--confirm", chain)

    procs = [subprocess.Popen([sys.executable, "-m", "node.cli", "start", "--config", str(home / "config.json"),
                               *(arg for p in peers for arg in ("--peers", p))], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=open(home / "daemon.log", "w"),  # noqa: SIM115
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}) for home in sites]
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            statuses = [_status(home) for home in sites]
            if all(s.get("finished") for s in statuses):
                break
            time.sleep(2)
        assert all(s.get("finished") for s in statuses), [s.get("height") for s in statuses]
        assert len({s["head_hash"] for s in statuses}) == 1
        accuracies = [s["evaluations"][-1]["accuracy"] for s in statuses]
        assert min(accuracies) >= 0.85, accuracies
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)

    out = tmp_path / "model.safetensors"
    _ok("export", "--home", str(sites[0]), "--out", str(out))
    consortium = json.loads((tmp_path / "model.safetensors.card.json").read_text())["consortium_accuracy"]
    assert consortium["sites_reported"] == N
    own = {s["name"]: s["evaluations"][-1] for s in statuses}
    assert {site["site"]: (site["correct"], site["held_out_rows"]) for site in consortium["sites"]} == {
        name: (round(e["accuracy"] * e["held_out_rows"]), e["held_out_rows"]) for name, e in own.items()}
    auditor = tmp_path / "auditor"
    shutil.copytree(sites[1] / "ledger", auditor / "ledger")
    shutil.copy(genesis, auditor / "genesis.json")
    assert "OK: byte for byte" in _ok("audit", str(auditor), "--model", str(out))
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    result = fednode("audit", str(auditor), "--model", str(out))
    assert result.returncode == 1 and "FAILED" in result.stdout
