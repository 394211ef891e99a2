"""The consortium's result, out of the ledger: `fednode export` and the export check of `fednode audit`.

An export is a model file (torch state dict, safetensors, or ONNX) plus a model card (`<file>.card.json`):
chain id, round, the ledger's model hash, the members whose updates each round accepted, the ledger head
at export time, the consortium's accuracy of the round as the members' `eval` transactions committed it up to
that head (pooled and median, with each site's figure: `node.consortium`), and, when the exporting site has
its data, its own held-out accuracy.

Every format is written canonically: the same parameters, model and card give the same bytes. The audit
therefore needs no trust in the exporter: from the ledger and genesis.json alone it rebuilds the file the
card describes and compares it byte for byte, after checking the ledger itself and the card against it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from node.config import ConfigError, Genesis, load_genesis, load_node_config
from node.store import LEDGER_DIR, Store

FORMATS = {"torch": ".pt", "safetensors": ".safetensors", "onnx": ".onnx"}
CARD_FORMAT = 1
ONNX_OPSET = 17
ONNX_IR_VERSION = 8


class ExportError(Exception):
    """The export cannot be written or does not match the chain; the message says which and why."""


@dataclass(frozen=True)
class RoundRecord:
    """A committed round as the ledger records it."""

    round: int
    model_hash: bytes
    included: tuple[int, ...]
    height: int


@dataclass(frozen=True)
class ChainView:
    rounds: tuple[RoundRecord, ...]
    head_height: int
    head_hash: bytes
    block_hashes: dict[int, bytes]
    models: dict[bytes, bytes]
    evals: dict[int, dict[int, tuple[int, int, int]]]
    """The committed `eval`s the contract took: round -> member -> (correct, total, height of its block)."""

    def consortium_accuracy(self, round_id: int, names: list[str], upto: int) -> dict[str, Any] | None:
        """The round's consortium accuracy from the evals committed at heights up to `upto`."""
        from node.consortium import consortium_accuracy

        evals = {m: (c, t) for m, (c, t, h) in self.evals.get(round_id, {}).items() if h <= upto}
        return consortium_accuracy(evals, names)


def locate(home: Path, genesis_path: Path | None = None) -> tuple[Genesis, Path]:
    """The genesis and ledger of a directory: a node home (config.json) or just `ledger/` and genesis.json."""
    if genesis_path is None:
        config = home / "config.json"
        genesis_path = load_node_config(config).genesis_path if config.exists() else home / "genesis.json"
    return load_genesis(genesis_path), home / LEDGER_DIR


@contextmanager
def _opened(ledger: Path, genesis: Genesis) -> Iterator[Store]:
    from node.audit import private_copy

    with private_copy(ledger) as copy:
        store = Store.open(copy, genesis.chain_id, create=False)
        try:
            yield store
        finally:
            store.close()


def read_chain(ledger: Path, genesis: Genesis) -> ChainView:
    """Rounds, evals, head and model blobs of a stopped node's ledger (read from a private copy).

    The blocks are applied to the round contract, as a node does, so that only the transactions it took
    count (a committed block may carry one it skips, e.g. a second eval of the same member and round)."""
    from node import contract as rc
    from node.settings import round_settings

    contract = rc.Contract(round_settings(genesis, _plan(genesis)).contract, genesis.verify)
    rounds: dict[int, RoundRecord] = {}
    evals: dict[int, dict[int, tuple[int, int, int]]] = {}
    hashes: dict[int, bytes] = {}
    models: dict[bytes, bytes] = {}
    with _opened(ledger, genesis) as store:
        for block, _ in store.blocks():
            hashes[block.height] = block.hash()
            for event in contract.apply_block(block):
                if isinstance(event, rc.RoundOutcome) and event.committed:
                    rounds[event.round] = RoundRecord(event.round, event.model_hash, event.included, block.height)
                elif isinstance(event, rc.EvalCommitted):
                    evals.setdefault(event.round, {})[event.author] = (event.correct, event.total, block.height)
        for record in rounds.values():
            blob = store.blob(record.model_hash)
            if blob is not None:
                models[record.model_hash] = blob
        return ChainView(tuple(rounds[r] for r in sorted(rounds)), store.head_height, store.head_hash(), hashes,
                         models, evals)


