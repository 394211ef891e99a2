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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from consensus import codec
from consensus.block import (
    MAX_TXS_PER_BLOCK,
    Block,
    CertificateError,
    CommitCertificate,
    sha256,
    verify_certificate,
    verify_certificate_signatures,
)
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
    block_hash_of,
    decode,
    decode_prepared,
    encode,
    encode_prepared,
    hash_block,
    signing_bytes,
)
from consensus.quorum import quorum_size

SlotMessage = PrePrepare | Prepare | Commit
M = TypeVar("M", bound=Message)
V = TypeVar("V", PrePrepare, Prepare, Commit)

PersistedState = Mapping[bytes, bytes]
"""The key -> value map of everything this replica asked to persist (keys start with b"pbft/")."""

MAX_COMMIT_VIEWS_PER_SENDER = 4
"""Views per sender for which COMMITs of the current height are kept (bounds a Byzantine sender)."""
MAX_CANDIDATE_BLOCKS = 8
MAX_EVIDENCE_PER_SENDER = 8
"""Evidence records per sender and incarnation: one proof convicts; more would let a Byzantine member
turn every variant of a message into a synced write."""
MAX_WATCHED_TXS = 1024
"""Transactions whose commitment the request timer tracks (the shell's own valid ones)."""
MAX_TIMEOUT_DOUBLINGS = 30
LAST_COMMIT_RESENDS = 3
MAX_PROOF_SENDS = 3
"""Idle retransmissions of our last COMMIT; a peer still behind after that is helped when it speaks."""

KEY_VIEW = b"pbft/view"
KEY_SIGNED = b"pbft/signed/"
KEY_PREPARED = b"pbft/prepared"
KEY_CERT = b"pbft/cert"
KEY_VIEW_CHANGE = b"pbft/view_change"
KEY_NEW_VIEW = b"pbft/new_view"
KEY_CHECKPOINT = b"pbft/checkpoint"
KEY_STABLE = b"pbft/stable"


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    chain_id: bytes
    n: int
    f: int
    checkpoint_interval: int = 16
    window: int = 64
    view_timeout_ms: int = 2000
    max_view_timeout_ms: int = 30000
    request_timeout_factor: int = 2
    """A watched transaction not committed within this many current view timeouts starts a view change."""

    def __post_init__(self) -> None:
        assert self.checkpoint_interval >= 1 and self.window >= self.checkpoint_interval, self
        assert self.request_timeout_factor >= 1, self
        assert 0 < self.view_timeout_ms <= self.max_view_timeout_ms, self
        quorum_size(self.n, self.f)


@dataclass(frozen=True, slots=True)
class Persist:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    msg: Message


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    msg: Message


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    block: Block


@dataclass(frozen=True, slots=True)
class Deliver:
    block: Block
    cert: CommitCertificate


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FetchBlocks:
    from_height: int
    peer: int | None


@dataclass(frozen=True, slots=True)
class ViewChanged:
    view: int


Action = Persist | Broadcast | Send | ValidateBlock | Deliver | RecordEvidence | FetchBlocks | ViewChanged


@dataclass(slots=True)
class _Slot:
    """The PRE-PREPARE this replica accepted for height committed+1 in the current view."""

    preprepare: PrePrepare
    block_hash: bytes
    prepare_sent: bool = False
    commit_sent: bool = False


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    """What a quorum of VIEW-CHANGEs forces on the new view.

    `floor_height` is the highest height proven final (with `floor_cert`), and `block` is the block that
    must be re-proposed at floor_height+1 because it may have committed, or None if nothing can have.
    """

    floor_height: int
    floor_hash: bytes
    floor_cert: CommitCertificate | None
    block: Block | None


