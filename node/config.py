"""Genesis (what the consortium agreed) and node configuration (how one hospital runs its daemon).

The genesis file is JSON for people to read and review. Its hash, taken over a canonical re-encoding
(sorted keys, no whitespace), is the chain id: two files that differ only in formatting name the same
chain, and any change of substance names a different chain whose messages every honest node refuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from consensus.quorum import max_faulty, quorum_size

GENESIS_FORMAT = 1
MAX_MEMBERS = 64


class ConfigError(Exception):
    """A genesis or node configuration file is missing or malformed; the message says what to fix."""


@dataclass(frozen=True)
class Member:
    name: str
    public_key: bytes
    address: str


@dataclass(frozen=True)
class Genesis:
    """The consortium's fixed parameters. `raw` is the parsed JSON, kept for the sections other modules own."""

    raw: dict[str, Any]
    members: tuple[Member, ...]
    f: int
    chain_id: bytes
    _verify_keys: tuple[VerifyKey, ...] = field(repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def quorum(self) -> int:
        return quorum_size(self.n, self.f)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"genesis: '{name}' must be an object")
        return value

    def index_of(self, public_key: bytes) -> int:
        for i, member in enumerate(self.members):
            if member.public_key == public_key:
                return i
        raise ConfigError("this node's key is not a member of the genesis file")

    def verify(self, replica: int, data: bytes, signature: bytes) -> bool:
        """Ed25519 check of `signature` by member `replica`; malformed input is simply invalid."""
        if not 0 <= replica < len(self._verify_keys) or len(signature) != 64:
            return False
        try:
            self._verify_keys[replica].verify(data, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def genesis_from_dict(raw: dict[str, Any]) -> Genesis:
    if raw.get("fednode_genesis") != GENESIS_FORMAT:
        raise ConfigError(f"genesis: 'fednode_genesis' must be {GENESIS_FORMAT}")
    members_raw = raw.get("members")
    if not isinstance(members_raw, list) or not 1 <= len(members_raw) <= MAX_MEMBERS:
        raise ConfigError(f"genesis: 'members' must list 1..{MAX_MEMBERS} members")
    members = tuple(_member(i, m) for i, m in enumerate(members_raw))
    if len({m.public_key for m in members}) != len(members):
        raise ConfigError("genesis: two members share a public key")
    if len({m.name for m in members}) != len(members):
        raise ConfigError("genesis: two members share a name")
    f = raw.get("f", max_faulty(len(members)))
    if not isinstance(f, int) or not 0 <= f <= max_faulty(len(members)):
        raise ConfigError(f"genesis: f must be an integer in [0, {max_faulty(len(members))}] for "
                          f"{len(members)} members (N >= 3f+1)")
    return Genesis(raw=raw, members=members, f=f, chain_id=hashlib.sha256(canonical_json(raw)).digest(),
                   _verify_keys=tuple(VerifyKey(m.public_key) for m in members))


def _member(i: int, m: Any) -> Member:
    if not isinstance(m, dict):
        raise ConfigError(f"genesis: member {i} must be an object")
    try:
        name, key_hex, address = str(m["name"]), str(m["public_key"]), str(m["address"])
    except KeyError as exc:
        raise ConfigError(f"genesis: member {i} lacks '{exc.args[0]}'") from None
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"genesis: member {i} ({name}) public_key must be 64 hex characters")
    return Member(name=name, public_key=key, address=address)


def load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} file {path} must hold a JSON object")
    return value


def load_genesis(path: Path) -> Genesis:
    return genesis_from_dict(load_json(path, "genesis"))


@dataclass(frozen=True)
class NodeConfig:
    """One daemon's settings. Relative paths in the file are relative to the file's directory."""

    home: Path
    genesis_path: Path
    key_path: Path
    listen_host: str
    listen_port: int
    status_port: int
    peers: tuple[str, ...]
    behaviour: dict[str, Any]

    @property
    def db_path(self) -> Path:
        return self.home / "ledger"


def load_node_config(path: Path) -> NodeConfig:
    raw = load_json(path, "node config")
    base = path.resolve().parent

    def rel(key: str, default: str | None = None) -> Path:
        value = raw.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"node config {path}: '{key}' must be a path string")
        p = Path(value)
        return p if p.is_absolute() else base / p

    def port(key: str) -> int:
        value = raw.get(key)
        if not isinstance(value, int) or not 0 <= value <= 65535:
            raise ConfigError(f"node config {path}: '{key}' must be a port number 0..65535")
        return value

    peers = raw.get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise ConfigError(f"node config {path}: 'peers' must be a list of multiaddr strings")
    behaviour = raw.get("behaviour", {})
    if not isinstance(behaviour, dict):
        raise ConfigError(f"node config {path}: 'behaviour' must be an object")
    return NodeConfig(home=rel("home", "."), genesis_path=rel("genesis"), key_path=rel("key", "node.key"),
                      listen_host=str(raw.get("listen_host", "127.0.0.1")), listen_port=port("listen_port"),
                      status_port=port("status_port"), peers=tuple(peers), behaviour=behaviour)
