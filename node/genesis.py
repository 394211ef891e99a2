"""Setting a consortium up without a shared machine: one site's home (`init`) and the genesis ceremony.

1. Each site runs `fednode init --home DIR`: a key that never leaves DIR, a `member.json` (name, public key,
   announced address) to send to the coordinator, and a `config.json` not yet bound to any genesis.
2. The coordinator writes a draft (`genesis new`), adds every member's file (`genesis add-member`) and
   sends the final `genesis.json` to the sites; its hash (`genesis check`) is read out over another channel.
3. Each site runs `genesis check FILE --home DIR --confirm HASH`: the file must have exactly the hash the
   operator was given and must list this site; only then is the hash written into the config, and a node
   whose config holds no confirmed hash, or another one, refuses to start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.quorum import max_faulty
from node import identity
from node.config import GENESIS_FORMAT, ConfigError, Genesis, genesis_from_dict, genesis_hash, load_document

KEY_FILE = "node.key"
CONFIG_FILE = "config.json"
MEMBER_FILE = "member.json"
GENESIS_FILE = "genesis.json"


@dataclass(frozen=True)
class InitResult:
    home: Path
    peer_id: str
    public_key: str
    member_file: Path
    config_file: Path


def _validated(value: str, adapter_type: Any, what: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    try:
        return str(TypeAdapter(adapter_type).validate_python(value))
    except ValidationError as exc:
        raise ConfigError(f"{what} {value!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def init_home(home: Path, *, name: str, listen_host: str, port: int, status_port: int, announce: str | None,
              data: Path | None) -> InitResult:
    """Create DIR with a new key (0600), member.json and config.json; refuses an existing key, checks all first."""
    from node.schema import Address, IPHost, Name

    name = _validated(name, Name, "--name")
    listen_host = _validated(listen_host, IPHost, "--listen-host")
    address = _validated(announce or f"/ip4/127.0.0.1/tcp/{port}", Address, "--announce")
    if (home / KEY_FILE).exists():
        raise ConfigError(f"{home / KEY_FILE} exists: this home is initialised already (show it with "
                          f"`fednode show-node-id --home {home}`)")
    if (home / CONFIG_FILE).exists():
        raise ConfigError(f"{home / CONFIG_FILE} exists; choose an empty --home")
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{home} exists and is not a directory")
    if data is not None and not data.is_file():
        raise ConfigError(f"--data {data}: no such file")
    key = identity.generate()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity.save(key, home / KEY_FILE)
    member = {"name": name, "public_key": key.public_key.hex(), "address": address}
    _write_json(home / MEMBER_FILE, member)
    config: dict[str, Any] = {"home": ".", "genesis": GENESIS_FILE, "key": KEY_FILE, "listen_host": listen_host,
                              "listen_port": port, "status_port": status_port}
    if data is not None:
        config["data"] = {"path": str(data.resolve())}
    _write_json(home / CONFIG_FILE, config)
    return InitResult(home, identity.peer_id(key.public_key), key.public_key.hex(), home / MEMBER_FILE,
                      home / CONFIG_FILE)


def _write_json(path: Path, value: Any) -> None:
    """Write through a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def home_identity(home: Path) -> identity.Identity:
    """The key of a home made by `init` (or the key its config names)."""
    key_path = home / KEY_FILE
    if (home / CONFIG_FILE).exists():
        raw = load_document(home / CONFIG_FILE, "node config")
        if isinstance(raw.get("key"), str):
            key_path = home / raw["key"]
    return identity.load(key_path)


