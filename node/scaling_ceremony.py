"""The scaling ceremony: the sites' feature statistics summed by secure aggregation, relayed like genesis.

Runs among the members of a draft genesis (after `genesis add-member`, before anyone confirms), with no shared
machine: each site runs `fednode genesis scaling` once per step and sends the file it writes to the
coordinator, who gathers every site's files in one directory (the relay) and sends it back to all. Four steps,
one Bonawitz round (`smpc.secagg`, round id 0) over every member: keys, key shares, masked statistics vector
(`node.scaling`), reveals; a fifth run decodes the sum into the `scaling` section, which every site computes
for itself and writes to `HOME/scaling.json`. The coordinator puts it into the draft (`genesis set-scaling`),
and `genesis check --confirm` refuses a genesis whose scaling differs from the site's own result.

Every member must take part: each phase's set is the whole membership, so a coordinator cannot show sites
different sets (the consistency round of the original protocol is not needed) and every holder reveals only
shares of self-mask seeds, never of a mask key. A missing site stalls the ceremony; start it over.

The round's secrets are derived from a random seed kept in `HOME/scaling.secret` (0600) so that each step can
replay the machine from the start; the seed is deleted once the result is written. Messages are signed with
the site keys and bound to the draft genesis (its hash without `scaling`), so a file from another draft, or
forged by the relay, is refused naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import ConfigError, genesis_from_dict, genesis_hash, load_document
from node.genesis import CONFIG_FILE, home_identity
from node.scaling import STATISTICS_ROUND, scaling_from_sum, statistics_vector, vector_length

STEPS = ("keys", "shares", "masked", "reveal")
SECRET_FILE = "scaling.secret"
RESULT_FILE = "scaling.json"


@dataclass(frozen=True)
class StepOutcome:
    """What a run did: the files it wrote (send them to the coordinator), the sites whose file of the current
    step the relay lacks, and the scaling once the sum is decoded."""

    wrote: tuple[Path, ...]
    waiting_for: tuple[str, ...]
    scaling: dict[str, Any] | None


def ceremony_id(raw: dict[str, Any]) -> bytes:
    """The draft genesis the ceremony is for: its hash without the scaling it computes."""
    return genesis_hash({k: v for k, v in raw.items() if k != "scaling"})


def ceremony_hex(ceremony: bytes) -> str:
    return ceremony.hex()[:16]


def apply_scaling(genesis_path: Path, results: list[Path]) -> dict[str, Any]:
    """Write the ceremony's scaling into the draft genesis: every given site result must be the same, and for
    this draft."""
    raw = load_document(genesis_path, "genesis")
    scalings = [load_document(path, "scaling result") for path in results]
    if any(s != scalings[0] for s in scalings[1:]):
        raise ConfigError(f"the sites' results differ ({', '.join(map(str, results))}): do not use them")
    if not str(scalings[0].get("source", "")).endswith(f"ceremony {ceremony_hex(ceremony_id(raw))}"):
        raise ConfigError(f"{results[0]} is the result of a ceremony for another draft than {genesis_path}")
    raw["scaling"] = scalings[0]
    genesis_from_dict(raw, f"genesis {genesis_path}")
    genesis_path.write_text(json.dumps(raw, indent=2) + "\n")
    return raw


def check_own_result(home: Path, raw: dict[str, Any]) -> None:
    """At confirmation: a site that took part in the ceremony accepts only the scaling it computed itself."""
    path = home / RESULT_FILE
    if path.exists() and raw.get("scaling") != load_document(path, "scaling result"):
        raise ConfigError(f"genesis scaling is not the result of this site's scaling ceremony ({path}): "
                          f"do not start; ask the coordinator")


def run_step(home: Path, genesis_path: Path, relay: Path, outbox: Path) -> StepOutcome:
    """Replay this site's part from the start over the messages in `relay` and `outbox`; write the next one."""
    if (home / RESULT_FILE).exists():
        return StepOutcome((), (), load_document(home / RESULT_FILE, "scaling result"))
    raw = load_document(genesis_path, "genesis")
    genesis = genesis_from_dict(raw, f"genesis {genesis_path}")
    task = raw.get("task")
    if not task:
        raise ConfigError(f"genesis {genesis_path}: no task section; the scaling ceremony needs the data schema")
    identity = home_identity(home)
    me = genesis.index_of(identity.public_key)
    vector = statistics_vector(_site_statistics(home, task))
    replay = _Replay(_machine(home, genesis, raw, me, identity.sign), me, [m.name for m in genesis.members], relay,
                     outbox)
    return replay.run(vector, home, len(task["features"]))


