"""Setting up a consortium without a shared machine: init, show-node-id, genesis new/add-member/check."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli import cli
from node.config import load_genesis, load_node


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four sites initialised, a genesis with all four, not yet confirmed."""
    root = tmp_path_factory.mktemp("ceremony")
    assert _run("data", "split", "--sites", "4", "--out", str(root / "public"))[0] == 0
    for i in range(4):
        code, out = _run("init", "--home", str(root / f"site-{i}"), "--name", f"h{i}", "--port", str(19000 + i),
                         "--announce", f"/ip4/10.0.0.{i + 1}/tcp/{19000 + i}", "--data",
                         str(root / "public" / f"site-{i}.csv"))
        assert code == 0, out
    assert _run("genesis", "new", "--out", str(root / "genesis.json"), "--task", str(root / "public" / "task.json"),
                "--rounds", "3")[0] == 0
    code, out = _run("genesis", "add-member", str(root / "genesis.json"),
                     *(str(root / f"site-{i}" / "member.json") for i in range(4)))
    assert code == 0, out
    return root


def test_init_key_is_owner_only_and_peer_id_is_shown(ceremony: Path) -> None:
    key = ceremony / "site-0" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, out = _run("show-node-id", "--home", str(ceremony / "site-0"))
    assert code == 0 and out.startswith("12D3KooW")
    code, key_hex = _run("show-node-id", "--home", str(ceremony / "site-0"), "--public-key")
    member = json.loads((ceremony / "site-0" / "member.json").read_text())
    assert key_hex.strip() == member["public_key"]


def test_init_refuses_an_initialised_home_and_bad_input_creates_nothing(ceremony: Path, tmp_path: Path) -> None:
    code, out = _run("init", "--home", str(ceremony / "site-0"), "--name", "again")
    assert code == 2 and "exists" in out
    code, out = _run("init", "--home", str(tmp_path / "new"), "--name", "bad name!")
    assert code == 2 and len(out.strip().splitlines()) == 1
    code, out = _run("init", "--home", str(tmp_path / "new"), "--name", "ok", "--announce", "/ip4/1.2.3/tcp/1")
    assert code == 2 and "--announce" in out
    assert not (tmp_path / "new").exists()


def test_node_refuses_to_start_before_confirming(ceremony: Path) -> None:
    code, out = _run("start", "--config", str(ceremony / "site-1" / "config.json"))
    assert code == 2 and "genesis_hash: required key is missing" in out


def test_confirming_a_wrong_hash_names_both_and_changes_nothing(ceremony: Path) -> None:
    before = (ceremony / "site-2" / "config.json").read_text()
    code, out = _run("genesis", "check", str(ceremony / "genesis.json"), "--home", str(ceremony / "site-2"),
                     "--confirm", "ab" * 32)
    actual = load_genesis(ceremony / "genesis.json").chain_id.hex()
    assert code == 2 and actual in out and "ab" * 32 in out
    assert (ceremony / "site-2" / "config.json").read_text() == before
    assert not (ceremony / "site-2" / "genesis.json").exists()


def test_confirming_the_right_hash_binds_the_config(ceremony: Path) -> None:
    code, out = _run("genesis", "check", str(ceremony / "genesis.json"))
    assert code == 0
    chain = out.splitlines()[0].split()[-1]
    assert "member 3: h3 /ip4/10.0.0.4/tcp/19003/p2p/12D3KooW" in out
    code, out = _run("genesis", "check", str(ceremony / "genesis.json"), "--home", str(ceremony / "site-3"),
                     "--confirm", chain)
    assert code == 0, out
    cfg, genesis = load_node(ceremony / "site-3" / "config.json")
    assert genesis.chain_id.hex() == chain == cfg.genesis_hash.hex()


def test_non_member_site_cannot_confirm(ceremony: Path, tmp_path: Path) -> None:
    assert _run("init", "--home", str(tmp_path / "outsider"), "--name", "outsider")[0] == 0
    chain = load_genesis(ceremony / "genesis.json").chain_id.hex()
    code, out = _run("genesis", "check", str(ceremony / "genesis.json"), "--home", str(tmp_path / "outsider"),
                     "--confirm", chain)
    assert code == 2 and "does not list this site" in out


def test_a_member_cannot_be_added_twice(ceremony: Path, tmp_path: Path) -> None:
    copy = tmp_path / "genesis.json"
    copy.write_text((ceremony / "genesis.json").read_text())
    code, out = _run("genesis", "add-member", str(copy), str(ceremony / "site-0" / "member.json"))
    assert code == 2 and "already in" in out
    assert copy.read_text() == (ceremony / "genesis.json").read_text()


def test_a_draft_without_members_does_not_check(tmp_path: Path, ceremony: Path) -> None:
    assert _run("genesis", "new", "--out", str(tmp_path / "g.json"), "--task",
                str(ceremony / "public" / "task.json"))[0] == 0
    code, out = _run("genesis", "check", str(tmp_path / "g.json"))
    assert code == 2 and "no members yet" in out


def test_testnet_hosts_layout(tmp_path: Path) -> None:
    code, out = _run("testnet", "--nodes", "4", "--out", str(tmp_path / "net"), "--hosts", "10.0.0.1,10.0.0.2")
    assert code == 0, out
    genesis = json.loads((tmp_path / "net" / "genesis.json").read_text())
    assert [m["address"] for m in genesis["members"]] == [
        "/ip4/10.0.0.1/tcp/26656", "/ip4/10.0.0.2/tcp/26656", "/ip4/10.0.0.1/tcp/26658", "/ip4/10.0.0.2/tcp/26658"]
    code, out = _run("testnet", "--nodes", "2", "--out", str(tmp_path / "net2"), "--starting-ip", "192.168.0.10")
    assert code == 0, out
    genesis = json.loads((tmp_path / "net2" / "genesis.json").read_text())
    assert [m["address"] for m in genesis["members"]] == ["/ip4/192.168.0.10/tcp/26656", "/ip4/192.168.0.11/tcp/26656"]
    config = json.loads((tmp_path / "net2" / "node-1" / "config.json").read_text())
    assert (config["listen_host"], config["listen_port"], config["status_port"]) == ("0.0.0.0", 26656, 26657)


def test_adding_members_raises_the_sharing_degree_to_f(tmp_path: Path) -> None:
    """Seven members tolerate f = 2 colluders, so their sketches are shared with degree 2: add-member
    keeps the validation degree at f as N grows (a degree-1 genesis for 7 would be refused)."""
    assert _run("data", "split", "--sites", "7", "--out", str(tmp_path / "public"))[0] == 0
    for i in range(7):
        assert _run("init", "--home", str(tmp_path / f"site-{i}"), "--name", f"h{i}", "--port", str(19100 + i),
                    "--data", str(tmp_path / "public" / f"site-{i}.csv"))[0] == 0
    assert _run("genesis", "new", "--out", str(tmp_path / "genesis.json"),
                "--task", str(tmp_path / "public" / "task.json"), "--rounds", "2")[0] == 0
    code, out = _run("genesis", "add-member", str(tmp_path / "genesis.json"),
                     *(str(tmp_path / f"site-{i}" / "member.json") for i in range(7)))
    assert code == 0, out
    genesis = load_genesis(tmp_path / "genesis.json")
    assert genesis.f == 2 and genesis.raw["validation"]["degree"] == 2