def new_view_plan(chain_id: bytes, view_changes: Iterable[ViewChange]) -> NewViewPlan:
    """Compute, from verified VIEW-CHANGEs, the only NEW-VIEW content an honest primary may send.

    The floor is the highest commit certificate. If a block B was committed at floor+1 by anyone, a
    quorum prepared it, and that quorum meets every VIEW-CHANGE quorum in an honest replica whose
    VIEW-CHANGE carries a prepared certificate for floor+1; among those certificates the one from the
    highest view is B's (standard PBFT argument), so re-proposing it is safe. Nothing above floor+1 can
    be prepared (preparing h+2 requires having committed h+1). Primary and backups both call this, so a
    NEW-VIEW that deviates from it is rejected.
    """
    vcs = list(view_changes)
    certs = [vc.committed for vc in vcs if vc.committed is not None]
    floor_cert = max(certs, key=lambda c: (c.height, c.block_hash), default=None)
    floor_height = 0 if floor_cert is None else floor_cert.height
    floor_hash = chain_id if floor_cert is None else floor_cert.block_hash
    candidates = [vc.prepared.preprepare for vc in vcs
                  if vc.prepared is not None and vc.prepared.preprepare.height == floor_height + 1
                  and vc.prepared.preprepare.block.prev_hash == floor_hash]
    best = max(candidates, key=lambda pp: (pp.view, hash_block(pp.block)), default=None)
    return NewViewPlan(floor_height, floor_hash, floor_cert, None if best is None else best.block)


