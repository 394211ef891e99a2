"""A reference driver: one secure-aggregation round across N in-process participants.

It plays the parts the daemon and the ledger play in production, in the simplest correct way:
every message is encoded to bytes, decoded by each recipient within the round's limits and fed to
`receive`; each phase's committed set is exactly the set of senders of that phase's message (a
perfect ledger); participants listed in the drop schedule fall silent before a phase and never
come back. Tests use it for dropouts at every phase and Byzantine senders (through `tamper`), the
benchmark uses it to time unmasking, and it shows a daemon author the order of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

import nacl.signing

from smpc.errors import ProtocolViolation, RoundAborted
from smpc.field import RingArray
from smpc.messages import Message, UnmaskShares, decode, encode
from smpc.prg import MaskGenerator, SeededRandomBytes
from smpc.secagg import RoundConfig, SecAggParticipant, SecAggResult
from smpc.signing import Signer, ed25519_signer, ed25519_verifier

_M = TypeVar("_M", bound=Message)
Tamper = Callable[[Message, Signer], Message]
"""Rewrites a Byzantine participant's outgoing message; gets its signer to re-sign the forgery."""


@dataclass(frozen=True, slots=True)
class DropSchedule:
    """Participants that go silent just before each phase (and stay silent), and participants
    whose masked input the ledger leaves out of U3 although they stay online (late, or rejected
    by validation)."""

    before_advertise: frozenset[int] = frozenset()
    before_share: frozenset[int] = frozenset()
    before_mask: frozenset[int] = frozenset()
    before_unmask: frozenset[int] = frozenset()
    left_out: frozenset[int] = frozenset()


@dataclass(slots=True)
class RoundOutcome:
    """What each participant ended with, the committed sets, and the bytes each one published."""

    results: dict[int, SecAggResult] = field(default_factory=dict)
    aborted: dict[int, RoundAborted] = field(default_factory=dict)
    committed: list[frozenset[int]] = field(default_factory=list)
    violations: dict[int, list[ProtocolViolation]] = field(default_factory=dict)
    published_bytes: dict[int, int] = field(default_factory=dict)
    wire: list[bytes] = field(default_factory=list)
    machines: dict[int, SecAggParticipant] = field(default_factory=dict)
    """Every participant's machine at the end: what `excise_round` continues the round with."""


@dataclass(slots=True)
class ExciseOutcome:
    """What each remaining participant ended an excision with (`excise_round`), and the excise reveals."""

    results: dict[int, SecAggResult] = field(default_factory=dict)
    aborted: dict[int, RoundAborted] = field(default_factory=dict)
    reveals: dict[int, UnmaskShares] = field(default_factory=dict)


def build_participants(config: RoundConfig, seed: int) -> tuple[dict[int, SecAggParticipant], dict[int, Signer]]:
    """Every participant's machine and signer, deterministic in `seed` (so a run can be replayed)."""
    keys = {i: nacl.signing.SigningKey(SeededRandomBytes.from_int(seed * 1000 + i)(32)) for i in config.participants}
    verifier = ed25519_verifier({i: bytes(key.verify_key) for i, key in keys.items()})
    generator = MaskGenerator(config.vector_length)
    signers = {i: ed25519_signer(key) for i, key in keys.items()}
    machines = {
        i: SecAggParticipant(
            config, i, signers[i], verifier, SeededRandomBytes.from_int(seed * 1000 + 500 + i), generator
        )
        for i in config.participants
    }
    return machines, signers


