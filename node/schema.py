"""Schemas of the files an operator writes: the node config (JSON or TOML) and the genesis file (JSON).

Validation is strict (pydantic v2 strict mode): no coercion, so `"rounds": "five"`, `"status_port": true` or
`"enabled": "false"` are errors rather than surprises, and an unknown key (a typo) is an error rather than a
silently kept default. Every error of a file is reported at once, one line each, naming the key's path.
The schemas only validate: the genesis file's parsed JSON stays the source of the chain id.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_MEMBERS = 64
MAX_ROUNDS = 1_000_000
MAX_FEATURES = 100_000
MAX_CLASSES = 1000

_BASE58 = "[1-9A-HJ-NP-Za-km-z]"
_HOST = r"(?P<proto>ip4|ip6|dns4|dns6|dns)/(?P<host>[^/]+)"
ADDRESS_RE = re.compile(rf"^/{_HOST}/tcp/(?P<port>\d{{1,5}})$")
PEER_RE = re.compile(rf"^/{_HOST}/tcp/(?P<port>\d{{1,5}})/p2p/(?P<peer>{_BASE58}{{40,60}})$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                         r"[A-Za-z0-9])?)*$")
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HEX32_RE = r"^[0-9a-f]{64}$"


def _check_host(proto: str, host: str) -> None:
    if proto in ("ip4", "ip6"):
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an {proto} address") from None
        if parsed.version != int(proto[-1]):
            raise ValueError(f"{host!r} is not an {proto} address")
    elif not HOSTNAME_RE.match(host):
        raise ValueError(f"{host!r} is not a DNS name")


def _multiaddr(pattern: re.Pattern[str], shape: str) -> Any:
    def check(value: str) -> str:
        match = pattern.match(value)
        if match is None:
            raise ValueError(f"not a multiaddr of the form {shape}")
        _check_host(match["proto"], match["host"])
        if not 0 < int(match["port"]) <= 65535:
            raise ValueError(f"port {match['port']} is not in 1..65535")
        return value
    return AfterValidator(check)


Address = Annotated[str, _multiaddr(ADDRESS_RE, "/ip4/HOST/tcp/PORT")]
PeerAddress = Annotated[str, _multiaddr(PEER_RE, "/ip4/HOST/tcp/PORT/p2p/PEER-ID")]
Port = Annotated[int, Field(ge=0, le=65535)]
Hex32 = Annotated[str, Field(pattern=HEX32_RE)]
Name = Annotated[str, Field(pattern=NAME_RE)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return host


IPHost = Annotated[str, AfterValidator(parse_listen_host)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class DataSource(Strict):
    """This site's own data file, checked against the genesis task schema at start."""

    path: str = Field(min_length=1)
    format: Literal["csv", "parquet"] | None = None


class Behaviour(Strict):
    """Fault injection for evaluations and tests (`fednode cluster --malicious`, `--crash`); empty in production."""

    attack: str | None = None
    attack_params: dict[str, Any] = {}
    n_malicious: int = Field(default=1, ge=0, le=MAX_MEMBERS)
    validator: str | None = None
    crash_after_input_round: int = Field(default=0, ge=0)
    consensus_fault: str | None = None
    shell_faults: list[str] = Field(default=[], max_length=64)


class NodeConfigFile(Strict):
    """One hospital's `config.json` or `config.toml`. Paths are relative to the file's directory."""

    home: str = "."
    genesis: str = Field(min_length=1)
    genesis_hash: Hex32
    key: str = "node.key"
    data: DataSource | None = None
    listen_host: IPHost = "0.0.0.0"
    listen_port: Port
    status_host: IPHost = "127.0.0.1"
    status_port: Port
    status_token: str | None = Field(default=None, min_length=16, pattern=r"^[\x21-\x7e]+$")
    peers: list[PeerAddress] = Field(default=[], max_length=MAX_MEMBERS)
    behaviour: Behaviour = Behaviour()

    @model_validator(mode="after")
    def _token_off_loopback(self) -> NodeConfigFile:
        if not _loopback(self.status_host) and self.status_token is None:
            raise ValueError(f"status_host {self.status_host} is not loopback: set status_token (16+ characters) "
                             f"so that only holders of the token can read /status and /metrics")
        return self


class MemberEntry(Strict):
    name: Name
    public_key: Hex32
    address: Address


class ModelSection(Strict):
    kind: str = Field(default="logreg", min_length=1)
    n_features: int = Field(default=30, ge=1, le=MAX_FEATURES)
    n_classes: int = Field(default=2, ge=2, le=MAX_CLASSES)
    hidden: int = Field(default=32, ge=1, le=1_000_000)
    module: str | None = None
    module_sha256: Hex32 | None = None

    @model_validator(mode="after")
    def _module_pinned(self) -> ModelSection:
        if self.kind == "module" and (self.module is None or self.module_sha256 is None):
            raise ValueError("model kind 'module' needs 'module' (PATH.py:FUNC) and 'module_sha256'")
        if self.kind != "module" and (self.module is not None or self.module_sha256 is not None):
            raise ValueError("'module' and 'module_sha256' belong to model kind 'module' only")
        return self


