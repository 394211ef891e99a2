"""Test-only misbehaviour: the faults `fednode cluster` injects to test the consortium against them.

Nothing here runs in production. `fednode start` builds `Faults` only when the node config has a
non-empty `behaviour` (which `fednode cluster --attack/--malicious/--validator-fault/--fault crash...`
writes) and hands it to the daemon as its `node.hooks.FaultHooks`; without it the daemon runs the no-op
hooks. Only `node.cli_node` (`fednode start`) imports this module, and this module sees the daemon only
through the hooks (both enforced by `lint-imports`).

Modes implemented (config `behaviour` keys):

- `attack` (+ `attack_params`, `n_malicious`): train a poisoned update instead (`ml.attacks`).
- `validator` (validated rounds; `fednode cluster --validator-fault`, docs/validation.md G2-G6):
  `withhold` our statistic shares; `corrupt` them (one bit); `forge-stats`: add 2^40 to every statistic
  share we publish; `zero-offset`: send each holder PRZS contributions other than those we committed to
  (the nearest thing to the dealt zero sharing with an offset, which no longer exists); `grind-seed`:
  withhold our sketch-seed reveal (all a member can still do to the seed once the inputs are fixed);
  `lie-identity`: mask our update plus 2^20 on every coordinate while sketching the update itself (the
  masked input contradicts the sketch); `lie-weight`: mask our update with the weight coordinate (the last)
  plus 2^20 while committing our true weight in `input` (red team B13; with or without validation, which does not
  sketch the weight: only the weight check fails); `lie-reveal`: submit a reveal tx of junk in place of our unmasking shares (the contract refuses it);
  `withhold-shares`: commit `dealt` but send every holder junk instead of its sketch shares, and never
  answer the complaints that follow (red team v6); `junk-answer`: the same junk to every holder, with the
  hash of a junk bundle committed in `dealt` and that bundle as its answer to every complaint, so that each
  holder must prove it bad on the ledger (`disclose`); `frivolous-complaint`: in place of our statistics, complain
  about the next member, which served us well, and never publish (red team g8 f3, without the late publication:
  what the abort's timing after the answer bounds); `bad-deal`: deal the secure-aggregation shares of our
  secrets to the two lowest holders off our polynomial, committing to exactly what we send, so that every
  holder's check passes (red team rt2-1/rt2-2; it patches `smpc.shamir.share_secret` in this process only);
  `lie-disclosure`: mask as `lie-identity` (so the identity fails and a blame phase opens), then, in our blame
  disclosure, shift our sketch scalar with one partner by what the masked input's lie added to row b*, so that we pass
  our own check and dispute that partner instead of being convicted (`blame_disclosure`). The partner is the lowest
  we still share a mask with: a disputed pair masks nothing afterwards and is in no later disclosure, so each
  retried round disputes a new partner, and the ledger convicts us at the (f + 1)-th (docs/validation.md, "Blame
  after a failed identity", step 5).
- `crash_after_input_round`: SIGKILL ourselves once our masked input of that round is committed and
  written to every peer, before dealing shares or revealing anything (a hospital losing power).
- `shell_faults`: a hostile member against its peers' shells (issue 17; docs/chaos.md), through the raw
  means `FaultHooks.shell_attack` is given (`node.hooks.ShellAccess`): `junk-shares`, `window-overrun`,
  `mempool-flood`, `stale-blocks`, `evidence-flood`, `replay-relay`, `bandwidth-flood` (any of them, or
  `all`, at once). Each runs at a fixed pace, enough to have hurt the shell before its bounds, modest
  enough that the attacker's own CPU does not starve the honest nodes on a shared test machine.
- `consensus_fault`: one of `node.consensus_faults.MODES` (equivocate, censor, slow-primary,
  checkpoint-flood, vote-flood), applied to the replica's actions and the primary's proposals.

A further mode is a section of `Faults`, selected by a `behaviour` key in `__init__`; add a no-op hook to
`FaultHooks` where the daemon offers no point for it yet (see node/hooks.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from consensus import codec
from consensus import messages as pbft
from consensus.replica import Action
from ml.attacks import Attack, AttackContext, AttackError, make_attack, malicious_train
from ml.train import TrainResult
from node import contract as rc
from node.config import ConfigError
from node.consensus_faults import MODES, ConsensusFault
from node.hooks import SHELL_FAULT_NAMES, FaultContext, FaultHooks, ShellAccess, TrainFn
from node.secure_round import Output, SendMasked, SendShares
from smpc import field, shamir
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.blame import Disclosure, PairScalars, SketchRow
from smpc.signing import signing_payload

logger = logging.getLogger("fednode")

JUNK_BUNDLE = b"\x00" * 32 + b"junk answer"
"""What a `junk-answer` dealer commits to (by hash) and answers with: a sealed bundle that opens to nothing."""
LIE_IDENTITY_SHIFT = 1 << 20
"""Added to every coordinate of a lying member's masked update: about 0.06 at N = 7's scale of 2^24."""
LIE_WEIGHT_SHIFT = 1 << 20
"""Added to the weight coordinate alone of a `lie-weight` member's masked input (its committed weight stays true)."""
EVIDENCE_HEIGHTS = 8
"""The checkpoint heights the evidence flood cycles through (the first 8 checkpoints: within a short run's window)."""