class _Round:
    """Mutable bookkeeping for one simulated round."""

    def __init__(self, config: RoundConfig, seed: int, tamper: Mapping[int, Tamper]) -> None:
        self.config = config
        self.tamper = tamper
        self.outcome = RoundOutcome()
        self.machines, self.signers = build_participants(config, seed)
        self.alive = set(config.participants)

    def broadcast(self, sender: int, message: _M | None) -> _M | None:
        if message is None:
            return None
        if sender in self.tamper:
            message = cast(_M, self.tamper[sender](message, self.signers[sender]))
        data = encode(message)
        self.outcome.wire.append(data)
        self.outcome.published_bytes[sender] = self.outcome.published_bytes.get(sender, 0) + len(data)
        for receiver in sorted(self.alive - {sender}):
            try:
                self.machines[receiver].receive(decode(data, self.config.limits))
            except ProtocolViolation as violation:
                self.outcome.violations.setdefault(receiver, []).append(violation)
        return message

    def step(self, call: Callable[[SecAggParticipant], Message | None]) -> set[int]:
        """Run `call` on every live participant, broadcast what it returns; returns the senders."""
        senders = set()
        for i in sorted(self.alive):
            try:
                sent = self.broadcast(i, call(self.machines[i]))
            except RoundAborted as aborted:
                self.outcome.aborted[i] = aborted
                continue
            if sent is not None:
                senders.add(i)
        self.alive -= set(self.outcome.aborted)
        return senders

    def commit(self, members: set[int]) -> frozenset[int]:
        committed = frozenset(members)
        self.outcome.committed.append(committed)
        return committed


def run_round(
    config: RoundConfig,
    updates: Mapping[int, RingArray],
    drops: DropSchedule,
    seed: int,
    tamper: Mapping[int, Tamper] | None = None,
    disputed: tuple[tuple[int, int], ...] = (),
) -> RoundOutcome:
    """Run one round to completion (or abort) and return every participant's outcome; the `disputed` pairs
    exchange no pairwise mask (`SecAggParticipant.exclude_pairs`, as the shell sets them when a round opens)."""
    sim = _Round(config, seed, tamper or {})
    for machine in sim.machines.values():
        machine.exclude_pairs(disputed)
    sim.alive -= drops.before_advertise
    keys = sim.commit(sim.step(lambda m: m.start()))
    sim.alive -= drops.before_share
    shares = sim.commit(sim.step(lambda m: m.on_keys_committed(keys)))
    sim.alive -= drops.before_mask
    sim.step(lambda m: m.on_shares_committed(shares))
    masked = {
        i: sim.broadcast(i, sim.machines[i].mask(updates[i])) for i in sorted(sim.alive) if sim.machines[i].can_mask
    }
    inputs = sim.commit(set(masked) - drops.left_out)
    sim.alive -= drops.before_unmask
    digests = {i: message.digest() for i, message in masked.items() if message is not None and i in inputs}
    sim.step(lambda m: m.on_inputs_committed(digests))
    for i in sorted(sim.alive):
        machine = sim.machines[i]
        try:
            result = machine.try_finish() or machine.try_finish(deadline_passed=True)
        except RoundAborted as aborted:
            sim.outcome.aborted[i] = aborted
            continue
        assert result is not None and result.survivors == inputs
        sim.outcome.results[i] = result
    for i, machine in sim.machines.items():
        found = machine.drain_violations()
        if found:
            sim.outcome.violations.setdefault(i, []).extend(found)
    sim.outcome.machines = sim.machines
    return sim.outcome


def excise_round(outcome: RoundOutcome, config: RoundConfig, excised: frozenset[int],
                 withholding: frozenset[int] = frozenset()) -> ExciseOutcome:
    """After `run_round` unmasked U3, a verdict convicts `excised` (members of U3): every participant that unmasked
    but the excised and the `withholding` reveals its shares of their mask keys (`excise_reveal`), and each one
    that unmasked but the excised sums U3 minus them (`excise`) from the same reveals, as the ledger commits them."""
    unmasked = {m.sender: m for m in (decode(data, config.limits) for data in outcome.wire)
                if isinstance(m, UnmaskShares)}
    done = ExciseOutcome()
    remaining = sorted(set(outcome.results) - excised)
    for i in remaining:
        if i not in withholding:
            reveal = outcome.machines[i].excise_reveal(excised)
            if reveal is not None:
                done.reveals[i] = reveal
    for i in remaining:
        try:
            done.results[i] = outcome.machines[i].excise(excised, unmasked, done.reveals)
        except RoundAborted as aborted:
            done.aborted[i] = aborted
    return done