class TrainingSection(Strict):
    epochs: int = Field(default=2, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1, le=1_000_000)
    lr: PositiveFloat = 0.5
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class FeatureColumn(Strict):
    name: str = Field(min_length=1, max_length=256)
    type: Literal["float", "int", "binary"] = "float"
    unit: str = ""
    min: Finite | None = None
    max: Finite | None = None


class LabelColumn(Strict):
    name: str = Field(min_length=1, max_length=256)
    values: list[str] = Field(min_length=2, max_length=MAX_CLASSES)


class TaskSection(Strict):
    """What every site's data file must hold; each site keeps `test_fraction` of its rows for evaluation."""

    features: list[FeatureColumn] = Field(min_length=1, max_length=MAX_FEATURES)
    label: LabelColumn
    missing: Literal["reject", "drop_row", "impute_mean"] = "reject"
    preprocessing: Literal["standardize", "none"] = "standardize"
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _distinct(self) -> TaskSection:
        names = [f.name for f in self.features] + [self.label.name]
        if len(set(names)) != len(names):
            raise ValueError("feature and label column names must be distinct")
        if len(set(self.label.values)) != len(self.label.values):
            raise ValueError("label values must be distinct")
        return self


class ScalingSection(Strict):
    mean: list[Finite] = Field(max_length=MAX_FEATURES)
    std: list[PositiveFloat] = Field(max_length=MAX_FEATURES)
    source: str = ""


class ProtocolSection(Strict):
    min_updates: int | None = Field(default=None, ge=1, le=MAX_MEMBERS)
    consensus_transport: Literal["direct", "gossip"] = "direct"
    phase_deadline_s: PositiveFloat = 30.0
    unmask_grace_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    batch_window_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    checkpoint_interval: int = Field(default=16, ge=1)
    view_timeout_ms: int = Field(default=2000, ge=1)
    request_timeout_factor: int = Field(default=2, ge=1)
    bench_empty_blocks: int = Field(default=0, ge=0)


class SecureAggregationSection(Strict):
    enabled: bool = True
    clip_l2: PositiveFloat = 10.0
    sample_cap: int = Field(default=1000, ge=1)
    degree: int | None = Field(default=None, ge=0)


class ValidationSection(Strict):
    enabled: bool = False
    degree: int = Field(default=1, ge=1)
    sketch_width: int = Field(default=1000, ge=1)
    rule: dict[str, Any] = {}


class DatasetSection(Strict):
    """A simulated consortium's shared public dataset (ml.data); real sites use `task` and their own files."""

    name: str
    csv_path: str | None = None
    label_column: str | None = None
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: int = 0


class SplitSection(Strict):
    kind: Literal["iid", "dirichlet", "column"] = "iid"
    alpha: PositiveFloat = 0.5
    column: str | None = None


class GenesisFile(Strict):
    fednode_genesis: Literal[1]
    consortium: str = Field(default="", max_length=256)
    members: list[MemberEntry] = Field(max_length=MAX_MEMBERS)
    f: int | None = Field(default=None, ge=0)
    rounds: int = Field(default=1, ge=1, le=MAX_ROUNDS)
    seed: int = 1
    model: ModelSection = ModelSection()
    task: TaskSection | None = None
    dataset: DatasetSection | None = None
    split: SplitSection | None = None
    training: TrainingSection = TrainingSection()
    scaling: ScalingSection | None = None
    initial_model_hash: Hex32 | None = None
    protocol: ProtocolSection = ProtocolSection()
    secure_aggregation: SecureAggregationSection = SecureAggregationSection()
    validation: ValidationSection = ValidationSection()

    @model_validator(mode="after")
    def _consistent(self) -> GenesisFile:
        if self.task is not None and self.dataset is not None:
            raise ValueError("genesis holds both 'task' (each site's own data file) and 'dataset' (a simulation's "
                             "shared public dataset); keep one")
        if self.task is not None and self.model.n_features != len(self.task.features):
            raise ValueError(f"model.n_features is {self.model.n_features} but the task lists "
                             f"{len(self.task.features)} feature columns")
        if self.task is not None and self.model.n_classes != len(self.task.label.values):
            raise ValueError(f"model.n_classes is {self.model.n_classes} but the task's label has "
                             f"{len(self.task.label.values)} values")
        if self.scaling is not None and not len(self.scaling.mean) == len(self.scaling.std) == \
                self.model.n_features:
            raise ValueError(f"scaling.mean and scaling.std must each hold model.n_features = "
                             f"{self.model.n_features} values")
        return self


FRIENDLY = {"extra_forbidden": "unknown key (a typo?)", "missing": "required key is missing"}


def error_lines(what: str, exc: ValidationError) -> list[str]:
    """One line per error: `<what>: <key path>: <message>`."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"])
        msg = FRIENDLY.get(err["type"], err["msg"].removeprefix("Value error, "))
        lines.append(f"{what}: {loc}: {msg}" if loc else f"{what}: {msg}")
    return lines
