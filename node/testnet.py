"""Generate a local consortium: keys, one genesis file and one config per node, under one directory.

Layout (node i's home is DIR/node-<i>/):

    DIR/genesis.json
    DIR/node-<i>/node.key      Ed25519 seed, mode 0600
    DIR/node-<i>/config.json   listen and status ports, paths relative to the file
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consensus.quorum import max_faulty
from ml import data as mldata
from ml.models import ModelSpec
from ml.params import initial_params, params_hash
from ml.train import TrainConfig
from node import identity
from node.config import GENESIS_FORMAT, ConfigError, genesis_from_dict


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now on 127.0.0.1 (all held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def build_genesis(public_keys: list[bytes], ports: list[int], *, rounds: int, seed: int,
                  dataset: mldata.DatasetSpec, split: mldata.SplitSpec, model_kind: str, hidden: int,
                  training: TrainConfig, protocol: dict[str, Any], secure: bool = True,
                  validate: bool = True) -> dict[str, Any]:
    """A genesis dict for a local cluster; the model shape is derived from the dataset."""
    n = len(public_keys)
    ds = mldata.load_dataset(dataset)
    model = ModelSpec(kind=model_kind, n_features=ds.X.shape[1], n_classes=ds.n_classes, hidden=hidden)
    mean, std = mldata.feature_scaling(dataset)
    return {
        "fednode_genesis": GENESIS_FORMAT,
        "consortium": "local-testnet",
        "members": [{"name": f"hospital-{i}", "public_key": key.hex(), "address": f"/ip4/127.0.0.1/tcp/{port}"}
                    for i, (key, port) in enumerate(zip(public_keys, ports))],
        "f": max_faulty(n),
        "rounds": rounds,
        "seed": seed,
        "model": asdict(model),
        "dataset": asdict(dataset),
        "split": asdict(split),
        "training": asdict(training),
        "scaling": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "initial_model_hash": params_hash(initial_params(model, seed)).hex(),
        "protocol": protocol,
        "secure_aggregation": {"enabled": secure, "clip_l2": 10.0, "sample_cap": 1000},
        "validation": {"enabled": secure and validate and n >= 3, "degree": 1, "sketch_width": 1000,
                       "rule": {"kind": "norm_direction", "norm_factor": 1.5, "min_cosine": 0.0}},
    }


def create_testnet(out: Path, n_nodes: int, *, rounds: int, seed: int, dataset: mldata.DatasetSpec,
                   split: mldata.SplitSpec, model_kind: str = "logreg", hidden: int = 32,
                   training: TrainConfig | None = None, protocol: dict[str, Any] | None = None,
                   behaviours: dict[int, dict[str, Any]] | None = None, secure: bool = True,
                   validate: bool = True) -> list[Path]:
    """Write the consortium files and return each node's config path. Refuses to overwrite a testnet."""
    if n_nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if (out / "genesis.json").exists():
        raise ConfigError(f"{out} already holds a testnet (genesis.json exists); choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    ports = free_ports(2 * n_nodes)
    keys = [identity.generate() for _ in range(n_nodes)]
    genesis = build_genesis([k.public_key for k in keys], ports[:n_nodes], rounds=rounds, seed=seed,
                            dataset=dataset, split=split, model_kind=model_kind, hidden=hidden,
                            training=training or TrainConfig(), protocol=protocol or {}, secure=secure,
                            validate=validate)
    chain_id = genesis_from_dict(genesis).chain_id
    out.mkdir(parents=True, exist_ok=True)
    (out / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    configs = []
    for i, key in enumerate(keys):
        home = out / f"node-{i}"
        home.mkdir(mode=0o700, exist_ok=True)
        identity.save(key, home / "node.key")
        config = {"home": ".", "genesis": "../genesis.json", "genesis_hash": chain_id.hex(), "key": "node.key",
                  "listen_host": "127.0.0.1",
                  "listen_port": ports[i], "status_port": ports[n_nodes + i], "peers": [],
                  "behaviour": (behaviours or {}).get(i, {})}
        path = home / "config.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        configs.append(path)
    return configs
