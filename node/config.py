"""Genesis (what the consortium agreed) and node configuration (how one hospital runs its daemon).

The genesis file is JSON for people to read and review. Its hash, taken over a canonical re-encoding
(sorted keys, no whitespace), is the chain id: two files that differ only in formatting name the same
chain, and any change of substance names a different chain whose messages every honest node refuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from consensus.quorum import max_faulty, quorum_size

GENESIS_FORMAT = 1
MAX_FILE_BYTES = 16 * 1024 * 1024


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
    source: Path | None = field(default=None, compare=False)
    """The file it was read from: files genesis names (a model module) are resolved next to it."""

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


def genesis_hash(raw: dict[str, Any]) -> bytes:
    """The chain id: sha256 of the canonical re-encoding of the genesis file's JSON."""
    return hashlib.sha256(canonical_json(raw)).digest()


def genesis_from_dict(raw: dict[str, Any], what: str = "genesis") -> Genesis:
    """Validate `raw` against the genesis schema (every error at once) and build the Genesis."""
    from pydantic import ValidationError

    from node.schema import GenesisFile, error_lines

    try:
        parsed = GenesisFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(error_lines(what, exc))) from None
    members = tuple(Member(name=m.name, public_key=bytes.fromhex(m.public_key), address=m.address)
                    for m in parsed.members)
    if not members:
        raise ConfigError(f"{what}: members: no members yet (add them with `fednode genesis add-member`)")
    problems = []
    if len({m.public_key for m in members}) != len(members):
        problems.append(f"{what}: members: two members share a public key")
    if len({m.name for m in members}) != len(members):
        problems.append(f"{what}: members: two members share a name")
    f = max_faulty(len(members)) if parsed.f is None else parsed.f
    if not f <= max_faulty(len(members)):
        problems.append(f"{what}: f: must be at most {max_faulty(len(members))} for {len(members)} members "
                        f"(N >= 3f+1)")
    if problems:
        raise ConfigError("\n".join(problems))
    return Genesis(raw=raw, members=members, f=f, chain_id=genesis_hash(raw),
                   _verify_keys=tuple(VerifyKey(m.public_key) for m in members))


def load_document(path: Path, what: str) -> dict[str, Any]:
    """A JSON object, or a TOML table when the file name ends in .toml; errors name the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") \
            from None
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{what} file {path} is not valid TOML: {exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} file {path} must hold a JSON object")
    return value


def load_json(path: Path, what: str) -> dict[str, Any]:
    return load_document(path, what)


def load_genesis(path: Path) -> Genesis:
    return replace(genesis_from_dict(load_document(path, "genesis"), f"genesis {path}"), source=path.resolve())


@dataclass(frozen=True)
class NodeConfig:
    """One daemon's settings. Relative paths in the file are relative to the file's directory."""

    home: Path
    genesis_path: Path
    genesis_hash: bytes
    key_path: Path
    listen_host: str
    listen_port: int
    status_port: int
    peers: tuple[str, ...]
    behaviour: dict[str, Any]
    status_host: str = "127.0.0.1"
    status_token: str | None = None
    data_path: Path | None = None
    data_format: str | None = None

    @property
    def db_path(self) -> Path:
        return self.home / "ledger"


def load_node_config(path: Path) -> NodeConfig:
    """Parse and validate a node config (every error at once); touches nothing on disk."""
    from pydantic import ValidationError

    from node.schema import NodeConfigFile, error_lines

    what = f"node config {path}"
    try:
        parsed = NodeConfigFile.model_validate(load_document(path, "node config"))
    except ValidationError as exc:
        raise ConfigError("\n".join(error_lines(what, exc))) from None
    base = path.resolve().parent

    def rel(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    return NodeConfig(home=rel(parsed.home), genesis_path=rel(parsed.genesis),
                      genesis_hash=bytes.fromhex(parsed.genesis_hash), key_path=rel(parsed.key),
                      listen_host=parsed.listen_host, listen_port=parsed.listen_port,
                      status_port=parsed.status_port, peers=tuple(parsed.peers),
                      behaviour=parsed.behaviour.model_dump(exclude_defaults=True),
                      status_host=parsed.status_host, status_token=parsed.status_token,
                      data_path=rel(parsed.data.path) if parsed.data else None,
                      data_format=parsed.data.format if parsed.data else None)


def load_node(path: Path, peers: tuple[str, ...] = ()) -> tuple[NodeConfig, Genesis]:
    """A node config and the genesis it confirms, cross-checked; raises ConfigError, creates nothing.

    The genesis file's hash must be the `genesis_hash` the operator confirmed in the config: a node given
    another consortium's file (or an edited one) refuses to start instead of stalling with rejected peers.
    """
    cfg = load_node_config(path)
    if peers:
        cfg = replace(cfg, peers=peers)
    genesis = load_genesis(cfg.genesis_path)
    if genesis.chain_id != cfg.genesis_hash:
        raise ConfigError(f"genesis {cfg.genesis_path} has hash {genesis.chain_id.hex()} but node config {path} "
                          f"confirms {cfg.genesis_hash.hex()}: get the consortium's final genesis.json "
                          f"(`fednode genesis check` prints its hash)")
    check_peers(cfg.peers, genesis)
    return cfg, genesis


def check_peers(peers: tuple[str, ...], genesis: Genesis) -> None:
    """Every peer multiaddr must be well formed and name a member's peer id."""
    from pydantic import TypeAdapter, ValidationError

    from node.identity import peer_id
    from node.schema import PeerAddress

    members = {peer_id(m.public_key) for m in genesis.members}
    adapter: TypeAdapter[str] = TypeAdapter(PeerAddress)
    problems = []
    for addr in peers:
        try:
            adapter.validate_python(addr)
        except ValidationError as exc:
            problems.append(f"peer {addr!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")
            continue
        if addr.rsplit("/p2p/", 1)[1] not in members:
            problems.append(f"peer {addr!r}: peer id is not a member of the genesis file")
    if problems:
        raise ConfigError("\n".join(problems))
