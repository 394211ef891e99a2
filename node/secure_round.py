"""One node's side of one secure round: the bridge between the round contract and the secagg core.

Pure, like the cores it joins: it takes contract events (what the ledger committed), peer messages and
this node's local update, and returns `Output`s for the daemon to carry out: transactions to submit
(they reach the ledger through the primary), messages to gossip, and the masked input to send to every
peer directly (it is model-sized). The daemon owns all I/O and time.

The update a node contributes is `weighted_vector(update, n_samples)`: its clipped update times its
sample weight, followed by the weight itself, so that the sum of the vectors yields both the weighted
sum of updates and the total weight, and the new model `global + sum[:-1] / sum[-1]` is FedAvg without
any node revealing its sample count. Plain rounds use the same vectors, summed in floating point, so a
secure round differs from a plain one only by quantization.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node import contract as rc
from smpc import messages as sam
from smpc.errors import ProtocolViolation
from smpc.field import RandomBytes
from smpc.quantize import QuantParams, clip_l2, dequantize_sum, quantize
from smpc.secagg import SecAggParticipant, SecAggResult


@dataclass(frozen=True, slots=True)
class SubmitTx:
    raw: bytes


@dataclass(frozen=True, slots=True)
class Gossip:
    """A secagg message every node should receive but the ledger need not hold (unmask reveals)."""

    message: bytes


@dataclass(frozen=True, slots=True)
class SendMasked:
    """This node's masked input, to be sent to every peer over direct streams."""

    message: bytes


Output = SubmitTx | Gossip | SendMasked


@dataclass(frozen=True, slots=True)
class Weighting:
    """How a local update becomes a summable vector: L2 clip bound and the sample count of weight 1."""

    clip_l2: float
    sample_cap: int

    def vector(self, update: npt.NDArray[np.floating], n_samples: int) -> npt.NDArray[np.float64]:
        """[w * clip(update), w] with w = min(n_samples, cap) / cap in (0, 1]."""
        weight = min(n_samples, self.sample_cap) / self.sample_cap
        return np.append(clip_l2(np.asarray(update, dtype=np.float64), self.clip_l2) * weight, weight)

    @property
    def total_bound(self) -> float:
        """L2 bound of `vector(...)`: the quantizer's clip bound, so it never clips again."""
        return math.sqrt(self.clip_l2**2 + 1.0)


def apply_sum(global_vec: npt.NDArray[np.float32], total: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """New global model from the sum of weighted vectors; float64 arithmetic, deterministic."""
    assert total.shape == (global_vec.size + 1,), (total.shape, global_vec.shape)
    weight = float(total[-1])
    if not weight > 0:
        raise ValueError("aggregate weight is not positive")
    return (global_vec.astype(np.float64) + total[:-1] / weight).astype(np.float32)


def quant_params(weighting: Weighting, n_members: int) -> QuantParams:
    return QuantParams.for_participants(weighting.total_bound, n_members)


class SecureRound:
    """Drives one SecAggParticipant from committed events; see the module docstring."""

    def __init__(self, params: rc.ContractParams, opened: rc.RoundOpened, me: int, sign: Callable[[bytes], bytes],
                 verify: Callable[[int, bytes, bytes], bool], rand: RandomBytes, quant: QuantParams) -> None:
        self.params, self.round, self.me = params, opened.round, me
        self.config = params.round_config(opened.round, opened.participants)
        self._sign = sign
        self._rand = rand
        self._quant = quant
        self.machine = SecAggParticipant(self.config, me + 1, sign, lambda i, d, s: verify(i - 1, d, s), rand)
        self.violations: list[ProtocolViolation] = []
        self._quantized: npt.NDArray[np.uint32] | None = None
        self.result: SecAggResult | None = None
        self.phase = "keys"
        self.revealers: set[int] = set()

    def _tx(self, kind: str, fields: list[object]) -> SubmitTx:
        return SubmitTx(rc.make_tx(self.params.chain_id, kind, self.me, self.round, fields, self._sign))

    def start(self) -> list[Output]:
        return [self._tx("sa", [sam.encode(self.machine.start())])]

    def set_update(self, vector: npt.NDArray[np.float64]) -> list[Output]:
        """The local weighted vector is ready (training finished); mask it as soon as the phase allows."""
        self._quantized = quantize(vector, self._quant, self._rand)
        return self._maybe_mask()

    def _maybe_mask(self) -> list[Output]:
        if self._quantized is None or not self.machine.can_mask:
            return []
        masked = self.machine.mask(self._quantized)
        self._quantized = None
        return [SendMasked(sam.encode(masked)), self._tx("input", [masked.digest()])]

    def decode(self, data: bytes) -> sam.Message:
        """Parse a peer's secagg message with this round's bounds; raises MalformedMessage."""
        return sam.decode(data, self.config.limits)

    def on_message(self, message: sam.Message) -> None:
        """A peer's message (from the ledger, gossip or a direct stream); violations become evidence."""
        try:
            self.machine.receive(message)
        except ProtocolViolation as violation:
            self.violations.append(violation)
            return
        if isinstance(message, sam.UnmaskShares):
            self.revealers.add(message.sender)

    @property
    def enough_reveals(self) -> bool:
        """Whether reveals from t+1 holders arrived, so unmasking after the grace period can succeed."""
        return len(self.revealers) >= self.config.degree + 1

    def on_committed(self, event: rc.SecAggCommitted) -> None:
        self.on_message(self.decode(event.message))

    def on_phase_closed(self, event: rc.PhaseClosed) -> list[Output]:
        """Advance the machine with the set the ledger fixed. MissingMessages propagates (fetch, retry)."""
        members = frozenset(i + 1 for i in event.members)
        out: list[Output] = []
        if event.phase == "keys":
            bundle = self.machine.on_keys_committed(members)
            if bundle is not None:
                out.append(self._tx("sa", [sam.encode(bundle)]))
        elif event.phase == "shares":
            self.machine.on_shares_committed(members)
            out += self._maybe_mask()
        elif event.phase == "inputs":
            reveal = self.machine.on_inputs_committed({a + 1: d for a, d in event.digests})
            if reveal is not None:
                self.revealers.add(reveal.sender)
                out.append(Gossip(sam.encode(reveal)))
        self.phase = rc.PHASES[(True, event.phase)][1]
        self.violations += self.machine.drain_violations()
        return out

    def try_sum(self, deadline_passed: bool) -> npt.NDArray[np.float64] | None:
        """The dequantized sum of the survivors' vectors once it can be computed (cached).

        Raises MissingMessages (a committed masked input we lack: fetch it) or RoundAborted.
        """
        if self.result is None:
            self.result = self.machine.try_finish(deadline_passed)
            self.violations += self.machine.drain_violations()
        if self.result is None:
            return None
        return dequantize_sum(self.result.total, self._quant)
