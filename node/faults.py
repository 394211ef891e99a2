"""Test-only misbehaviour: the faults `fednode cluster` injects to test the consortium against them.

Nothing here runs in production. `fednode start` builds `Faults` only when the node config has a
non-empty `behaviour` (which `fednode cluster --attack/--malicious/--validator-fault/--fault crash...`
writes) and hands it to the daemon as its `node.hooks.FaultHooks`; without it the daemon runs the no-op
hooks. Only `node.cli` imports this module, and this module sees the daemon only through the hooks
(both enforced by `lint-imports`).

Modes implemented (config `behaviour` keys):

- `attack` (+ `attack_params`, `n_malicious`): train a poisoned update instead (`ml.attacks`).
- `validator`: `withhold` or corrupt (`corrupt`, any other value) our statistic shares in validated rounds.
- `crash_after_input_round`: SIGKILL ourselves once our masked input of that round is committed and
  written to every peer, before dealing shares or revealing anything (a hospital losing power).

Where further modes belong (a section of `Faults` each, selected by a `behaviour` key in `__init__`; add
a no-op hook to `FaultHooks` where the daemon offers no point for it yet, see node/hooks.py):

- consensus faults (equivocate, censor, slow-primary, checkpoint-flood, vote-flood): a hook on the
  PBFT actions the daemon executes (`Daemon._execute`) and on the primary's proposal (`Daemon._propose`);
- validator faults (zero-offset, forge-stats, grind-seed, lie-identity, lie-reveal): `outgoing_tx` and
  hooks on the secure round's outputs (`RoundDriver.submit`);
- shell faults (junk-shares, window-overrun, mempool-flood, stale-blocks, evidence-flood, replay-relay,
  bandwidth-flood): hooks on what the transport sends (`Transport`) and what sync serves (`Sync`).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import numpy as np

from ml.attacks import Attack, AttackContext, AttackError, make_attack, malicious_train
from ml.train import TrainResult
from node import contract as rc
from node.config import ConfigError
from node.hooks import FaultContext, FaultHooks, TrainFn

logger = logging.getLogger("fednode")


class Faults(FaultHooks):
    """The misbehaviour a node config's `behaviour` asks for (module doc)."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        attack = behaviour.get("attack")
        try:
            self.attack: Attack | None = make_attack(attack, **behaviour.get("attack_params", {})) if attack else None
        except AttackError as exc:
            raise ConfigError(f"node config: behaviour.attack: {exc}") from None
        self.crash_round = int(behaviour.get("crash_after_input_round", 0))
        self._crash_armed = False
        self._masked_deliveries = 0
        self._ctx: FaultContext | None = None

    @property
    def ctx(self) -> FaultContext:
        assert self._ctx is not None, "a fault hook before bind"
        return self._ctx

    def bind(self, ctx: FaultContext) -> None:
        self._ctx = ctx

    # ------------------------------------------------------------------ poisoning (behaviour.attack)

    def train_fn(self, honest: TrainFn) -> TrainFn:
        return self._malicious_train if self.attack is not None else honest

    def _malicious_train(self, vec: np.ndarray, round_id: int) -> TrainResult:
        """What a poisoning hospital submits instead of its honest update."""
        assert self.attack is not None
        ctx = self.ctx
        local = ctx.learner.local
        attack_ctx = AttackContext(round=round_id, node_index=ctx.index, n_nodes=ctx.n,
                                   rng=np.random.default_rng([ctx.plan.seed, round_id, ctx.index]),
                                   global_params=vec, n_malicious=int(self.behaviour.get("n_malicious", 1)),
                                   n_classes=ctx.plan.model.n_classes)
        return malicious_train(self.attack, ctx.plan.model, vec, local.X_train, local.y_train, ctx.plan.training,
                               round_id * 1_009 + ctx.index, attack_ctx)

    # ------------------------------------------------------------------ validator faults (behaviour.validator)

    def outgoing_tx(self, raw: bytes) -> bytes | None:
        """Withhold or corrupt our statistic shares."""
        mode = self.behaviour.get("validator")
        tx = self.ctx.parse(raw)
        if mode is None or tx.kind != "stats":
            return raw
        if mode == "withhold":
            logger.info("behaviour: withholding statistics for round %d", tx.round)
            return None
        corrupted = bytearray(tx.fields[0])  # type: ignore[arg-type]
        corrupted[0] ^= 0x01
        return rc.make_tx(self.ctx.chain_id, "stats", self.ctx.index, tx.round, [bytes(corrupted)], self.ctx.sign)

    # ------------------------------------------------------------------ crash (behaviour.crash_after_input_round)

    def phase_closed(self, event: rc.PhaseClosed) -> bool:
        if event.phase == "inputs" and event.round == self.crash_round and self.ctx.index in event.members:
            self._crash_armed = True  # die before dealing shares or revealing anything
            self._maybe_crash()
            return True
        return False

    def masked_input_sent(self, round_id: int) -> None:
        self._masked_deliveries = 0

    def frame_delivered(self, kind: str) -> None:
        if kind == "masked":
            self._masked_deliveries += 1
            self._maybe_crash()

    def _maybe_crash(self) -> None:
        """Once our masked input of the crash round is on the ledger and was written to every peer, SIGKILL."""
        if self._crash_armed and self._masked_deliveries >= self.ctx.n - 1:
            logger.warning("behaviour: SIGKILL after sending the masked input of round %d", self.crash_round)
            for handler in logging.getLogger().handlers + logger.handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