def new_genesis(*, consortium: str, task_doc: dict[str, Any], rounds: int, seed: int, model: dict[str, Any],
                training: dict[str, Any], protocol: dict[str, Any], secure: bool, validate: bool,
                module_path: Path | None = None) -> dict[str, Any]:
    """A draft genesis without members; `task_doc` holds 'task' and, for standardization, 'scaling'.

    A module model (`module_model`) is loaded from `module_path` to derive the initial model's hash; every
    site then needs that file next to its genesis.json.
    """
    from ml.models import ModelSpec
    from ml.params import initial_params, params_hash
    from ml.robust import GENESIS_RULE

    unknown = set(task_doc) - {"task", "scaling"}
    if unknown or "task" not in task_doc:
        raise ConfigError(f"task file must hold 'task' and optionally 'scaling'; found {', '.join(sorted(task_doc))}")
    task = task_doc["task"]
    n_features = len(task.get("features", [])) if isinstance(task, dict) else 0
    n_classes = len(task.get("label", {}).get("values", [])) if isinstance(task, dict) else 0
    model = {"n_features": n_features, "n_classes": n_classes, **model}
    draft: dict[str, Any] = {
        "fednode_genesis": GENESIS_FORMAT, "consortium": consortium, "members": [], "rounds": rounds, "seed": seed,
        "model": model, "task": task, "training": training, "protocol": protocol,
        "secure_aggregation": {"enabled": secure},
        "validation": {"enabled": secure and validate, "degree": 1,
                       "rule": dict(GENESIS_RULE)},
    }
    if "scaling" in task_doc:
        draft["scaling"] = task_doc["scaling"]
    check_draft(draft)
    spec_fields = {k: v for k, v in model.items() if k in ("kind", "n_features", "n_classes", "hidden")}
    if module_path is not None:
        spec_fields["module"] = f"{module_path.resolve()}:{model['module'].rpartition(':')[2]}"
        spec_fields["module_sha256"] = model["module_sha256"]
    try:
        spec = ModelSpec(**spec_fields)
        draft["initial_model_hash"] = params_hash(initial_params(spec, seed)).hex()
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    return draft


def module_model(reference: str) -> tuple[dict[str, Any], Path]:
    """The genesis model entry of the consortium's own model file, pinned by its sha256, and the file."""
    from ml.custom_model import file_sha256, split_reference

    try:
        path, func = split_reference(reference)
        digest = file_sha256(path)
    except ValueError as exc:
        raise ConfigError(f"--model-module: {exc}") from None
    return {"kind": "module", "module": f"{path.name}:{func}", "module_sha256": digest}, path


def check_draft(raw: dict[str, Any], what: str = "genesis") -> None:
    """Schema errors of a genesis that may still lack members (every error, one line each)."""
    from pydantic import ValidationError

    from node.schema import GenesisFile, error_lines

    try:
        GenesisFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(error_lines(what, exc))) from None


def add_members(path: Path, member_files: list[Path]) -> dict[str, Any]:
    """Append each member file's entry to the genesis at `path` (checked, no duplicate key or name)."""
    from node.schema import MemberEntry

    raw = load_document(path, "genesis")
    members = list(raw.get("members", []))
    for member_path in member_files:
        entry = load_document(member_path, "member")
        check_draft({**raw, "members": [entry]}, f"member {member_path}")
        MemberEntry.model_validate(entry)
        for other in members:
            for key in ("public_key", "name"):
                if other.get(key) == entry[key]:
                    raise ConfigError(f"member {member_path}: {key} {entry[key]} is already in {path} "
                                      f"({other.get('name')})")
        members.append(entry)
    raw["members"] = members
    if "f" in raw:
        del raw["f"]  # f follows N (the largest with N >= 3f+1) unless set after the last member is added
    if raw.get("validation", {}).get("enabled"):
        # The sketches stay private against f colluders only with a sharing degree of at least f.
        raw["validation"]["degree"] = max(1, max_faulty(len(members)))
    genesis_from_dict(raw, f"genesis {path}")
    _write_json(path, raw)
    return raw