OVERRUN_BYTES = 9 << 20
"""What the window-overrun member writes in the first frame of a new stream (then it redials): 1 MiB past the
window a stream starts with (`node.libp2p_compat.YAMUX_INITIAL_WINDOW_BYTES`), within the 16 MiB frame the
library reads before our window check sees it."""
YAMUX_SYN_DATA_HEADER = struct.Struct("!BBHII")
"""A yamux frame header (version 0, type 0 = DATA, flags 1 = SYN, stream id, length), from the yamux spec."""
FLOOD_PAYLOAD_BYTES = (1 << 20) - 1024
"""A 1 MiB envelope, within the smallest frame bound a daemon uses."""


BAD_DEAL_HOLDERS = 2
"""How many holders (the lowest ids) a `bad-deal` dealer gives a share off its polynomial."""


def _off_polynomial(honest: Callable[..., dict[int, np.ndarray]]) -> Callable[..., dict[int, np.ndarray]]:
    """A Shamir dealing that is honest but for the shares of the lowest `BAD_DEAL_HOLDERS` holders, each one off."""
    def share(secret: bytes, degree: int, ids: Sequence[int], rand: field.RandomBytes) -> dict[int, np.ndarray]:
        shares = honest(secret, degree, ids, rand)
        for holder in sorted(ids)[:BAD_DEAL_HOLDERS]:
            shares[holder] = field.add(shares[holder], np.ones_like(shares[holder]))
        logger.info("behaviour: dealing shares off our polynomial to holders %s", sorted(ids)[:BAD_DEAL_HOLDERS])
        return shares
    return share


def pair_lie(member: int, partner: int, pairs: Mapping[int, PairScalars], row: SketchRow) -> dict[int, PairScalars]:
    """`member`'s pair scalars with its sketch scalar with `partner` shifted by R(LIE_IDENTITY_SHIFT on every update
    coordinate), signed as that pair's mask enters its own check (`smpc.blame.own_check_passes`): what a
    `lie-identity` member discloses to pass its own check. Keys as in `pairs` (ids or indices: only their order counts)."""
    shift = LIE_IDENTITY_SHIFT * (row.plus.size - row.minus.size) * (1 if partner > member else -1)
    true = pairs[partner]
    return {**pairs, partner: PairScalars(true.weight, (true.sketch + shift) % field.RING_MODULUS)}


def lying_pairs(member: int, pairs: Mapping[int, PairScalars], row: SketchRow) -> tuple[int, dict[int, PairScalars]]:
    """`pair_lie` about `member`'s lowest partner (participant ids): the partner, and the lying scalars."""
    partner = min(pairs)
    return partner, pair_lie(member, partner, pairs, row)