def _plan(genesis: Genesis) -> Any:
    from node.learning import LearningPlan

    return LearningPlan.from_genesis(genesis)


def _vector(chain: ChainView, record: RoundRecord, n_params: int) -> np.ndarray:
    from node.learning import vector_from_bytes

    blob = chain.models.get(record.model_hash)
    if blob is None:
        raise ExportError(f"the ledger does not hold round {record.round}'s model {record.model_hash.hex()[:16]}")
    return vector_from_bytes(blob, n_params)


def pick_round(chain: ChainView, round_id: int | None) -> RoundRecord:
    if not chain.rounds:
        raise ExportError("the ledger holds no committed round yet")
    if round_id is None:
        return chain.rounds[-1]
    for record in chain.rounds:
        if record.round == round_id:
            return record
    raise ExportError(f"round {round_id} is not committed on this ledger (committed: "
                      f"{', '.join(str(r.round) for r in chain.rounds)})")


def card_for(genesis: Genesis, chain: ChainView, record: RoundRecord, fmt: str, file_bytes: bytes,
             file_name: str, accuracy: dict[str, Any] | None, head_height: int | None = None) -> dict[str, Any]:
    """The model card: everything in it but `accuracy` (this site's own figure) is derived from the ledger and
    genesis alone; the consortium accuracy counts the evals committed up to `head_height` (default: the head)."""
    names = [m.name for m in genesis.members]
    upto = chain.head_height if head_height is None else head_height
    task = genesis.raw.get("task") or {}
    return {
        "fednode_model_card": CARD_FORMAT,
        "file": file_name,
        "format": fmt,
        "file_sha256": hashlib.sha256(file_bytes).hexdigest(),
        "chain_id": genesis.chain_id.hex(),
        "consortium": genesis.raw.get("consortium", ""),
        "round": record.round,
        "model_hash": record.model_hash.hex(),
        "model": genesis.raw.get("model", {}),
        "features": [f["name"] for f in task.get("features", [])],
        "label": task.get("label"),
        "scaling": genesis.raw.get("scaling"),
        "rounds": [{"round": r.round, "height": r.height, "model_hash": r.model_hash.hex(),
                    "accepted_members": [names[i] for i in r.included if 0 <= i < len(names)]}
                   for r in chain.rounds if r.round <= record.round],
        "ledger_head": {"height": chain.head_height, "hash": chain.head_hash.hex()},
        "consortium_accuracy": chain.consortium_accuracy(record.round, names, upto),
        "accuracy": accuracy,
    }


def model_bytes(genesis: Genesis, vec: np.ndarray, fmt: str, record: RoundRecord) -> bytes:
    """The canonical bytes of the round's model in `fmt` (deterministic: the audit rebuilds and compares)."""
    from ml.models import model_at

    plan = _plan(genesis)
    model = model_at(plan.model, vec)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    meta = {"chain_id": genesis.chain_id.hex(), "model_hash": record.model_hash.hex(), "round": str(record.round)}
    if fmt == "torch":
        import torch

        buffer = io.BytesIO()
        torch.save({"state_dict": state, "model": dict(genesis.raw.get("model", {})), "fednode": meta}, buffer)
        return buffer.getvalue()
    if fmt == "safetensors":
        from safetensors.torch import save

        # one metadata key: safetensors keeps metadata in a hash map, so several keys come out in any order
        return save(state, metadata={"fednode": json.dumps(meta, sort_keys=True)})
    if fmt == "onnx" and plan.model.kind == "module":
        raise ExportError("ONNX export covers the built-in models (logreg, mlp); export a module model as torch or "
                          "safetensors")
    if fmt == "onnx":
        return _onnx_bytes(state, meta)
    raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _onnx_bytes(state: dict[str, Any], meta: dict[str, str]) -> bytes:
    """An ONNX graph of the linear layers (Gemm, ReLU between them) with a softmax output `probabilities`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = sorted({name.split(".")[0] for name in state}, key=int)
    nodes, inits, current = [], [], "features"
    for i, layer in enumerate(layers):
        weight, bias = f"{layer}.weight", f"{layer}.bias"
        inits += [numpy_helper.from_array(state[weight].numpy(), weight),
                  numpy_helper.from_array(state[bias].numpy(), bias)]
        out = "logits" if i == len(layers) - 1 else f"hidden{i}"
        nodes.append(helper.make_node("Gemm", [current, weight, bias], [out], transB=1))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"{out}_relu"]))
            out = f"{out}_relu"
        current = out
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    n_in = state[f"{layers[0]}.weight"].shape[1]
    n_out = state[f"{layers[-1]}.weight"].shape[0]
    graph = helper.make_graph(nodes, "fednode", [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                                                ["batch", n_in])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="fednode",
                              ir_version=ONNX_IR_VERSION)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def card_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".card.json")


def export(home: Path, fmt: str, out: Path | None, round_id: int | None) -> tuple[Path, dict[str, Any]]:
    """Write the round's model and its card; returns the model path and the card."""
    genesis, ledger = locate(home)
    chain = read_chain(ledger, genesis)
    record = pick_round(chain, round_id)
    vec = _vector(chain, record, _plan(genesis).n_params)
    data = model_bytes(genesis, vec, fmt, record)
    path = out or home / "exports" / f"model-round-{record.round}{FORMATS[fmt]}"
    card = card_for(genesis, chain, record, fmt, data, path.name, site_accuracy(home, genesis, vec))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    card_path(path).write_text(json.dumps(card, indent=2) + "\n")
    return path, card


