"""Generate a local consortium: keys, one genesis file and one config per node, under one directory.

Layout (node i's home is DIR/node-<i>/):

    DIR/genesis.json
    DIR/node-<i>/node.key      Ed25519 seed, mode 0600
    DIR/node-<i>/config.json   listen and status ports, paths relative to the file, the confirmed genesis hash
    DIR/node-<i>/data.csv      this site's rows of the bundled dataset, in the genesis task's layout

Genesis declares the task (feature and label columns, scaling from the public dataset), never the data:
each node reads only its own data file, exactly as a hospital does. With `hosts` the members are spread
over several machines (each listens on 0.0.0.0 and is announced at its host's address); copy each
node-<i> directory and genesis.json to its host.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consensus.quorum import max_faulty
from ml import data as mldata
from ml import sitedata
from ml.models import ModelSpec
from ml.params import initial_params, params_hash
from ml.robust import GENESIS_RULE
from ml.train import TrainConfig
from node import identity
from node.config import GENESIS_FORMAT, ConfigError, genesis_from_dict

_RESERVED: list[socket.socket] = []
"""Bound, never-listening sockets that keep this process's ports from being handed out again."""


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1, reserved until this process exits.

    Each port stays bound by a socket with SO_REUSEADDR that never listens: the kernel then gives the
    port to no other bind(0) or outgoing connection, and a plain bind by another process fails, while a
    daemon's listener (libp2p and trio set SO_REUSEADDR) still binds it. `fednode cluster` writes the
    testnet and starts the daemons in one process, so no other process can take a port in between, nor
    while a crashed member restarts.
    """
    sockets = [socket.socket() for _ in range(count)]
    _RESERVED.extend(sockets)
    for s in sockets:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]


def build_genesis(public_keys: list[bytes], addresses: list[str], *, rounds: int, seed: int,
                  dataset: mldata.DatasetSpec, model_kind: str, hidden: int, training: TrainConfig,
                  protocol: dict[str, Any], secure: bool = True, validate: bool = True,
                  consortium: str = "local-testnet", rule: dict[str, float | int] | None = None) -> dict[str, Any]:
    """A genesis dict whose task (schema, scaling, model shape) is derived from a bundled public dataset."""
    n = len(public_keys)
    task, scaling = sitedata.task_for_dataset(dataset)
    model = ModelSpec(kind=model_kind, n_features=len(task["features"]), n_classes=len(task["label"]["values"]),
                      hidden=hidden)
    return {
        "fednode_genesis": GENESIS_FORMAT,
        "consortium": consortium,
        "members": [{"name": f"hospital-{i}", "public_key": key.hex(), "address": address}
                    for i, (key, address) in enumerate(zip(public_keys, addresses))],
        "f": max_faulty(n),
        "rounds": rounds,
        "seed": seed,
        "model": asdict(model),
        "task": task,
        "training": asdict(training),
        "scaling": scaling,
        "initial_model_hash": params_hash(initial_params(model, seed)).hex(),
        "protocol": protocol,
        "secure_aggregation": {"enabled": secure, "clip_l2": 10.0, "sample_cap": 1000},
        "validation": {"enabled": secure and validate and n >= 3, "degree": max(1, max_faulty(n)), "sketch_width": 1000,
                       "rule": {**GENESIS_RULE, **(rule or {})}},
    }


def host_list(n_nodes: int, hosts: list[str] | None = None, starting_ip: str | None = None) -> list[str] | None:
    """One host per member: `hosts` as given (cycled when shorter), or consecutive addresses from `starting_ip`."""
    if hosts and starting_ip:
        raise ConfigError("give --hosts or --starting-ip, not both")
    if starting_ip:
        try:
            first = ipaddress.IPv4Address(starting_ip)
        except ValueError:
            raise ConfigError(f"--starting-ip {starting_ip!r} is not an IPv4 address") from None
        return [str(first + i) for i in range(n_nodes)]
    if not hosts:
        return None
    for host in hosts:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ConfigError(f"--hosts: {host!r} is not an IPv4 address") from None
    return [hosts[i % len(hosts)] for i in range(n_nodes)]


def _layout(n_nodes: int, hosts: list[str] | None, base_port: int) -> tuple[list[str], list[int], list[int], str]:
    """(member addresses, listen ports, status ports, listen host): free local ports on 127.0.0.1, or fixed
    ports counted from `base_port` per host (members sharing a host get consecutive ports)."""
    if hosts is None:
        ports = free_ports(2 * n_nodes)
        return [f"/ip4/127.0.0.1/tcp/{p}" for p in ports[:n_nodes]], ports[:n_nodes], ports[n_nodes:], "127.0.0.1"
    offsets = [hosts[:i].count(host) for i, host in enumerate(hosts)]
    listen = [base_port + 2 * off for off in offsets]
    if max(listen) + 1 > 65535:
        raise ConfigError(f"--base-port {base_port} leaves no room for {max(offsets) + 1} nodes per host")
    return ([f"/ip4/{h}/tcp/{p}" for h, p in zip(hosts, listen)], listen, [p + 1 for p in listen], "0.0.0.0")


def create_testnet(out: Path, n_nodes: int, *, rounds: int, seed: int, dataset: mldata.DatasetSpec,
                   split: mldata.SplitSpec, model_kind: str = "logreg", hidden: int = 32,
                   training: TrainConfig | None = None, protocol: dict[str, Any] | None = None,
                   behaviours: dict[int, dict[str, Any]] | None = None, secure: bool = True,
                   validate: bool = True, hosts: list[str] | None = None, base_port: int = 26656,
                   data_format: str = "csv", rule: dict[str, float | int] | None = None) -> list[Path]:
    """Write the consortium files and return each node's config path. Refuses to overwrite a testnet, and
    writes nothing before every input is checked."""
    if n_nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if (out / "genesis.json").exists():
        raise ConfigError(f"{out} already holds a testnet (genesis.json exists); choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    addresses, listen_ports, status_ports, listen_host = _layout(n_nodes, hosts, base_port)
    keys = [identity.generate() for _ in range(n_nodes)]
    genesis = build_genesis([k.public_key for k in keys], addresses, rounds=rounds, seed=seed, dataset=dataset,
                            model_kind=model_kind, hidden=hidden, training=training or TrainConfig(),
                            protocol=protocol or {}, secure=secure, validate=validate, rule=rule)
    chain_id = genesis_from_dict(genesis).chain_id
    frames = sitedata.site_frames(dataset, split, n_nodes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    configs = []
    for i, key in enumerate(keys):
        home = out / f"node-{i}"
        home.mkdir(mode=0o700, exist_ok=True)
        identity.save(key, home / "node.key")
        data_file = f"data.{data_format}"
        sitedata.write_table(frames[i], home / data_file)
        config = {"home": ".", "genesis": "../genesis.json", "genesis_hash": chain_id.hex(), "key": "node.key",
                  "data": {"path": data_file}, "listen_host": listen_host, "listen_port": listen_ports[i],
                  "status_port": status_ports[i], "peers": [], "behaviour": (behaviours or {}).get(i, {})}
        path = home / "config.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        configs.append(path)
    return configs
