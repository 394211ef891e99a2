"""A PBFT replica (Castro & Liskov) as a pure, sans-I/O state machine.

The replica never touches a clock, a socket or a disk. The shell feeds it events (`tick`, `receive`,
`propose`, `note_pending`, `block_validated`, `add_committed`) with the current time in milliseconds, and
every call returns a list of actions that the shell MUST execute in list order:

* `Persist(key, value)`: write durably (synced) before executing any later action of the same list.
  Everything the replica signs is persisted before the action that sends it, so a restarted replica
  rebuilt from the persisted map (`persisted=`) never signs a message that conflicts with one it sent.
* `Broadcast(msg)` / `Send(to, msg)`: transmit a signed message (best effort; the replica retransmits).
* `ValidateBlock(block)`: ask the application whether `block` is acceptable; answer with
  `block_validated`. The replica does not PREPARE a block before the application said yes.
* `Deliver(block, cert)`: the block is final; apply it. Exactly once per height, in height order.
* `RecordEvidence(kind, data)`: two conflicting messages signed by one replica (`data` holds both).
* `FetchBlocks(from_height, peer)`: we are behind; fetch committed blocks with their certificates from
  `peer` (a hint) and hand each to `add_committed` in order.
* `ViewChanged(view)`: a new view is installed (for logs and metrics).

Design, in short (docs/consensus.md has the full argument):

* One slot in flight: sequence number = block height, and the primary proposes height h+1 only after h
  is committed. Each block links to its parent by hash, so pipelining would gain little for a ledger
  whose blocks are rounds of training.
* Signatures everywhere (PBFT's "BFT-PK" variant), which makes certificates transferable: a VIEW-CHANGE
  proves how far the chain is final with a commit certificate instead of re-proposing every slot since
  the last checkpoint, and it carries the prepared certificate for the one slot above that.
* Quorum q = ceil((N+f+1)/2) (consensus.quorum): prepared = PRE-PREPARE + q-1 matching PREPAREs from
  distinct backups; committed = q matching COMMITs of one view.
* Checkpoints every `checkpoint_interval` heights become stable at q matching signatures; the low
  watermark is the stable checkpoint, and no slot above low + `window` is proposed or accepted.
* View-change timers run only while work is pending (a slot in flight or `note_pending`), start at
  `view_timeout_ms` and double with every consecutive view change up to `max_view_timeout_ms`. A
  replica waiting for a NEW-VIEW arms its timer only once a quorum has given up on the views below the
  one it waits for (VIEW-CHANGEs for that view or higher), so a lone replica with a bad link cannot race
  ahead; f+1 VIEW-CHANGEs for higher views pull it forward, and a valid NEW-VIEW for any higher view
  installs that view directly.
* The request timer (`watch_tx`): a transaction the shell wants committed that no delivered block
  carries within `request_timeout_factor` view timeouts starts a view change even while blocks commit,
  so a censoring or slow primary is replaced.
* Cheap filters run before any signature check (`_stale`), and every state a peer can make us hold has
  a limit (consensus.actions; docs/consensus.md lists them).

The transitions live in mixins: normal case (consensus.normal_case), view change
(consensus.view_change), checkpoints and watermarks (consensus.checkpoints), restore
(consensus.restore); this module holds the public surface, dispatch, timers and catch-up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from consensus.actions import (
    KEY_CERT,
    KEY_CHECKPOINT,
    KEY_NEW_VIEW,
    KEY_PREPARED,
    KEY_SIGNED,
    KEY_STABLE,
    KEY_VIEW,
    KEY_VIEW_CHANGE,
    LAST_COMMIT_RESENDS,
    MAX_CANDIDATE_BLOCKS,
    MAX_COMMIT_VIEWS_PER_SENDER,
    MAX_EVIDENCE_PER_SENDER,
    MAX_PROOF_SENDS,
    MAX_TIMEOUT_DOUBLINGS,
    MAX_WATCHED_TXS,
    Action,
    Broadcast,
    Deliver,
    FetchBlocks,
    M,
    Persist,
    PersistedState,
    RecordEvidence,
    ReplicaConfig,
    Send,
    SlotMessage,
    ValidateBlock,
    ViewChanged,
)
from consensus.block import (
    MAX_TXS_PER_BLOCK,
    Block,
    CertificateError,
    CommitCertificate,
    verify_certificate,
)
from consensus.checkpoints import Checkpoints
from consensus.messages import (
    MAX_BLOCK_IN_MESSAGE_BYTES,
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    hash_block,
    signing_bytes,
)
from consensus.normal_case import NormalCase, _Slot
from consensus.quorum import quorum_size
from consensus.restore import Restore
from consensus.view_change import NewViewPlan, ViewChanges, new_view_plan

__all__ = [
    "KEY_CERT", "KEY_CHECKPOINT", "KEY_NEW_VIEW", "KEY_PREPARED", "KEY_SIGNED", "KEY_STABLE", "KEY_VIEW",
    "KEY_VIEW_CHANGE", "LAST_COMMIT_RESENDS", "MAX_CANDIDATE_BLOCKS", "MAX_COMMIT_VIEWS_PER_SENDER",
    "MAX_EVIDENCE_PER_SENDER", "MAX_PROOF_SENDS", "MAX_TIMEOUT_DOUBLINGS", "MAX_WATCHED_TXS", "Action",
    "Broadcast", "Deliver", "FetchBlocks", "M", "NewViewPlan", "Persist", "PersistedState", "RecordEvidence",
    "Replica", "ReplicaConfig", "Send", "ValidateBlock", "ViewChanged", "new_view_plan",
]


class Replica(NormalCase, ViewChanges, Checkpoints, Restore):
    """One PBFT replica. See the module docstring for the action contract; the normal case, the view
    change, checkpoints and restore live in the mixins this class combines."""

    def __init__(self, config: ReplicaConfig, index: int, sign: Callable[[bytes], bytes],
                 verify: Callable[[int, bytes, bytes], bool], persisted: PersistedState | None = None,
                 committed: tuple[int, bytes] | None = None,
                 committed_cert: CommitCertificate | None = None) -> None:
        assert 0 <= index < config.n, index
        self.config = config
        self.index = index
        self._sign = sign
        self._verify = verify
        self.quorum = quorum_size(config.n, config.f)
        self.stats: Counter[str] = Counter()
        self.committed_height, self.last_hash = committed if committed is not None else (0, config.chain_id)
        self.view = 0
        self.active = True
        self.attempts = 0
        self.deadline_ms: int | None = None
        self.work_pending = False
        self._retransmit_at_ms = 0
        self._slot: _Slot | None = None
        self._candidates: dict[bytes, Block] = {}
        self._validated: dict[bytes, bool] = {}
        self._prepares: dict[tuple[int, bytes], dict[int, Prepare]] = {}
        self._commits: dict[tuple[int, bytes], dict[int, Commit]] = {}
        self._prepared: PreparedCertificate | None = None
        self._known_cert: CommitCertificate | None = committed_cert
        self._signed: dict[str, tuple[int, int, bytes]] = {}
        self._outbox: dict[type, Message] = {}
        self._last_commit: Commit | None = None
        self._last_commit_resends = 0
        self._head_cert: CommitCertificate | None = committed_cert
        self._future: dict[tuple[int, type], SlotMessage] = {}
        self._seen: dict[tuple[type, int, int, int], SlotMessage] = {}
        self._second_commits: dict[tuple[int, int], bytes] = {}
        self._evidenced: dict[int, set[tuple[str, int, int]]] = {}
        self._verified_view_changes: dict[int, ViewChange] = {}
        self._forced: PrePrepare | None = None
        self._watched: dict[bytes, int] = {}
        self._view_changes: dict[int, ViewChange] = {}
        self._my_view_change: ViewChange | None = None
        self._new_view: NewView | None = None
        self._view_floor = 0
        self._justified: tuple[int, int, bytes] | None = None
        self._stable: tuple[int, bytes] = (0, config.chain_id)
        self._checkpoint_votes: dict[int, dict[int, Checkpoint]] = {}
        self._my_checkpoint: Checkpoint | None = None
        self._ahead: dict[int, int] = {}
        self._fetch_target = 0
        self._fetch_retry_at_ms = 0
        self._behind_since_ms: int | None = None
        self._fetch_rotation = 0
        self._helped_at_ms: dict[tuple[str, int], int] = {}
        self._stable_proof: tuple[Checkpoint, ...] = ()
        self._proofs_sent: dict[int, tuple[int, int]] = {}
        if persisted:
            self._restore(persisted)

    @property
    def is_primary(self) -> bool:
        return self.primary(self.view) == self.index

    @property
    def ready_to_propose(self) -> bool:
        """True when this replica is the active primary and may propose the next height now."""
        signed = self._signed.get("preprepare")
        proposed_before = signed is not None and signed[:2] >= (self.view, self.committed_height + 1)
        return (self.active and self.is_primary and self._slot is None and not proposed_before
                and self.committed_height >= self._view_floor
                and self.committed_height >= self._final_height()
                and self.committed_height + 1 <= self.high_watermark)

    @property
    def high_watermark(self) -> int:
        return self._stable[0] + self.config.window

    @property
    def stable_checkpoint(self) -> tuple[int, bytes]:
        return self._stable

    def primary(self, view: int) -> int:
        return view % self.config.n

    def timeout_ms(self) -> int:
        """The current view-change timeout: doubled for every consecutive view change, capped."""
        doubled = self.config.view_timeout_ms << min(self.attempts, MAX_TIMEOUT_DOUBLINGS)
        return min(doubled, self.config.max_view_timeout_ms)

    def tick(self, now_ms: int) -> list[Action]:
        """Advance time: fire the view-change timer, retransmit, retry catch-up."""
        actions: list[Action] = self._take_forced(now_ms)
        if self.deadline_ms is not None and now_ms >= self.deadline_ms:
            self.stats["view_timeouts"] += 1
            actions += self._start_view_change(self.view + 1, now_ms)
        elif self.active and self._request_overdue(now_ms):
            self.stats["request_timeouts"] += 1
            actions += self._start_view_change(self.view + 1, now_ms)
        if now_ms >= self._retransmit_at_ms:
            self._retransmit_at_ms = now_ms + max(1, self.config.view_timeout_ms // 2)
            actions += [Broadcast(m) for m in self._retransmissions()]
        return actions + self._maybe_fetch(now_ms)

    def note_pending(self, now_ms: int) -> list[Action]:
        """The shell has uncommitted work (e.g. a non-empty mempool): run the view-change timer.

        Cheap and idempotent; call it whenever work is pending. Committing a block clears the flag.
        """
        self.work_pending = True
        self._arm_timer(now_ms)
        return []

    def watch_tx(self, digest: bytes, now_ms: int) -> list[Action]:
        """The shell holds a valid transaction it wants committed (its own; `digest` = sha256 of its bytes).

        PBFT's request timer: if no delivered block carries it within `request_timeout_factor` view
        timeouts, this replica starts a view change even while other blocks commit, so a primary that
        censors it (or is slow to include it) is replaced once f+1 replicas watch it. Idempotent: the timer
        runs from the first call and restarts when a new view is installed. A delivered block holding the
        transaction ends the watch; `unwatch_tx` ends it when the transaction stops being valid.
        """
        if digest not in self._watched and len(self._watched) < MAX_WATCHED_TXS:
            self._watched[digest] = now_ms
        return self.note_pending(now_ms)

    def unwatch_tx(self, digest: bytes) -> None:
        """The shell no longer wants `digest` committed (it became invalid, or was dropped)."""
        self._watched.pop(digest, None)

    def watch_only(self, digests: Iterable[bytes], now_ms: int) -> list[Action]:
        """`watch_tx` for each of `digests` and `unwatch_tx` for every other watched one: a shell that
        recomputes "what I am waiting for" on every event hands it over in one call."""
        wanted = set(digests)
        for digest in [d for d in self._watched if d not in wanted]:
            del self._watched[digest]
        for digest in wanted:
            if digest not in self._watched and len(self._watched) < MAX_WATCHED_TXS:
                self._watched[digest] = now_ms
        return self.note_pending(now_ms) if self._watched else []

    def _request_overdue(self, now_ms: int) -> bool:
        """Watched transactions are kept in the order their timers started, so the first is the oldest."""
        oldest = next(iter(self._watched.values()), None)
        return oldest is not None and now_ms - oldest >= self.config.request_timeout_factor * self.timeout_ms()

    def propose(self, txs: tuple[bytes, ...], now_ms: int) -> list[Action]:
        """Propose a block of `txs` at the next height; a no-op unless `ready_to_propose`."""
        if not self.ready_to_propose:
            return []
        assert len(txs) <= MAX_TXS_PER_BLOCK, len(txs)
        height = self.committed_height + 1
        block = Block(self.config.chain_id, height, self.last_hash, self.view, self.index, tuple(txs))
        assert len(block.encode()) <= MAX_BLOCK_IN_MESSAGE_BYTES, "peers would reject this block as oversized"
        voted = self._vote("preprepare", PrePrepare(self.view, height, block, self.index))
        if voted is None:
            return []
        signed, actions = voted
        self.work_pending = True
        return actions + [Broadcast(signed)] + self._dispatch(signed, now_ms)

    def receive(self, msg: Message, now_ms: int) -> list[Action]:
        """Handle a decoded message from a peer: verify its signature, then apply protocol rules."""
        if type(msg) not in _HANDLERS:
            self.stats["unknown_type"] += 1
            return []
        if not 0 <= msg.sender < self.config.n:
            self.stats["unknown_sender"] += 1
            return []
        if msg.sender == self.index:
            self.stats["own_message"] += 1
            return []
        if self._stale(msg):
            self.stats["stale"] += 1
            return self._help_stale_sender(msg, now_ms)
        if not self._known_valid(msg) and not self._check_signature(msg):
            self.stats["bad_signature"] += 1
            return []
        self.stats["received"] += 1
        return self._dispatch(msg, now_ms)

    def block_validated(self, block_hash: bytes, ok: bool, now_ms: int) -> list[Action]:
        """The application's verdict on a block from a `ValidateBlock` action."""
        if block_hash not in self._candidates or block_hash in self._validated:
            return []
        self._validated[block_hash] = ok
        if not ok:
            self.stats["invalid_block"] += 1
            return []
        return self._send_prepare(now_ms) + self._progress(now_ms)

    def add_committed(self, block: Block, cert: CommitCertificate, now_ms: int) -> list[Action]:
        """Catch-up: a block fetched from a peer, accepted only with a valid certificate at our next height."""
        if block.height != self.committed_height + 1 or block.prev_hash != self.last_hash:
            self.stats["catchup_not_next"] += 1
            return []
        try:
            verify_certificate(self.config.chain_id, block, cert, n=self.config.n, quorum=self.quorum,
                               verify=self._verify)
        except CertificateError:
            self.stats["catchup_bad_certificate"] += 1
            return []
        self.stats["catchup_blocks"] += 1
        return self._deliver(block, cert, now_ms)

    def _dispatch(self, msg: Message, now_ms: int) -> list[Action]:
        return _HANDLERS[type(msg)](self, msg, now_ms)

    def _check_signature(self, msg: Message) -> bool:
        return bool(self._verify(msg.sender, signing_bytes(self.config.chain_id, msg), msg.signature))

    def _stale(self, msg: Message) -> bool:
        """Cheap checks that run before any signature: a message that can no longer change our state
        (an old view or a height already final) is not worth verifying."""
        if isinstance(msg, PrePrepare):
            return (msg.view < self.view or msg.height < self.committed_height
                    or (msg.height == self.committed_height
                        and self._justified != (msg.view, msg.height, hash_block(msg.block))))
        if isinstance(msg, Prepare):
            return msg.view < self.view or msg.height <= self.committed_height
        if isinstance(msg, Commit):
            return msg.height <= self.committed_height
        if isinstance(msg, Checkpoint):
            return msg.height % self.config.checkpoint_interval != 0
        if isinstance(msg, ViewChange):
            return msg.new_view < self.view
        return msg.view < self.view or (msg.view == self.view and self.active and msg == self._new_view)

    def _help_stale_sender(self, msg: Message, now_ms: int) -> list[Action]:
        """A stale message may come from a peer that is behind: help it, rate-limited per peer, with what
        is public anyway (our head certificate, our NEW-VIEW). Its claim is unverified, so it changes
        nothing else."""
        if isinstance(msg, (PrePrepare, Prepare)):
            return self._help_peer(msg.sender, msg.height - 1, now_ms)
        if isinstance(msg, ViewChange):
            return self._forward_new_view(msg.sender, now_ms)
        return []

    def _known_valid(self, msg: Message) -> bool:
        """A VIEW-CHANGE identical to the last one verified from its sender (a resend) needs no check."""
        return isinstance(msg, ViewChange) and self._verified_view_changes.get(msg.sender) == msg

    def _arm_timer(self, now_ms: int) -> None:
        if self.active and self.deadline_ms is None and (self.work_pending or self._slot is not None):
            self.deadline_ms = now_ms + self.timeout_ms()

    def _retransmissions(self) -> list[Message]:
        """What peers may have missed: our votes for the open slot (or, a few times, the last commit),
        view change, and a checkpoint that is not yet stable."""
        msgs: list[Message] = list(self._outbox.values())
        if not msgs and self._last_commit is not None and self._last_commit_resends > 0:
            self._last_commit_resends -= 1
            msgs.append(self._last_commit)
        if not self.active and self._my_view_change is not None:
            msgs.append(self._my_view_change)
        if self._my_checkpoint is not None and self._my_checkpoint.height > self._stable[0]:
            msgs.append(self._my_checkpoint)
        return msgs

    def _final_height(self) -> int:
        return 0 if self._known_cert is None else self._known_cert.height

    def _note_height(self, sender: int, committed_claim: int, now_ms: int, *, exact: bool = True) -> list[Action]:
        """Track how far peers claim to be; help a peer that is behind with the certificate of our head
        block, sent as the quorum of signed COMMITs it is made of (they verify like fresh ones).

        `exact` is False when the message bounds the sender's height only from below (a COMMIT for h
        says the sender has h-1, maybe h), so it cannot show that the sender is behind. Neither can an
        old message from a peer that has already shown a higher height (a replay, or a late duplicate).
        """
        known = max(committed_claim, self._ahead.get(sender, 0))
        if known > 0:
            self._ahead[sender] = known
        return self._help_peer(sender, known, now_ms) if exact else []

    def _help_peer(self, sender: int, claim: int, now_ms: int) -> list[Action]:
        """Send a peer that is behind the quorum of signed COMMITs our head certificate is made of."""
        head = self._head_cert
        known = max(claim, self._ahead.get(sender, 0))
        if (known < self.committed_height and head is not None and head.height == self.committed_height
                and self._may_help("commit", sender, now_ms)):
            return [Send(sender, Commit(head.view, head.height, head.block_hash, signer, signature))
                    for signer, signature in head.signatures if signer != sender]
        return []

    def _may_help(self, kind: str, peer: int, now_ms: int) -> bool:
        """Rate-limit unsolicited help to one peer: at most once per half timeout and kind."""
        if now_ms < self._helped_at_ms.get((kind, peer), 0):
            return False
        self._helped_at_ms[(kind, peer)] = now_ms + max(1, self.config.view_timeout_ms // 2)
        return True

    def _learn_final(self, cert: CommitCertificate, now_ms: int) -> list[Action]:
        """A verified certificate shows a block final. If it is our next block and we hold it (we accepted
        its PRE-PREPARE but missed the COMMITs), deliver it now; otherwise catch up."""
        if cert.height > self._final_height():
            self._known_cert = cert
        block = self._candidates.get(cert.block_hash)
        if cert.height == self.committed_height + 1 and block is not None:
            return self._deliver(block, cert, now_ms)
        return self._maybe_fetch(now_ms)

    def _catch_up_target(self) -> int:
        """The height we can prove or safely believe final: a certificate, a stable checkpoint, or the
        claims of f+1 distinct peers (one of them honest)."""
        claims = sorted(self._ahead.values(), reverse=True)
        believed = claims[self.config.f] if len(claims) > self.config.f else 0
        return max(believed, self._final_height(), self._stable[0])

    def _maybe_fetch(self, now_ms: int) -> list[Action]:
        target = self._catch_up_target()
        if target <= self.committed_height:
            self._behind_since_ms = None
            return []
        if self._behind_since_ms is None:
            self._behind_since_ms = now_ms
        grace_ms = max(1, self.config.view_timeout_ms // 2)
        if target < self.committed_height + 2 and now_ms - self._behind_since_ms < grace_ms:
            return []
        if target <= self._fetch_target and now_ms < self._fetch_retry_at_ms:
            return []
        self._fetch_target = target
        self._fetch_retry_at_ms = now_ms + self.config.view_timeout_ms
        ahead = sorted(s for s, h in self._ahead.items() if h >= target)
        peers = ahead + [s for s in range(self.config.n) if s != self.index and s not in ahead]
        peer = peers[self._fetch_rotation % len(peers)] if peers else None
        self._fetch_rotation += 1
        self.stats["fetch_requests"] += 1
        return [FetchBlocks(self.committed_height + 1, peer)]


_Handler = Callable[[Replica, Message, int], list[Action]]
_HANDLERS: dict[type, _Handler] = {
    PrePrepare: Replica._on_preprepare,  # type: ignore[dict-item]
    Prepare: Replica._on_prepare,  # type: ignore[dict-item]
    Commit: Replica._on_commit,  # type: ignore[dict-item]
    Checkpoint: Replica._on_checkpoint,  # type: ignore[dict-item]
    ViewChange: Replica._on_view_change,  # type: ignore[dict-item]
    NewView: Replica._on_new_view,  # type: ignore[dict-item]
}
"""Message type -> handler. Every handler runs after the signature check in `receive`."""