def site_accuracy(home: Path, genesis: Genesis, vec: np.ndarray) -> dict[str, Any] | None:
    """This site's held-out accuracy of the model, when `home` is a node home with its data file."""
    from node.identity import load as load_identity
    from node.learning import Learner

    config = home / "config.json"
    if not config.exists():
        return None
    cfg = load_node_config(config)
    if cfg.data_path is None:
        return None
    index = genesis.index_of(load_identity(cfg.key_path).public_key)
    learner = Learner(_plan(genesis), genesis.n, index, cfg.data_path, cfg.data_format)
    result = learner.evaluate(vec)
    return {"site": genesis.members[index].name, "held_out_rows": int(result.n), "accuracy": float(result.accuracy)}


def verify(genesis: Genesis, ledger: Path, model_path: Path) -> list[str]:
    """Problems of an export against the chain (empty when it is exactly what the ledger committed)."""
    from node.config import load_document

    try:
        card = load_document(card_path(model_path), "model card")
        data = model_path.read_bytes()
    except (ConfigError, OSError) as exc:
        return [str(exc)]
    problems = []
    if card.get("chain_id") != genesis.chain_id.hex():
        problems.append(f"card chain_id {card.get('chain_id')} is not this genesis ({genesis.chain_id.hex()})")
    if card.get("file_sha256") != hashlib.sha256(data).hexdigest():
        problems.append(f"{model_path} has sha256 {hashlib.sha256(data).hexdigest()}, the card says "
                        f"{card.get('file_sha256')}")
    if problems:
        return problems
    chain = read_chain(ledger, genesis)
    try:
        record = pick_round(chain, card.get("round") if isinstance(card.get("round"), int) else -1)
        head = card.get("ledger_head") or {}
        if chain.block_hashes.get(head.get("height")) != bytes.fromhex(str(head.get("hash", ""))):
            problems.append(f"the card's ledger head {head} is not a block of this ledger")
        vec = _vector(chain, record, _plan(genesis).n_params)
        expected_card = card_for(genesis, chain, record, str(card.get("format")), data, str(card.get("file")),
                                 card.get("accuracy"), head.get("height") if isinstance(head.get("height"), int)
                                 else -1)
        expected_card["ledger_head"] = head
        for key in sorted(set(expected_card) | set(card)):
            if expected_card.get(key) != card.get(key):
                problems.append(f"card field {key!r} does not match the ledger")
        if model_bytes(genesis, vec, str(card.get("format")), record) != data:
            problems.append(f"{model_path} is not round {record.round}'s model {record.model_hash.hex()[:16]} as "
                            f"committed on the ledger")
    except (ExportError, ValueError) as exc:
        problems.append(str(exc))
    return problems