class Replica:
    """One PBFT replica. See the module docstring for the action contract."""

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

    # ------------------------------------------------------------------ public surface

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

    # ------------------------------------------------------------------ dispatch

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
            return actions
        if isinstance(msg, Prepare):
            self._prepares.setdefault((msg.view, msg.block_hash), {})[msg.sender] = msg
        else:
            self._commits.setdefault((msg.view, msg.block_hash), {})[msg.sender] = msg
        return actions + self._progress(now_ms)

    def _commit_view_allowed(self, commit: Commit) -> bool:
        """Bound what one sender can make us hold: COMMITs of at most a few views per height."""
        views = {view for (view, _), votes in self._commits.items() if commit.sender in votes}
        if commit.view not in views and len(views) >= MAX_COMMIT_VIEWS_PER_SENDER:
            self.stats["commit_views_exceeded"] += 1
            return False
        return True

    # ------------------------------------------------------------------ normal case

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

    # ------------------------------------------------------------------ equivocation

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

    # ------------------------------------------------------------------ checkpoints and watermarks

    def _make_checkpoint(self, height: int, block_hash: bytes) -> list[Action]:
        checkpoint = self._sign_msg(Checkpoint(height, block_hash, self.index))
        self._my_checkpoint = checkpoint
        self._checkpoint_votes.setdefault(height, {})[self.index] = checkpoint
        actions: list[Action] = [Persist(KEY_CHECKPOINT, encode(checkpoint)), Broadcast(checkpoint)]
        return actions + self._check_stable(height)

    def _on_checkpoint(self, checkpoint: Checkpoint, now_ms: int) -> list[Action]:
        actions = self._note_height(checkpoint.sender, checkpoint.height, now_ms)
        if checkpoint.height <= self._stable[0]:
            return actions + self._forward_stable_proof(checkpoint, now_ms)
        if checkpoint.height > self._checkpoint_ceiling():
            self.stats["checkpoint_above_window"] += 1
            return actions + self._maybe_fetch(now_ms)
        votes = self._checkpoint_votes.setdefault(checkpoint.height, {})
        prior = votes.setdefault(checkpoint.sender, checkpoint)
        if prior.block_hash != checkpoint.block_hash:
            return actions + self._evidence("checkpoint", checkpoint.sender, (0, checkpoint.height), prior, checkpoint)
        return actions + self._check_stable(checkpoint.height) + self._maybe_fetch(now_ms)

    def _checkpoint_ceiling(self) -> int:
        """Checkpoint votes are kept only within a window above where we are, so each sender has at most
        window/interval of them held; a peer further ahead still counts towards catch-up (`_note_height`)."""
        return max(self.committed_height, self._stable[0]) + self.config.window

    def _check_stable(self, height: int) -> list[Action]:
        """A checkpoint signed by a quorum becomes the low watermark; everything below is collected."""
        tally = Counter(c.block_hash for c in self._checkpoint_votes.get(height, {}).values())
        winners = [h for h, count in tally.items() if count >= self.quorum]
        if not winners or height <= self._stable[0]:
            return []
        self._stable = (height, winners[0])
        self._stable_proof = tuple(c for c in self._checkpoint_votes[height].values() if c.block_hash == winners[0])
        self.stats["stable_checkpoints"] += 1
        self._checkpoint_votes = {h: v for h, v in self._checkpoint_votes.items() if h > height}
        return [Persist(KEY_STABLE, codec.encode([height, winners[0]]))]

    def _forward_stable_proof(self, checkpoint: Checkpoint, now_ms: int) -> list[Action]:
        """A peer still announces a checkpoint at or below our stable one: it missed the quorum that made
        ours stable (peers stop retransmitting once stable), so send it the quorum of signed checkpoints.

        At most a few times per peer and stable checkpoint, so replayed checkpoints cannot make us
        amplify traffic towards a peer for ever."""
        sent_for, times = self._proofs_sent.get(checkpoint.sender, (0, 0))
        times = times if sent_for == self._stable[0] else 0
        if not self._stable_proof or times >= MAX_PROOF_SENDS or not self._may_help("checkpoint", checkpoint.sender,
                                                                                   now_ms):
            return []
        self._proofs_sent[checkpoint.sender] = (self._stable[0], times + 1)
        return [Send(checkpoint.sender, c) for c in self._stable_proof if c.sender != checkpoint.sender]

    # ------------------------------------------------------------------ timers, retransmission, catch-up

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

    # ------------------------------------------------------------------ view change

    def _start_view_change(self, target: int, now_ms: int) -> list[Action]:
        assert target > self.view, (target, self.view)
        self.view = target
        self.active = False
        self.attempts += 1
        self.deadline_ms = None
        self._slot = None
        self._prepares.clear()
        self._outbox.clear()
        self._justified = None
        self._new_view = None
        self.stats["view_changes_started"] += 1
        prepared = self._prepared
        if prepared is not None and prepared.preprepare.height <= self._final_height():
            prepared = None
        vc = self._sign_msg(ViewChange(target, self._known_cert, prepared, self.index))
        self._my_view_change = vc
        self._view_changes[self.index] = vc
        actions: list[Action] = [Persist(KEY_VIEW_CHANGE, encode(vc)), Persist(KEY_VIEW, self._view_record()),
                                 Broadcast(vc)]
        return actions + self._view_change_progress(now_ms)

    def _view_record(self) -> bytes:
        return codec.encode([self.view, self.active, self.attempts])

    def _view_change_progress(self, now_ms: int) -> list[Action]:
        """Join higher views on f+1 VIEW-CHANGEs; arm the timer and build NEW-VIEW on a quorum."""
        higher = sorted((vc.new_view for vc in self._view_changes.values() if vc.new_view > self.view),
                        reverse=True)
        if len(higher) > self.config.f:
            return self._start_view_change(higher[self.config.f], now_ms)
        if self.active:
            return []
        if sum(vc.new_view >= self.view for vc in self._view_changes.values()) < self.quorum:
            return []
        if self.deadline_ms is None:
            self.deadline_ms = now_ms + self.timeout_ms()
        return self._try_new_view(now_ms)

    def _on_view_change(self, vc: ViewChange, now_ms: int) -> list[Action]:
        if not self._view_change_ok(vc, signature_checked=True):
            self.stats["bad_view_change"] += 1
            return []
        actions = self._note_height(vc.sender, 0 if vc.committed is None else vc.committed.height, now_ms)
        if vc.committed is not None:
            actions += self._learn_final(vc.committed, now_ms)
        if vc.prepared is not None:
            actions += self._embedded_equivocation(vc.prepared)
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            return actions + self._forward_new_view(vc.sender, now_ms)
        prior = self._view_changes.get(vc.sender)
        if prior is not None and prior.new_view > vc.new_view:
            return actions
        if prior is not None and prior.new_view == vc.new_view and prior != vc:
            return actions + self._evidence("viewchange", vc.sender, (vc.new_view, 0), prior, vc)
        self._view_changes[vc.sender] = vc
        return actions + self._view_change_progress(now_ms)

    def _forward_new_view(self, sender: int, now_ms: int) -> list[Action]:
        """A peer still asks for a view we already run: send it the NEW-VIEW that installed ours."""
        if self._new_view is None or not self._may_help("new_view", sender, now_ms):
            return []
        return [Send(sender, self._new_view)]

    def _embedded_equivocation(self, prepared: PreparedCertificate) -> list[Action]:
        """Messages quoted in a certificate may reveal a primary that sent different blocks to different
        backups; only slots not yet committed are tracked."""
        actions: list[Action] = []
        quoted: list[PrePrepare | Prepare] = [prepared.preprepare, *prepared.prepares]
        for msg in quoted:
            if msg.height == self.committed_height + 1 and msg.sender != self.index:
                actions += self._check_equivocation(msg)[1]
        return actions

    def _view_change_ok(self, vc: ViewChange, *, signature_checked: bool) -> bool:
        """Verify a VIEW-CHANGE (its signature unless already checked, and its certificates) once per
        sender and content: a resent or quoted copy then costs a comparison instead of ~2q signatures."""
        if self._verified_view_changes.get(vc.sender) == vc:
            return True
        if not (signature_checked or self._check_signature(vc)) or not self._valid_view_change(vc):
            return False
        self._verified_view_changes[vc.sender] = vc
        return True

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """Check everything a VIEW-CHANGE claims: its certificate and its prepared certificate."""
        if vc.committed is not None:
            try:
                verify_certificate_signatures(self.config.chain_id, vc.committed, n=self.config.n,
                                              quorum=self.quorum, verify=self._verify)
            except CertificateError:
                return False
        return vc.prepared is None or self._valid_prepared(vc.prepared, vc.new_view)

    def _valid_prepared(self, cert: PreparedCertificate, before_view: int) -> bool:
        pp = cert.preprepare
        if pp.view >= before_view or pp.sender != self.primary(pp.view):
            return False
        if pp.block.chain_id != self.config.chain_id or not self._check_signature(pp):
            return False
        block_hash = hash_block(pp.block)
        senders = set()
        for prepare in cert.prepares:
            if (prepare.view, prepare.height, prepare.block_hash) != (pp.view, pp.height, block_hash):
                return False
            if prepare.sender == pp.sender or prepare.sender in senders or not 0 <= prepare.sender < self.config.n:
                return False
            if not self._check_signature(prepare):
                return False
            senders.add(prepare.sender)
        return len(senders) >= self.quorum - 1

    def _try_new_view(self, now_ms: int) -> list[Action]:
        if self.active or not self.is_primary or self._my_view_change is None:
            return []
        others = [vc for s, vc in sorted(self._view_changes.items())
                  if vc.new_view == self.view and s != self.index]
        if len(others) < self.quorum - 1:
            return []
        chosen = (self._my_view_change, *others[:self.quorum - 1])
        plan = new_view_plan(self.config.chain_id, chosen)
        actions: list[Action] = []
        preprepare = None
        if plan.block is not None:
            voted = self._vote("preprepare", PrePrepare(self.view, plan.floor_height + 1, plan.block, self.index))
            if voted is None:
                return []
            signed, actions = voted
            preprepare = signed
        nv = self._sign_msg(NewView(self.view, chosen, preprepare, self.index))
        self.stats["new_views_sent"] += 1
        return actions + [Persist(KEY_NEW_VIEW, encode(nv)), Broadcast(nv)] + self._install_view(nv, plan, now_ms)

    def _on_new_view(self, nv: NewView, now_ms: int) -> list[Action]:
        if nv.view < self.view or (nv.view == self.view and self.active):
            self.stats["stale_new_view"] += 1
            installed = self._new_view
            if installed is not None and (installed.view, installed.sender) == (nv.view, nv.sender) and installed != nv:
                return self._evidence("newview", nv.sender, (nv.view, 0), installed, nv)
            return []
        plan = self._check_new_view(nv)
        if plan is None:
            self.stats["bad_new_view"] += 1
            return []
        actions: list[Action] = []
        for vc in nv.view_changes:
            if vc.prepared is not None:
                actions += self._embedded_equivocation(vc.prepared)
        return actions + [Persist(KEY_NEW_VIEW, encode(nv))] + self._install_view(nv, plan, now_ms)

    def _check_new_view(self, nv: NewView) -> NewViewPlan | None:
        """Verify every VIEW-CHANGE inside a NEW-VIEW and that its PRE-PREPARE is the forced one."""
        if nv.sender != self.primary(nv.view):
            return None
        senders = {vc.sender for vc in nv.view_changes}
        if len(senders) != len(nv.view_changes) or len(senders) < self.quorum:
            return None
        for vc in nv.view_changes:
            if vc.new_view != nv.view or not 0 <= vc.sender < self.config.n:
                return None
            if not self._view_change_ok(vc, signature_checked=False):
                return None
        plan = new_view_plan(self.config.chain_id, nv.view_changes)
        pp = nv.preprepare
        if plan.block is None:
            return plan if pp is None else None
        if pp is None or (pp.view, pp.height, pp.sender) != (nv.view, plan.floor_height + 1, nv.sender):
            return None
        if hash_block(pp.block) != hash_block(plan.block) or not self._check_signature(pp):
            return None
        return plan

    def _install_view(self, nv: NewView, plan: NewViewPlan, now_ms: int) -> list[Action]:
        self.view = nv.view
        self.active = True
        self.deadline_ms = None
        self._new_view = nv
        self._slot = None
        self._prepares.clear()
        self._outbox.clear()
        self._view_floor = plan.floor_height
        self._view_changes = {s: vc for s, vc in self._view_changes.items() if vc.new_view > nv.view}
        self._set_forced(nv.preprepare)
        self._watched = dict.fromkeys(self._watched, now_ms)
        self.stats["views_installed"] += 1
        actions: list[Action] = [Persist(KEY_VIEW, self._view_record()), ViewChanged(nv.view)]
        if plan.floor_cert is not None:
            actions += self._learn_final(plan.floor_cert, now_ms)
        pp = nv.preprepare
        if pp is not None and pp.height <= self.committed_height:
            actions += self._help_reproposal(pp)
        actions += self._take_forced(now_ms)
        self._arm_timer(now_ms)
        return actions

    def _set_forced(self, pp: PrePrepare | None) -> None:
        self._forced = pp
        self._justified = None if pp is None else (pp.view, pp.height, hash_block(pp.block))

    # ------------------------------------------------------------------ restart

    def _restore(self, persisted: PersistedState) -> None:
        """Rebuild from what we persisted. Our own records are trusted: a corrupt one crashes loudly."""
        if KEY_VIEW in persisted:
            view, active, attempts = codec.decode(persisted[KEY_VIEW], max_bytes=64)
            self.view, self.active, self.attempts = int(view), bool(active), int(attempts)
        for kind in ("preprepare", "prepare", "commit"):
            record = persisted.get(KEY_SIGNED + kind.encode())
            if record is not None:
                view, height, block_hash = codec.decode(record, max_bytes=128)
                self._signed[kind] = (view, height, block_hash)
        if KEY_CERT in persisted:
            cert = CommitCertificate.decode(persisted[KEY_CERT])
            if cert.height > self._final_height():
                self._known_cert = cert
            if cert.height == self.committed_height:
                self._head_cert = cert
        if KEY_PREPARED in persisted:
            prepared = decode_prepared(persisted[KEY_PREPARED])
            if prepared.preprepare.height > self.committed_height:
                self._prepared = prepared
                block = prepared.preprepare.block
                self._remember_candidate(hash_block(block), block)
        if KEY_STABLE in persisted:
            height, block_hash = codec.decode(persisted[KEY_STABLE], max_bytes=128)
            self._stable = (height, block_hash)
        if KEY_CHECKPOINT in persisted:
            checkpoint = decode(persisted[KEY_CHECKPOINT])
            assert isinstance(checkpoint, Checkpoint)
            self._my_checkpoint = checkpoint
        self._restore_view_messages(persisted)

    def _restore_view_messages(self, persisted: PersistedState) -> None:
        """The view records may lag behind the messages (a crash can cut an action list between two
        Persists): a persisted NEW-VIEW for our view or above means we installed it, and a persisted
        VIEW-CHANGE above our view means we were moving to that view; it is re-sent exactly as signed."""
        if KEY_NEW_VIEW in persisted:
            nv = decode(persisted[KEY_NEW_VIEW])
            assert isinstance(nv, NewView)
            if nv.view >= self.view:
                self.view, self.active = nv.view, True
                plan = new_view_plan(self.config.chain_id, nv.view_changes)
                self._new_view = nv
                self._view_floor = plan.floor_height
                self._set_forced(nv.preprepare)
        if KEY_VIEW_CHANGE in persisted:
            vc = decode(persisted[KEY_VIEW_CHANGE])
            assert isinstance(vc, ViewChange), vc
            if vc.new_view > self.view or (vc.new_view == self.view and not self.active):
                self.view, self.active = vc.new_view, False
                self._my_view_change = vc
                self._view_changes[self.index] = vc


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

_REPLAY_ORDER: dict[type, int] = {PrePrepare: 0, Prepare: 1, Commit: 2}