def _machine(home: Path, genesis: Any, raw: dict[str, Any], me: int, sign: Any) -> Any:
    """This site's participant of the ceremony's round, its randomness from the ceremony secret."""
    from smpc.prg import MaskGenerator, SeededRandomBytes
    from smpc.secagg import RoundConfig, SecAggParticipant

    n = genesis.n
    degree = int(raw.get("secure_aggregation", {}).get("degree", max(0, n - genesis.f - 1)))
    length = vector_length(len(raw["task"]["features"]))
    config = RoundConfig(ceremony_id(raw), STATISTICS_ROUND, tuple(range(1, n + 1)), degree, length)
    return SecAggParticipant(config, me + 1, sign, lambda i, data, sig: 1 <= i <= n and genesis.verify(i - 1, data, sig),
                             SeededRandomBytes(_secret(home)), MaskGenerator(length))


def _secret(home: Path) -> bytes:
    path = home / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    secret = path.read_bytes()
    if len(secret) != 32:
        raise ConfigError(f"{path}: not a ceremony secret (32 bytes); delete it and start the ceremony over")
    return secret


def _site_statistics(home: Path, task: dict[str, Any]) -> list[tuple[int, int, int]]:
    from ml.sitedata import site_statistics

    config = load_document(home / CONFIG_FILE, "node config")
    data = config.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise ConfigError(f"node config {home / CONFIG_FILE}: data.path: this site's data file is needed")
    path = Path(data["path"])
    return site_statistics(task, path if path.is_absolute() else home / path, fmt=data.get("format"))


class _Replay:
    """One run: the machine fed, step by step, with every member's message of the step, as far as they go."""

    def __init__(self, machine: Any, me: int, names: list[str], relay: Path, outbox: Path) -> None:
        self.machine, self.me, self.names, self.relay, self.outbox = machine, me, names, relay, outbox
        self.n = len(names)
        self.everyone = frozenset(range(1, self.n + 1))
        self.masked: dict[int, Any] = {}

    def run(self, vector: Any, home: Path, n_features: int) -> StepOutcome:
        m, wrote = self.machine, []
        produce = {"keys": m.start, "shares": lambda: m.on_keys_committed(self.everyone),
                   "masked": lambda: (m.on_shares_committed(self.everyone), m.mask(vector))[1],
                   "reveal": lambda: m.on_inputs_committed({i + 1: msg.digest() for i, msg in self.masked.items()})}
        for step in STEPS:
            if (path := self._emit(step, produce[step]())) is not None:
                wrote.append(path)
            messages, missing = self._gather(step)
            if missing:
                return StepOutcome(tuple(wrote), missing, None)
            for i, message in messages.items():
                if i != self.me:
                    self._receive(step, i, message)
            if step == "masked":
                self.masked = messages
        result = m.try_finish() or m.try_finish(deadline_passed=True)
        if result is None:
            raise ConfigError("the reveals in the relay do not suffice to unmask the sum; start the ceremony over")
        scaling = scaling_from_sum(result.total, n_features, self.n)
        scaling["source"] += f", ceremony {ceremony_hex(m.config.chain_id)}"
        (home / RESULT_FILE).write_text(json.dumps(scaling, indent=2) + "\n")
        (home / SECRET_FILE).unlink()
        return StepOutcome(tuple(wrote), (), scaling)

    def _emit(self, step: str, message: Any) -> Path | None:
        """Write our message of `step` to the outbox unless it is there already (then it must be identical)."""
        from smpc import messages as sam

        data = sam.encode(message)
        name = f"{step}-{self.me}.bin"
        for where in (self.outbox, self.relay):
            if (where / name).exists():
                if (where / name).read_bytes() != data:
                    raise ConfigError(f"{where / name} is not what this site computes now (its data file or "
                                      f"{SECRET_FILE} changed since that step); start the ceremony over")
                return None
        self.outbox.mkdir(parents=True, exist_ok=True)
        (self.outbox / name).write_bytes(data)
        return self.outbox / name

    def _gather(self, step: str) -> tuple[dict[int, Any], tuple[str, ...]]:
        from smpc import messages as sam
        from smpc.errors import SmpcError

        found, missing = {}, []
        for i in range(self.n):
            paths = [where / f"{step}-{i}.bin" for where in (self.relay, self.outbox)
                     if (where / f"{step}-{i}.bin").exists()]
            if not paths:
                missing.append(self.names[i])
                continue
            try:
                found[i] = sam.decode(paths[0].read_bytes(), self.machine.config.limits)
            except (SmpcError, ValueError) as exc:
                raise ConfigError(f"{paths[0]}: not a {step} message of this ceremony: {exc}") from None
        return found, tuple(missing)

    def _receive(self, step: str, i: int, message: Any) -> None:
        from smpc.errors import SmpcError

        if message.sender != i + 1:
            raise ConfigError(f"{step}-{i}.bin from {self.names[i]} is refused: it is member {message.sender - 1}'s")
        try:
            self.machine.receive(message)
        except SmpcError as exc:
            raise ConfigError(f"{step}-{i}.bin from {self.names[i]} is refused: {exc}") from None