def describe(genesis: Genesis) -> list[str]:
    """Human-readable summary lines of a genesis: what each member should check before confirming."""
    raw = genesis.raw
    task = raw.get("task")
    model = raw.get("model", {}).get("kind", "logreg")
    lines = [f"genesis hash {genesis.chain_id.hex()}",
             (f"consortium {raw.get('consortium', '')!r}: {genesis.n} members, f = {genesis.f} "
              f"(quorum {genesis.quorum}), {raw.get('rounds', 1)} rounds, model {model}")]
    if task:
        lines.append(f"task: {len(task['features'])} feature columns, label {task['label']['name']!r} in "
                     f"{task['label']['values']}, missing values: {task.get('missing', 'reject')}")
    for i, m in enumerate(genesis.members):
        lines.append(f"member {i}: {m.name} {m.address}/p2p/{identity.peer_id(m.public_key)}")
    return lines


def confirm(genesis_path: Path, home: Path, expected_hash: str) -> Genesis:
    """Bind the home's config to the genesis file whose hash the operator was given; refuse anything else."""
    expected = expected_hash.strip().lower()
    genesis = genesis_from_dict(load_document(genesis_path, "genesis"), f"genesis {genesis_path}")
    if genesis.chain_id.hex() != expected:
        raise ConfigError(f"genesis {genesis_path} has hash {genesis.chain_id.hex()}, not the confirmed {expected}: "
                          f"do not start; ask the coordinator for the final file")
    ident = home_identity(home)
    try:
        genesis.index_of(ident.public_key)
    except ConfigError:
        raise ConfigError(f"genesis {genesis_path} does not list this site (peer id "
                          f"{identity.peer_id(ident.public_key)}); ask the coordinator to add {home / MEMBER_FILE}") \
            from None
    from node.scaling_ceremony import check_own_result

    check_own_result(home, genesis.raw)
    config_path = home / CONFIG_FILE
    config = {**load_document(config_path, "node config"), "genesis": GENESIS_FILE,
              "genesis_hash": genesis_hash(genesis.raw).hex()}
    _check_site(config, config_path, genesis)
    target = home / GENESIS_FILE
    if genesis_path.resolve() != target.resolve():
        target.write_bytes(genesis_path.read_bytes())
    _write_json(config_path, config)
    return genesis


def _check_site(config: dict[str, Any], config_path: Path, genesis: Genesis) -> None:
    """The config as it will be written, and the site's data file against the genesis task."""
    from pydantic import ValidationError

    from node.schema import NodeConfigFile, error_lines

    try:
        parsed = NodeConfigFile.model_validate(config)
    except ValidationError as exc:
        raise ConfigError("\n".join(error_lines(f"node config {config_path}", exc))) from None
    _check_module(genesis, config_path.parent)
    task = genesis.raw.get("task")
    if task is None:
        return
    if parsed.data is None:
        raise ConfigError(f"node config {config_path}: data: genesis declares a task; set data.path to this "
                          f"site's file (CSV or Parquet)")
    import numpy as np

    from ml.sitedata import load_site_data

    scaling = genesis.raw.get("scaling")
    data_path = Path(parsed.data.path)
    load_site_data(task, data_path if data_path.is_absolute() else config_path.parent / data_path,
                   fmt=parsed.data.format, seed=0,
                   scaling=(np.asarray(scaling["mean"]), np.asarray(scaling["std"])) if scaling else None)


def _check_module(genesis: Genesis, home: Path) -> None:
    """A module model's file must sit next to the site's genesis.json with the pinned hash."""
    model = genesis.raw.get("model", {})
    if model.get("kind") != "module":
        return
    from ml.custom_model import file_sha256, split_reference

    try:
        path, _ = split_reference(model["module"])
        actual = file_sha256(home / path)
    except ValueError as exc:
        raise ConfigError(f"{exc}; copy the consortium's model file to {home}") from None
    if actual != model["module_sha256"]:
        raise ConfigError(f"model module {home / path} has sha256 {actual} but genesis pins {model['module_sha256']}")
