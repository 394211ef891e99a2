"""The normal case of PBFT: PRE-PREPARE, PREPARE, COMMIT for the one slot in flight, delivery, votes
that never conflict with what was signed before, and equivocation evidence.

A mixin of `consensus.replica.Replica`: it reads and writes the replica's state (the slot, candidate
blocks, vote maps, the future buffer) and calls its timers and catch-up helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus import codec
from consensus.actions import (
    KEY_CERT,
    KEY_PREPARED,
    KEY_SIGNED,
    LAST_COMMIT_RESENDS,
    MAX_CANDIDATE_BLOCKS,
    MAX_COMMIT_VIEWS_PER_SENDER,
    MAX_EVIDENCE_PER_SENDER,
    Action,
    Broadcast,
    Deliver,
    M,
    Persist,
    RecordEvidence,
    SlotMessage,
    V,
    ValidateBlock,
)
from consensus.block import (
    Block,
    CommitCertificate,
    sha256,
)
from consensus.messages import (
    Commit,
    Message,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    block_hash_of,
    encode,
    encode_prepared,
    hash_block,
    signing_bytes,
)


@dataclass(slots=True)
class _Slot:
    """The PRE-PREPARE this replica accepted for height committed+1 in the current view."""

    preprepare: PrePrepare
    block_hash: bytes
    prepare_sent: bool = False
    commit_sent: bool = False


class NormalCase:
    """Handlers and transitions of the normal case."""

    def _on_preprepare(self, pp: PrePrepare, now_ms: int) -> list[Action]:
        actions = self._note_height(pp.sender, pp.height - 1, now_ms)
        if pp.view != self.view or not self.active:
            self.stats["wrong_view"] += 1
            return actions
        if pp.sender != self.primary(pp.view):
            self.stats["preprepare_not_from_primary"] += 1
            return actions
        return actions + self._slot_message(pp, now_ms)

    def _on_prepare(self, prepare: Prepare, now_ms: int) -> list[Action]:
        actions = self._note_height(prepare.sender, prepare.height - 1, now_ms)
        if prepare.view != self.view or not self.active:
            self.stats["wrong_view"] += 1
            return actions
        if prepare.sender == self.primary(prepare.view):
            self.stats["prepare_from_primary"] += 1
            return actions
        return actions + self._slot_message(prepare, now_ms)

    def _on_commit(self, commit: Commit, now_ms: int) -> list[Action]:
        """COMMITs of any view count: a quorum of them is a certificate whatever view we are in."""
        return (self._note_height(commit.sender, commit.height - 1, now_ms, exact=False)
                + self._slot_message(commit, now_ms))

    def _slot_message(self, msg: PrePrepare | Prepare | Commit, now_ms: int) -> list[Action]:
        """Route a slot message by height: apply it, buffer it for the next height, or drop it."""
        if msg.height <= self.committed_height:
            if isinstance(msg, PrePrepare):
                return self._help_reproposal(msg)
            self.stats["old_height"] += 1
            return []
        if msg.height > self.high_watermark:
            self.stats["above_watermark"] += 1
            return []
        if msg.height > self.committed_height + 1:
            key = (msg.sender, type(msg))
            held = self._future.get(key)
            if held is None or (held.height, held.view) <= (msg.height, msg.view):
                self._future[key] = msg
            return []
        if isinstance(msg, Commit) and not self._commit_view_allowed(msg):
            return []
        first, actions = self._check_equivocation(msg)
        if isinstance(msg, PrePrepare):
            return actions + self._accept_preprepare(msg, now_ms)
        if not first:
            if not isinstance(msg, Commit):
                return actions
            self._keep_as_second_commit(msg)
        if isinstance(msg, Prepare):
            self._prepares.setdefault((msg.view, msg.block_hash), {})[msg.sender] = msg
        else:
            self._commits.setdefault((msg.view, msg.block_hash), {})[msg.sender] = msg
        return actions + self._progress(now_ms)

    def _keep_as_second_commit(self, commit: Commit) -> None:
        """A COMMIT that conflicts with its sender's first for (view, height) is kept too, replacing any
        earlier second one: a helper relays a certificate as its quorum of COMMITs, and a Byzantine signer
        of it may have sent us a COMMIT for another block first. Two per (sender, view, height) at most."""
        key = (commit.sender, commit.view)
        old = self._second_commits.get(key)
        if old is not None and old != commit.block_hash:
            votes = self._commits.get((commit.view, old), {})
            votes.pop(commit.sender, None)
            if not votes:
                self._commits.pop((commit.view, old), None)
        self._second_commits[key] = commit.block_hash

    def _commit_view_allowed(self, commit: Commit) -> bool:
        """Bound what one sender can make us hold: COMMITs of at most a few views per height."""
        views = {view for (view, _), votes in self._commits.items() if commit.sender in votes}
        if commit.view not in views and len(views) >= MAX_COMMIT_VIEWS_PER_SENDER:
            self.stats["commit_views_exceeded"] += 1
            return False
        return True

    def _accept_preprepare(self, pp: PrePrepare, now_ms: int) -> list[Action]:
        block = pp.block
        block_hash = hash_block(block)
        if block.chain_id != self.config.chain_id or block.prev_hash != self.last_hash:
            self.stats["preprepare_bad_link"] += 1
            return []
        if not self._preprepare_allowed(pp, block_hash):
            self.stats["preprepare_unjustified"] += 1
            return []
        if self._slot is not None:
            self.stats["preprepare_duplicate"] += 1
            return []
        self._slot = _Slot(pp, block_hash)
        self._remember_candidate(block_hash, block)
        self._arm_timer(now_ms)
        actions: list[Action] = []
        if pp.sender == self.index:
            self._outbox[PrePrepare] = pp
        elif block_hash in self._validated:
            actions += self._send_prepare(now_ms)
        else:
            actions.append(ValidateBlock(block))
        return actions + self._progress(now_ms)

    def _preprepare_allowed(self, pp: PrePrepare, block_hash: bytes) -> bool:
        """What a PRE-PREPARE of the current view may propose. Heights up to the NEW-VIEW's floor are final;
        at the height where the NEW-VIEW forced a block, that block and nothing else (also after a restart:
        the NEW-VIEW is persisted and restored); above it, only a fresh block of this view by its primary."""
        if pp.height <= self._view_floor:
            return False
        if self._justified is not None and self._justified[:2] == (pp.view, pp.height):
            return self._justified[2] == block_hash
        return pp.block.view == pp.view and pp.block.proposer == pp.sender

    def _take_forced(self, now_ms: int) -> list[Action]:
        """Accept the NEW-VIEW's forced PRE-PREPARE once it is for our next height and no slot is open: at
        install, after catching up to its height, and after a restart (the slot itself is not persisted).
        It is held apart from the future buffer, so no later message can displace it."""
        pp = self._forced
        if (pp is None or not self.active or pp.view != self.view or self._slot is not None
                or pp.height != self.committed_height + 1):
            return []
        return self._slot_message(pp, now_ms)

    def _remember_candidate(self, block_hash: bytes, block: Block) -> None:
        if len(self._candidates) >= MAX_CANDIDATE_BLOCKS and block_hash not in self._candidates:
            evicted = next(iter(self._candidates))
            self._candidates.pop(evicted)
            self._validated.pop(evicted, None)
        self._candidates[block_hash] = block

    def _slot_validated(self, slot: _Slot) -> bool:
        return slot.preprepare.sender == self.index or self._validated.get(slot.block_hash) is True

    def _send_prepare(self, now_ms: int) -> list[Action]:
        slot = self._slot
        if slot is None or slot.prepare_sent or not self._slot_validated(slot) \
                or slot.preprepare.sender == self.index:
            return []
        pp = slot.preprepare
        voted = self._vote("prepare", Prepare(pp.view, pp.height, slot.block_hash, self.index))
        if voted is None:
            return []
        signed, actions = voted
        slot.prepare_sent = True
        self._outbox[Prepare] = signed
        self._prepares.setdefault((pp.view, slot.block_hash), {})[self.index] = signed
        return actions + [Broadcast(signed)]

    def _progress(self, now_ms: int) -> list[Action]:
        """Move the slot forward: prepared -> send COMMIT; a quorum of COMMITs -> deliver."""
        actions: list[Action] = []
        slot = self._slot
        if slot is not None and not slot.commit_sent and self._slot_validated(slot):
            primary = self.primary(slot.preprepare.view)
            votes = self._prepares.get((slot.preprepare.view, slot.block_hash), {})
            backups = [votes[s] for s in sorted(votes) if s != primary]
            if len(backups) >= self.quorum - 1:
                actions += self._on_prepared(slot, tuple(backups[:self.quorum - 1]))
        return actions + self._try_commit(now_ms)

    def _on_prepared(self, slot: _Slot, prepares: tuple[Prepare, ...]) -> list[Action]:
        pp = slot.preprepare
        voted = self._vote("commit", Commit(pp.view, pp.height, slot.block_hash, self.index))
        if voted is None:
            return []
        signed, actions = voted
        slot.commit_sent = True
        self._outbox[Commit] = signed
        self._prepared = PreparedCertificate(pp, prepares)
        self._commits.setdefault((pp.view, slot.block_hash), {})[self.index] = signed
        return [Persist(KEY_PREPARED, encode_prepared(self._prepared)), *actions, Broadcast(signed)]

    def _try_commit(self, now_ms: int) -> list[Action]:
        height = self.committed_height + 1
        for (view, block_hash), votes in self._commits.items():
            if len(votes) < self.quorum:
                continue
            signers = sorted(votes)[:self.quorum]
            cert = CommitCertificate(height, view, block_hash, tuple((s, votes[s].signature) for s in signers))
            block = self._candidates.get(block_hash)
            if block is None:
                return self._learn_final(cert, now_ms)
            return self._deliver(block, cert, now_ms)
        return []

    def _deliver(self, block: Block, cert: CommitCertificate, now_ms: int) -> list[Action]:
        assert block.height == self.committed_height + 1 and block.prev_hash == self.last_hash, block
        actions: list[Action] = [Persist(KEY_CERT, cert.encode()), Deliver(block, cert)]
        self.stats["delivered"] += 1
        self.committed_height = block.height
        self.last_hash = cert.block_hash
        if self._known_cert is None or self._known_cert.height < cert.height:
            self._known_cert = cert
        own_commit = self._outbox.get(Commit)
        self._last_commit = own_commit if isinstance(own_commit, Commit) else None
        self._last_commit_resends = LAST_COMMIT_RESENDS
        self._head_cert = cert
        self._reset_height()
        if self.active:
            self.attempts = 0
            self.deadline_ms = None
        self._behind_since_ms = None
        if self._watched:
            for tx in block.txs:
                self._watched.pop(sha256(tx), None)
        self.work_pending = bool(self._watched)
        self._arm_timer(now_ms)
        if block.height % self.config.checkpoint_interval == 0:
            actions += self._make_checkpoint(block.height, cert.block_hash)
        return actions + self._take_forced(now_ms) + self._replay_future(now_ms)

    def _reset_height(self) -> None:
        """Forget everything about the height just committed."""
        self._slot = None
        self._candidates.clear()
        self._validated.clear()
        self._prepares.clear()
        self._commits.clear()
        self._second_commits.clear()
        self._outbox.clear()
        if self._prepared is not None and self._prepared.preprepare.height <= self.committed_height:
            self._prepared = None
        self._seen = {k: m for k, m in self._seen.items() if k[3] > self.committed_height}

    def _replay_future(self, now_ms: int) -> list[Action]:
        ready = [m for m in self._future.values() if m.height <= self.committed_height + 1]
        self._future = {k: m for k, m in self._future.items() if m.height > self.committed_height + 1}
        ready.sort(key=lambda m: _REPLAY_ORDER[type(m)])
        actions: list[Action] = []
        for msg in ready:
            actions += self._dispatch(msg, now_ms)
        return actions

    def _help_reproposal(self, pp: PrePrepare) -> list[Action]:
        """Vote for a NEW-VIEW re-proposal of the block we already committed, so that others can too."""
        block_hash = hash_block(pp.block)
        if (pp.height != self.committed_height or block_hash != self.last_hash
                or self._justified != (pp.view, pp.height, block_hash)):
            self.stats["old_height"] += 1
            return []
        actions: list[Action] = []
        if pp.sender != self.index:
            prepared = self._vote("prepare", Prepare(pp.view, pp.height, block_hash, self.index))
            if prepared is not None:
                actions += [*prepared[1], Broadcast(prepared[0])]
        committed = self._vote("commit", Commit(pp.view, pp.height, block_hash, self.index))
        if committed is not None:
            self._last_commit = committed[0]
            self._last_commit_resends = LAST_COMMIT_RESENDS
            actions += [*committed[1], Broadcast(committed[0])]
        return actions

    def _vote(self, kind: str, msg: V) -> tuple[V, list[Action]] | None:
        """Sign a slot message unless it conflicts with one signed before (also before a restart).

        Votes of one kind only move forward in (view, height), and at one (view, height) only one block
        is ever signed. The record is persisted before the signed message can be sent.
        """
        block_hash = block_hash_of(msg)
        position = (msg.view, msg.height)
        last = self._signed.get(kind)
        if last is not None and (last[:2] > position or (last[:2] == position and last[2] != block_hash)):
            self.stats["refused_conflicting_" + kind] += 1
            return None
        self._signed[kind] = (msg.view, msg.height, block_hash)
        signed = self._sign_msg(msg)
        return signed, [Persist(KEY_SIGNED + kind.encode(), codec.encode([msg.view, msg.height, block_hash]))]

    def _sign_msg(self, msg: M) -> M:
        return replace(msg, signature=self._sign(signing_bytes(self.config.chain_id, msg)))

    def _check_equivocation(self, msg: SlotMessage) -> tuple[bool, list[Action]]:
        """One message per (type, sender, view, height) counts: the first. A later one for another block is
        evidence, and a vote is then ignored, so no sender makes us hold more than one vote per slot."""
        key = (type(msg), msg.sender, msg.view, msg.height)
        prior = self._seen.setdefault(key, msg)
        if prior is msg or block_hash_of(prior) == block_hash_of(msg):
            return True, []
        return False, self._evidence(type(msg).__name__.lower(), msg.sender, (msg.view, msg.height), prior, msg)

    def _evidence(self, kind: str, sender: int, slot: tuple[int, int], first: Message,
                  second: Message) -> list[Action]:
        """Record two conflicting messages signed by `sender`: once per (kind, sender, slot), and at most
        MAX_EVIDENCE_PER_SENDER records per sender, because each record is a synced write."""
        recorded = self._evidenced.setdefault(sender, set())
        key = (kind, *slot)
        if key in recorded or len(recorded) >= MAX_EVIDENCE_PER_SENDER:
            self.stats["evidence_suppressed"] += 1
            return []
        recorded.add(key)
        self.stats["equivocations"] += 1
        return [RecordEvidence(kind, codec.encode([encode(first), encode(second)]))]


_REPLAY_ORDER: dict[type, int] = {PrePrepare: 0, Prepare: 1, Commit: 2}
