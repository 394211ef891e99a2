"""`fednode export` writes a round's model with its card; `fednode audit --model` checks it with only the ledger
and genesis.json, byte for byte; any changed byte of the model or its card fails the audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from consensus.block import Block, CommitCertificate, commit_statement
from ml.data import DatasetSpec, SplitSpec
from node import identity
from node.cli import cli
from node.config import load_node
from node.contract import make_tx
from node.learning import LearningPlan, vector_bytes
from node.store import Store
from node.testnet import create_testnet

ROUNDS = 2
FORMATS = {"torch": "pt", "safetensors": "safetensors", "onnx": "onnx"}


INCLUDED = {1: [0, 1, 2], 2: [0, 1, 3]}
EVALS = {1: {0: (30, 36), 1: (33, 36), 2: (20, 35), 3: (34, 35)}, 2: {0: (31, 36), 1: (34, 36), 3: (35, 35)}}
"""What each member's `eval` declares per round: (correct, held-out rows)."""


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Node 0's home of a 4-member plain testnet whose ledger commits ROUNDS rounds as the contract runs them
    (open, updates, result; then the members' evals, with one replayed eval the contract skips), each block
    certified by 3 members."""
    configs = create_testnet(tmp_path_factory.mktemp("net"), 4, rounds=ROUNDS, seed=1,
                             dataset=DatasetSpec(seed=1), split=SplitSpec(), secure=False, validate=False)
    cfg, genesis = load_node(configs[0])
    keys = [identity.load(load_node(c)[0].key_path) for c in configs]
    plan = LearningPlan.from_genesis(genesis)
    store = Store.open(cfg.db_path, genesis.chain_id)
    rng = np.random.default_rng(7)

    def tx(kind: str, author: int, round_id: int, fields: list[object]) -> bytes:
        return make_tx(genesis.chain_id, kind, author, round_id, fields, keys[author].sign)

    def commit(*txs: bytes, blobs: dict[bytes, bytes] | None = None) -> None:
        block = Block(genesis.chain_id, store.head_height + 1, store.head_hash(), view=0, proposer=0, txs=txs)
        statement = commit_statement(genesis.chain_id, 0, block.height, block.hash())
        cert = CommitCertificate(block.height, 0, block.hash(), tuple((i, keys[i].sign(statement)) for i in range(3)))
        store.append_block(block, cert, blobs or {})

    try:
        model = plan.initial_model_hash
        for round_id in range(1, ROUNDS + 1):
            commit(tx("open", 0, round_id, [model, [0, 1, 2, 3]]))
            blob = vector_bytes(rng.normal(size=plan.n_params).astype(np.float32))
            digest = store.put_blob(blob)
            updates = [tx("update", a, round_id, [bytes([a]) * 32, 10]) for a in INCLUDED[round_id]]
            commit(*updates, tx("result", 0, round_id, [INCLUDED[round_id], digest]), blobs={digest: blob})
            evals = [tx("eval", a, round_id, [digest, c, t]) for a, (c, t) in EVALS[round_id].items()]
            commit(*evals, tx("eval", 0, round_id, [digest, 0, EVALS[round_id][0][1]]))
            model = digest
    finally:
        store.close()
    return cfg.home


def _auditor_dir(node_home: Path, tmp_path: Path) -> Path:
    """What an outside auditor gets: the ledger and genesis.json, no node config, key or data."""
    audit_dir = tmp_path / "auditor"
    shutil.copytree(node_home / "ledger", audit_dir / "ledger")
    shutil.copy(node_home.parent / "genesis.json", audit_dir / "genesis.json")
    return audit_dir


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_then_audit_without_node_config(fmt: str, node_home: Path, tmp_path: Path) -> None:
    out = tmp_path / f"model.{FORMATS[fmt]}"
    result = CliRunner().invoke(cli, ["export", "--home", str(node_home), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / f"model.{FORMATS[fmt]}.card.json").read_text())
    assert card["round"] == ROUNDS
    assert [r["accepted_members"] for r in card["rounds"]] == [["hospital-0", "hospital-1", "hospital-2"],
                                                                ["hospital-0", "hospital-1", "hospital-3"]]
    assert card["accuracy"]["site"] == "hospital-0"
    audit_dir = _auditor_dir(node_home, tmp_path)
    result = CliRunner().invoke(cli, ["audit", str(audit_dir), "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert "OK: byte for byte" in result.output


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_changed_byte_fails_the_audit(fmt: str, node_home: Path, tmp_path: Path) -> None:
    out = tmp_path / f"model.{FORMATS[fmt]}"
    assert CliRunner().invoke(cli, ["export", "--home", str(node_home), "--format", fmt, "--round", "1",
                                    "--out", str(out)]).exit_code == 0
    audit_dir = _auditor_dir(node_home, tmp_path)
    original = out.read_bytes()
    for position in (0, len(original) // 2, len(original) - 1):
        changed = bytearray(original)
        changed[position] ^= 0x01
        out.write_bytes(bytes(changed))
        result = CliRunner().invoke(cli, ["audit", str(audit_dir), "--model", str(out)])
        assert result.exit_code == 1, (position, result.output)
        assert "FAILED" in result.output


def test_a_card_rewritten_to_match_a_changed_model_still_fails(node_home: Path, tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "model.safetensors"
    assert CliRunner().invoke(cli, ["export", "--home", str(node_home), "--out", str(out)]).exit_code == 0
    changed = bytearray(out.read_bytes())
    changed[-1] ^= 0x01
    out.write_bytes(bytes(changed))
    card_file = tmp_path / "model.safetensors.card.json"
    card = json.loads(card_file.read_text())
    card["file_sha256"] = hashlib.sha256(bytes(changed)).hexdigest()
    card_file.write_text(json.dumps(card))
    result = CliRunner().invoke(cli, ["audit", str(_auditor_dir(node_home, tmp_path)), "--model", str(out)])
    assert result.exit_code == 1
    assert "is not round 2's model" in result.output


def test_the_card_carries_the_consortium_accuracy_from_the_members_evals(node_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(cli, ["export", "--home", str(node_home), "--round", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "consortium accuracy 0.8239 (4 sites" in result.output
    consortium = json.loads((tmp_path / "model.safetensors.card.json").read_text())["consortium_accuracy"]
    assert consortium["pooled_accuracy"] == pytest.approx(117 / 142)  # the replayed eval of member 0 is skipped
    assert consortium["sites_reported"] == 4 and consortium["held_out_rows"] == 142
    assert consortium["median_site_accuracy"] == pytest.approx((30 / 36 + 33 / 36) / 2)
    assert [(s["site"], s["correct"]) for s in consortium["sites"]] == [
        ("hospital-0", 30), ("hospital-1", 33), ("hospital-2", 20), ("hospital-3", 34)]


def test_audit_recomputes_the_consortium_accuracy(node_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    assert CliRunner().invoke(cli, ["export", "--home", str(node_home), "--out", str(out)]).exit_code == 0
    audit_dir = _auditor_dir(node_home, tmp_path)
    result = CliRunner().invoke(cli, ["audit", str(audit_dir)])
    assert result.exit_code == 0, result.output
    assert "round 2: consortium accuracy 0.9346 pooled over 107 held-out rows of 3 sites" in result.output
    card_file = tmp_path / "model.safetensors.card.json"
    card = json.loads(card_file.read_text())
    card["consortium_accuracy"]["pooled_accuracy"] = 0.99
    card_file.write_text(json.dumps(card))
    result = CliRunner().invoke(cli, ["audit", str(audit_dir), "--model", str(out)])
    assert result.exit_code == 1
    assert "card field 'consortium_accuracy' does not match the ledger" in result.output


def test_onnx_export_computes_what_the_torch_model_computes(node_home: Path, tmp_path: Path) -> None:
    import torch
    from onnx.reference import ReferenceEvaluator

    out = tmp_path / "model.onnx"
    assert CliRunner().invoke(cli, ["export", "--home", str(node_home), "--format", "onnx", "--out", str(out)]
                              ).exit_code == 0
    assert CliRunner().invoke(cli, ["export", "--home", str(node_home), "--format", "torch", "--out",
                                    str(tmp_path / "model.pt")]).exit_code == 0
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    x = np.random.default_rng(0).normal(size=(5, state["0.weight"].shape[1])).astype(np.float32)
    expected = x @ state["0.weight"].numpy().T + state["0.bias"].numpy()
    (logits, _) = ReferenceEvaluator(str(out)).run(None, {"features": x})
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_export_of_an_uncommitted_round_is_one_line(node_home: Path) -> None:
    result = CliRunner().invoke(cli, ["export", "--home", str(node_home), "--round", "9"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "round 9 is not committed" in result.output
