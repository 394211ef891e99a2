"""The fault-injection plug-in interface: the points where a test-only misbehaviour may act.

Production daemons run `FaultHooks` itself, whose every hook is a no-op (the honest behaviour). The
chaos and attack tests plug in `node.faults.Faults` (built by `fednode start` from a node config's
`behaviour`, which `fednode cluster` writes). The daemon's components call these hooks and nothing in
`node.faults`; `lint-imports` enforces it.

Adding a fault mode: implement it in `node/faults.py`. If it needs a point the daemon does not offer
yet, add a no-op hook here, call it from the one component where the behaviour happens, and document
the hook below. Hooks return what the honest code would otherwise use, so the call site stays one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from consensus.replica import Action
from node import contract as rc

if TYPE_CHECKING:
    from ml.train import TrainResult
    from node.learning import Learner, LearningPlan
    from node.secure_round import Output
    from smpc.blame import Disclosure, SketchRow

TrainFn = Callable[[np.ndarray, int], "TrainResult"]

VALIDATOR_FAULTS = ("withhold", "corrupt", "forge-stats", "zero-offset", "grind-seed", "lie-identity", "lie-weight",
                    "lie-reveal", "withhold-shares", "junk-answer", "frivolous-complaint", "bad-deal", "lie-disclosure")
"""The `behaviour.validator` modes `node.faults.Faults` implements (`fednode cluster --validator-fault`)."""


@dataclass(frozen=True)
class FaultContext:
    """What a fault may know about the node it runs in (given once, by `FaultHooks.bind`)."""

    index: int
    n: int
    chain_id: bytes
    sign: Callable[[bytes], bytes]
    parse: Callable[[bytes], rc.Tx]
    plan: LearningPlan
    learner: Learner
    checkpoint_interval: int = 16
    view_timeout_ms: int = 2000
    clip_bound: Callable[[int], float | None] = lambda _round_id: None
    """The ledger's per-round bound B of a round (public: every member reads it from the committed blocks)."""


RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
SHELL_FAULT_NAMES = ("junk-shares", "window-overrun", "mempool-flood", "stale-blocks", "evidence-flood",
                     "replay-relay", "bandwidth-flood")
"""The hostile-member behaviours `FaultHooks.shell_attack` may play (`fednode cluster --shell-fault`)."""


@dataclass(frozen=True)
class ShellAccess:
    """What a hostile member's shell faults may do with this node's connections (given to `shell_attack`).

    Raw access, below the envelope checks a peer would apply: these are the member's own means (its key,
    its libp2p host), used the way the review's patched daemon used them.
    """

    peer_ids: list[str]
    seal: Callable[[str, int, bytes, int], bytes]
    """(type, height, payload, recipient) -> an envelope signed by this member."""
    send: Callable[[str, bytes, str], Awaitable[bool]]
    """(peer id, data, lane) -> one direct frame, as `Network.send`."""
    request: Callable[[str, bytes], Awaitable[bytes | None]]
    """(peer id, data) -> one raw request, as `Network.request`."""
    open_stream: Callable[[str, str], Awaitable[object]]
    """(peer id, protocol) -> a raw libp2p stream (`Network.open_stream`)."""
    request_protocol: str
    serve_requests: Callable[[RequestHandler], None]
    """Replace how this node answers requests (the honest handler is `honest_requests`)."""
    honest_requests: RequestHandler
    round: Callable[[], int]
    block: Callable[[int], tuple[bytes, bytes] | None]
    """Height -> (encoded block, encoded certificate) from our ledger."""
    sleep: Callable[[float], Awaitable[None]]
    spawn: Callable[..., None]
    """(async fn, *args) -> run it as a task of the daemon's."""


class FaultHooks:
    """The honest node: every hook leaves the behaviour unchanged. Faults override the hooks they need."""

    def bind(self, ctx: FaultContext) -> None:
        """Called once by the daemon, before any other hook."""

    def train_fn(self, honest: TrainFn) -> TrainFn:
        """Round driver, before training: the function that produces this node's update."""
        return honest

    def outgoing_tx(self, raw: bytes) -> bytes | None:
        """Round driver, before submitting our own transaction: what to submit instead (None: nothing)."""
        return raw

    def secure_output(self, out: Output) -> Output:
        """Round driver, before carrying out a secure round's output (a masked input, sketch shares, a
        reveal, ...; transactions then also pass `outgoing_tx`): what to carry out instead."""
        return out

    def blame_disclosure(self, member: int, disclosure: Disclosure, row: SketchRow | None) -> Disclosure:
        """Round driver, handed to `SecureRound.on_blame_started`: our blame disclosure (`member` our participant id,
        `row` the failed sketch row b*, None if only the weight failed) as we sign and submit it instead."""
        return disclosure

    def phase_closed(self, event: rc.PhaseClosed) -> bool:
        """Round driver, on a committed phase close: True stops this node's part in the round there."""
        return False

    def masked_input_sent(self, round_id: int) -> None:
        """Round driver: our masked input for `round_id` was queued for every peer."""

    def frame_delivered(self, kind: str) -> None:
        """Transport: a frame of `kind` was written to a peer (or given up on)."""

    async def shell_attack(self, shell: ShellAccess) -> None:
        """Daemon, once the network is up, as a task of its own: a hostile member's misbehaviour towards
        its peers' shells (flooding, lying, relaying); returns at once for an honest node."""

    def pbft_actions(self, actions: list[Action], view: int, height: int) -> list[Action]:
        """Daemon, before executing the replica's actions (view and committed height given): what to
        execute instead."""
        return actions

    def propose_now(self, height: int) -> bool:
        """Daemon, when the replica may propose `height`: whether to build the block now."""
        return True

    def proposal(self, txs: list[bytes]) -> list[bytes]:
        """Daemon, before the primary proposes `txs`: what to propose instead."""
        return txs


NO_FAULTS = FaultHooks()
"""The hooks of every production daemon."""