class Faults(FaultHooks):
    """The misbehaviour a node config's `behaviour` asks for (module doc)."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        attack = behaviour.get("attack")
        try:
            self.attack: Attack | None = make_attack(attack, **behaviour.get("attack_params", {})) if attack else None
        except AttackError as exc:
            raise ConfigError(f"node config: behaviour.attack: {exc}") from None
        shell_faults = behaviour.get("shell_faults", [])
        unknown = set(shell_faults) - {*SHELL_FAULT_NAMES, "all"}
        if unknown:
            raise ConfigError(f"node config: behaviour.shell_faults: {sorted(unknown)} not among "
                              f"{', '.join(SHELL_FAULT_NAMES)}, all")
        self.shell_faults = SHELL_FAULT_NAMES if "all" in shell_faults else tuple(shell_faults)
        self.crash_round = int(behaviour.get("crash_after_input_round", 0))
        self._crash_armed = False
        self._masked_deliveries = 0
        self._forged_digests: dict[int, bytes] = {}
        """Round -> digest of the masked input we forged (lie-identity, lie-weight), which our `input` tx must commit."""
        self._ctx: FaultContext | None = None
        self.consensus_mode = behaviour.get("consensus_fault")
        if self.consensus_mode is not None and self.consensus_mode not in MODES:
            raise ConfigError(f"node config: behaviour.consensus_fault: unknown mode {self.consensus_mode!r}")
        self.consensus: ConsensusFault | None = None

    @property
    def ctx(self) -> FaultContext:
        assert self._ctx is not None, "a fault hook before bind"
        return self._ctx

    def bind(self, ctx: FaultContext) -> None:
        self._ctx = ctx
        if self.behaviour.get("validator") == "bad-deal":
            shamir.share_secret = _off_polynomial(shamir.share_secret)
        if self.consensus_mode is not None:
            self.consensus = ConsensusFault(self.consensus_mode, ctx.index, ctx.n, ctx.chain_id, ctx.sign,
                                            ctx.checkpoint_interval, ctx.view_timeout_ms)

    # ------------------------------------------------------------------ consensus (behaviour.consensus_fault)

    def pbft_actions(self, actions: list[Action], view: int, height: int) -> list[Action]:
        if self.consensus is None:
            return actions
        return self.consensus.actions(actions, view, height, time.monotonic_ns() // 1_000_000)

    def propose_now(self, height: int) -> bool:
        return self.consensus is None or self.consensus.propose_now(height, time.monotonic_ns() // 1_000_000)

    def proposal(self, txs: list[bytes]) -> list[bytes]:
        if self.consensus is None:
            return txs
        return self.consensus.proposal(txs, [self.ctx.parse(raw).author for raw in txs])

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
                                   n_classes=ctx.plan.model.n_classes, clip_bound=ctx.clip_bound(round_id))
        return malicious_train(self.attack, ctx.plan.model, vec, local.X_train, local.y_train, ctx.plan.training,
                               round_id * 1_009 + ctx.index, attack_ctx)

    # ------------------------------------------------------------------ validator faults (behaviour.validator)

    def outgoing_tx(self, raw: bytes) -> bytes | None:
        """Withhold, corrupt or forge our statistic shares; withhold our seed reveal; commit a forged masked
        input's digest; reveal junk unmasking shares (lie-reveal)."""
        mode = self.behaviour.get("validator")
        tx = self.ctx.parse(raw)
        if mode == "withhold-shares" and tx.kind == "answer":
            logger.info("behaviour: not answering a complaint in round %d", tx.round)
            return None
        if mode == "junk-answer" and tx.kind in ("dealt", "answer"):
            return self._junk_answer_tx(tx)
        if mode == "lie-reveal" and tx.kind == "sa":
            return self._resign_tx(tx, [self._junk_reveal(tx.fields[0])])  # type: ignore[arg-type]
        if mode == "frivolous-complaint" and tx.kind == "stats":
            dealer = (self.ctx.index + 1) % self.ctx.n
            logger.info("behaviour: complaining about member %d instead of publishing statistics in round %d", dealer,
                        tx.round)
            return rc.make_tx(self.ctx.chain_id, "complaint", self.ctx.index, tx.round, [dealer], self.ctx.sign)
        if mode is None or tx.kind not in ("stats", "reveal", "input"):
            return raw
        if tx.kind == "reveal":
            return None if mode == "grind-seed" else raw
        if tx.kind == "input":
            forged = self._forged_digests.get(tx.round)
            return raw if forged is None else self._resign_tx(tx, [forged, *tx.fields[1:]])
        if mode == "withhold":
            logger.info("behaviour: withholding statistics for round %d", tx.round)
            return None
        if mode in ("zero-offset", "grind-seed", "lie-identity", "lie-weight", "lie-reveal", "withhold-shares",
                    "junk-answer", "lie-disclosure"):
            return raw
        shares = np.frombuffer(tx.fields[0], dtype="<u8").astype(np.uint64)  # type: ignore[arg-type]
        if mode == "forge-stats":
            forged_shares = field.add(shares, np.uint64(1 << 40))
        else:
            forged_shares = shares ^ np.uint64(1)
        return self._resign_tx(tx, [forged_shares.astype("<u8").tobytes()])

    def _junk_answer_tx(self, tx: rc.Tx) -> bytes:
        """`dealt` committing, for every holder, the hash of one junk bundle; an `answer` carrying that bundle."""
        if tx.kind == "dealt":
            hashes: bytes = tx.fields[1]  # type: ignore[assignment]
            junk_hash = hashlib.sha256(JUNK_BUNDLE).digest()
            return self._resign_tx(tx, [tx.fields[0], junk_hash * (len(hashes) // len(junk_hash))])
        logger.info("behaviour: answering a complaint with junk in round %d", tx.round)
        return self._resign_tx(tx, [tx.fields[0], JUNK_BUNDLE])

    def _resign_tx(self, tx: rc.Tx, fields: list[object]) -> bytes:
        return rc.make_tx(self.ctx.chain_id, tx.kind, self.ctx.index, tx.round, fields, self.ctx.sign)

    def secure_output(self, out: Output) -> Output:
        """Forge what the secure round sends: masked input (lie-identity, lie-weight), PRZS contributions
        (zero-offset). Each forgery is signed with our real key, as a Byzantine member would."""
        mode = self.behaviour.get("validator")
        if mode in ("lie-identity", "lie-disclosure") and isinstance(out, SendMasked):
            return self._shifted_masked_input(out, slice(None, -1), LIE_IDENTITY_SHIFT)  # the weight stays as committed
        if mode == "lie-weight" and isinstance(out, SendMasked):
            return self._shifted_masked_input(out, slice(-1, None), LIE_WEIGHT_SHIFT)  # the update stays as sketched
        if mode == "zero-offset" and isinstance(out, SendShares):
            return SendShares(out.to, self._uncommitted_contributions(out.payload))
        if mode in ("withhold-shares", "junk-answer") and isinstance(out, SendShares):
            return SendShares(out.to, b"withheld")
        return out

    def blame_disclosure(self, member: int, disclosure: Disclosure, row: SketchRow | None) -> Disclosure:
        """`lie-disclosure`: our sketch scalar with our lowest undisputed partner, shifted by what our masked input's
        lie added to row b* (`lying_pairs`): our own check passes, and the pair disagrees."""
        if self.behaviour.get("validator") != "lie-disclosure" or row is None or not disclosure.pairs:
            return disclosure
        partner, pairs = lying_pairs(member, disclosure.pairs, row)
        logger.info("behaviour: lying in our blame disclosure about our pair scalar with member %d", partner - 1)
        return dataclasses.replace(disclosure, pairs=pairs)

    def _secagg_message(self, data: bytes) -> sam.Message:
        return sam.decode(data, sam.Limits(self.ctx.n, self.ctx.plan.n_params + 1))

    def _resigned(self, message: sam.Message) -> bytes:
        body = signing_payload(self.ctx.chain_id, message.signed_body())
        return sam.encode(dataclasses.replace(message, signature=self.ctx.sign(body)))  # type: ignore[arg-type]

    def _shifted_masked_input(self, out: SendMasked, coordinates: slice, shift: int) -> SendMasked:
        """Our masked input with `shift` added to `coordinates`, re-signed; its digest is what our `input` commits."""
        message = self._secagg_message(out.message)
        assert isinstance(message, sam.MaskedInput)
        vector = message.vector().copy()
        vector[coordinates] += np.uint32(shift)
        forged = dataclasses.replace(message, masked=vector.astype("<u4").tobytes())
        data = self._resigned(forged)
        digest = self._secagg_message(data).digest()  # type: ignore[union-attr]
        self._forged_digests[message.round_id] = digest
        logger.info("behaviour: masked input of round %d shifted by %d on coordinates %s", message.round_id, shift,
                    coordinates)
        return SendMasked(data, digest)

    def _junk_reveal(self, data: bytes) -> bytes:
        message = self._secagg_message(data)
        if not isinstance(message, sam.UnmaskShares):
            return data
        junk = sam.encode_share(np.full(5, self.ctx.index + 7, dtype=np.uint64))
        forged = dataclasses.replace(message, self_seed_shares=tuple((o, junk) for o, _ in message.self_seed_shares),
                                     mask_key_shares=tuple((o, junk) for o, _ in message.mask_key_shares))
        return self._resigned(forged)

    def _uncommitted_contributions(self, payload: bytes) -> bytes:
        _tag, round_id, dealer, holder, share, contributions, commitments, _sig = msgpack.unpackb(payload)
        flipped = bytes(b ^ 0xFF for b in contributions)
        return vm.sign_shares(self.ctx.chain_id, self.ctx.sign, round_id, dealer, holder,
                              np.frombuffer(share, dtype="<u8").astype(np.uint64), flipped, commitments)

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

    # ------------------------------------------------------------------ shell faults (behaviour.shell_faults)

    async def shell_attack(self, shell: ShellAccess) -> None:
        if not self.shell_faults:
            return
        logger.warning("behaviour: shell faults %s", ", ".join(self.shell_faults))
        if "stale-blocks" in self.shell_faults or "replay-relay" in self.shell_faults:
            shell.serve_requests(lambda peer, data: self._answer_request(shell, peer, data))
        for name, attack in (("junk-shares", self._junk_shares), ("window-overrun", self._window_overrun),
                             ("mempool-flood", self._mempool_flood), ("evidence-flood", self._evidence_flood),
                             ("bandwidth-flood", self._bandwidth_flood)):
            if name in self.shell_faults:
                shell.spawn(attack, shell)

    async def _junk_shares(self, shell: ShellAccess) -> None:
        """Finding 1: junk sketch shares for the next round, to every peer, each time a round opens."""
        seen = -1
        while True:
            if shell.round() != seen:
                seen = shell.round()
                for i, peer in enumerate(shell.peer_ids):
                    await shell.send(peer, shell.seal("vshare", seen + 1, os.urandom(512), self._index_of(i)),
                                     "control")
            await shell.sleep(0.05)

    async def _window_overrun(self, shell: ShellAccess) -> None:
        """Finding 2: a request in the first frame of a new stream, the SYN, with OVERRUN_BYTES in all: past
        the window a new stream is granted before the victim can have read any of it, so it overruns in every
        run, whatever the victim's load. Each peer has its own task, which tries again soon while the
        connection the victim closed is not back yet, and every 5 s once it landed."""
        for peer in shell.peer_ids:
            shell.spawn(self._overrun_window_of, shell, peer)

    async def _overrun_window_of(self, shell: ShellAccess, peer: str) -> None:
        """The stream is opened by hand, on the connection of a request stream opened the usual way."""
        request = len(b"x").to_bytes(4, "big") + b"x"
        overrun = request + bytes(OVERRUN_BYTES - len(request))
        while True:
            try:
                conn: Any = (await shell.open_stream(peer, shell.request_protocol)).muxed_conn
                async with conn.streams_lock:
                    stream_id = conn.next_stream_id
                    conn.next_stream_id += 2
                await conn._write_frame(YAMUX_SYN_DATA_HEADER.pack(0, 0, 1, stream_id, len(overrun)) + overrun)
            except Exception as exc:  # noqa: BLE001 - not connected (yet, or again): try again soon
                logger.info("behaviour: window overrun towards %s failed: %r", peer[:12], exc)
                await shell.sleep(0.5)
                continue
            await shell.sleep(5.0)

    async def _mempool_flood(self, shell: ShellAccess) -> None:
        """Finding 3: signed 60 KiB transactions for the current, the next and far-future rounds."""
        ctx, nonce = self.ctx, 0
        while True:
            nonce += 1
            round_id = shell.round() + (nonce % 2 if nonce % 3 else 1000 + nonce)
            raw = rc.make_tx(ctx.chain_id, "sa", ctx.index, min(round_id, 1 << 31),
                             [os.urandom(16) + bytes(60 << 10)], ctx.sign)
            for i, peer in enumerate(shell.peer_ids):
                await shell.send(peer, shell.seal("tx", round_id, raw, self._index_of(i)), "control")
            await shell.sleep(0.01)

    async def _evidence_flood(self, shell: ShellAccess) -> None:
        """Finding 5: signed conflicting checkpoints, many per height, over the heights of the first
        EVIDENCE_HEIGHTS checkpoints, again and again. Heights only ever rising would leave every member's vote
        window (`consensus.checkpoints`) within a fraction of a second, so a flood that began before the
        connections were up would never be seen."""
        ctx, step = self.ctx, 0
        while True:
            step += 1
            height = ctx.checkpoint_interval * (1 + step % EVIDENCE_HEIGHTS)
            for _ in range(8):
                checkpoint = pbft.Checkpoint(height, os.urandom(32), ctx.index)
                signed = pbft.encode(pbft.Checkpoint(height, checkpoint.block_hash, ctx.index,
                                                     ctx.sign(pbft.signing_bytes(ctx.chain_id, checkpoint))))
                for i, peer in enumerate(shell.peer_ids):
                    await shell.send(peer, shell.seal("pbft", 0, signed, self._index_of(i)), "control")
            await shell.sleep(0.05)

    async def _bandwidth_flood(self, shell: ShellAccess) -> None:
        """Finding 7: one valid 1 MiB envelope per peer, re-sent without pause."""
        frames = [shell.seal("pbft", 0, bytes(FLOOD_PAYLOAD_BYTES), self._index_of(i))
                  for i in range(len(shell.peer_ids))]
        while True:
            for peer, frame in zip(shell.peer_ids, frames, strict=True):
                await shell.send(peer, frame, "bulk")
            await shell.sleep(0)

    async def _answer_request(self, shell: ShellAccess, peer: str, data: bytes) -> bytes:
        """Findings 4 and 6: answer `get_blocks` with block 1 (stale-blocks); relay every request to the
        other members before answering it (replay-relay)."""
        if "replay-relay" in self.shell_faults:
            for other in shell.peer_ids:
                if other != peer:
                    await shell.request(other, data)
        if "stale-blocks" in self.shell_faults and _request_type(data) == "get_blocks":
            first = shell.block(1)
            return codec.encode([list(first)]) if first is not None else b""
        return await shell.honest_requests(peer, data)

    def _index_of(self, position: int) -> int:
        """The member index of the `position`-th peer in `ShellAccess.peer_ids` (every member but us)."""
        return position if position < self.ctx.index else position + 1


def _request_type(data: bytes) -> str | None:
    """The type field of an envelope, read without checking anything (the attacker's own parsing)."""
    try:
        body, _signature = codec.decode(data, max_bytes=len(data), max_items=2)
        fields = codec.decode(body, max_bytes=len(body), max_items=8)
    except (codec.DecodeError, ValueError, TypeError):
        return None
    return fields[2] if isinstance(fields, list) and len(fields) > 2 and isinstance(fields[2], str) else None
