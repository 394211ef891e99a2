"""A table of bad inputs an operator can give `fednode start`: each is one line on stderr, exit code 2, no
traceback, and nothing is created (no ledger directory, no other file)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ml.data import DatasetSpec, SplitSpec
from node import identity
from node.cli import cli
from node.testnet import create_testnet

Json = dict[str, Any]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("testnet")
    create_testnet(out, 4, rounds=2, seed=1, dataset=DatasetSpec(seed=1), split=SplitSpec())
    return out


def _edit(path: Path, change: Callable[[Json], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _member_peer(net: Path, i: int) -> str:
    genesis = json.loads((net / "genesis.json").read_text())
    return f"/ip4/127.0.0.1/tcp/4001/p2p/{identity.peer_id(bytes.fromhex(genesis['members'][i]['public_key']))}"


def _set(key: str, value: Any) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        _edit(net / "node-0" / "config.json", lambda c: c.__setitem__(key, value))
        return []
    return apply


def _set_genesis(section: str | None, key: str, value: Any) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        _edit(net / "genesis.json", lambda g: (g[section] if section else g).__setitem__(key, value))
        return []
    return apply


def _write(name: str, data: bytes) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        (net / "node-0" / name).write_bytes(data)
        return []
    return apply


def _peers(*addrs: str) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        return [arg for addr in addrs for arg in ("--peers", addr.replace("MEMBER1", _member_peer(net, 1)))]
    return apply


def _other_genesis(net: Path) -> list[str]:
    _edit(net / "genesis.json", lambda g: g.__setitem__("consortium", "another consortium"))
    return []


def _remove(name: str) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        (net / "node-0" / name).unlink()
        return []
    return apply


def _drop_key(key: str) -> Callable[[Path], list[str]]:
    def apply(net: Path) -> list[str]:
        _edit(net / "node-0" / "config.json", lambda c: c.pop(key))
        return []
    return apply


def _corrupt_data(net: Path) -> list[str]:
    path = net / "node-0" / "data.csv"
    lines = path.read_text().splitlines()
    lines[2] = "oops" + lines[2][lines[2].index(","):]
    path.write_text("\n".join(lines) + "\n")
    return []


BAD_INPUTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "binary bytes in config": (_write("config.json", b"\xff\xfe\x00{"), "not UTF-8"),
    "config not JSON": (_write("config.json", b'{"home": '), "not valid JSON"),
    "config a JSON list": (_write("config.json", b"[1, 2]"), "must hold a JSON object"),
    "peers not a multiaddr": (_peers("not-a-multiaddr"), "not a multiaddr"),
    "peer ip out of range": (_peers("/ip4/999.1.1.1/tcp/4000/p2p/12D3KooWHNspijKNKg552Ke4UFP6izNiAH9igmyzfkxGMvoRTGg4"),
                             "not an ip4 address"),
    "peer not a member": (_peers("/ip4/127.0.0.1/tcp/4000/p2p/12D3KooWHNspijKNKg552Ke4UFP6izNiAH9igmyzfkxGMvoRTGg4"),
                          "not a member"),
    "peer port zero": (_peers("/ip4/127.0.0.1/tcp/0/p2p/MEMBER1"), "not a multiaddr"),
    "status_port true": (_set("status_port", True), "status_port"),
    "status_port out of range": (_set("status_port", 70000), "status_port"),
    "listen_port a string": (_set("listen_port", "9000"), "listen_port"),
    "listen_host not an address": (_set("listen_host", "my host"), "listen_host"),
    "typo in a key": (_set("status_prot", 9000), "status_prot: unknown key"),
    "peers in config not a list": (_set("peers", "/ip4/1.2.3.4/tcp/1"), "peers"),
    "behaviour validator not a string": (_set("behaviour", {"validator": 5}), "behaviour.validator"),
    "status off loopback without token": (_set("status_host", "0.0.0.0"), "status_token"),
    "short status token": (_set("status_token", "abc"), "status_token"),
    "genesis_hash missing": (_drop_key("genesis_hash"), "genesis_hash: required"),
    "genesis_hash not hex": (_set("genesis_hash", "zz"), "genesis_hash"),
    "genesis file missing": (_set("genesis", "nowhere.json"), "not found"),
    "key file missing": (_remove("node.key"), "node.key"),
    "wrong genesis on a fresh node": (_other_genesis, "confirms"),
    "rounds five": (_set_genesis(None, "rounds", "five"), "rounds"),
    "string false": (_set_genesis("secure_aggregation", "enabled", "false"), "secure_aggregation.enabled"),
    "unknown genesis key": (_set_genesis(None, "roundz", 5), "roundz: unknown key"),
    "bad member key": (_set_genesis(None, "members", [{"name": "a", "public_key": "00", "address": "/ip4/1.2.3.4/tcp/1"}]),
                       "members.0.public_key"),
    "data file bad cell": (_corrupt_data, "row 3, column 'mean radius': 'oops' is not a finite number"),
    "data file missing": (_set("data", {"path": "nowhere.csv"}), "no such data file"),
    "data format unknown": (_set("data", {"path": "data.csv", "format": "xlsx"}), "data.format"),
    "negative lr": (_set_genesis("training", "lr", -1.0), "training.lr"),
}


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_nothing_created(case: str, template: Path, tmp_path: Path) -> None:
    net = tmp_path / "net"
    shutil.copytree(template, net)
    mutate, expected = BAD_INPUTS[case]
    extra = mutate(net)
    before = _tree(net)
    result = CliRunner().invoke(cli, ["start", "--config", str(net / "node-0" / "config.json"), *extra])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert _tree(net) == before


def test_every_config_error_is_reported_at_once(template: Path, tmp_path: Path) -> None:
    net = tmp_path / "net"
    shutil.copytree(template, net)
    _edit(net / "node-0" / "config.json",
          lambda c: c.update(status_port=True, listen_port="x", typo=1))
    result = CliRunner().invoke(cli, ["start", "--config", str(net / "node-0" / "config.json")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert [w for w in ("status_port", "listen_port", "typo") if not any(w in line for line in lines)] == []


def test_toml_config_is_accepted(template: Path, tmp_path: Path) -> None:
    from node.config import load_node

    net = tmp_path / "net"
    shutil.copytree(template, net)
    config = json.loads((net / "node-0" / "config.json").read_text())
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, (dict, list))]
    (net / "node-0" / "config.toml").write_text("\n".join(lines) + "\n")
    cfg, genesis = load_node(net / "node-0" / "config.toml")
    assert cfg.genesis_hash == genesis.chain_id


def test_testnet_with_bad_options_creates_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["testnet", "--out", str(tmp_path / "net"), "--dataset", "csv"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "net").exists()
