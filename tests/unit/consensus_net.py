"""A hand-driven PBFT network for attack tests: replicas executed the way the daemon executes actions.

The daemon writes every `Persist` of an action list in one synced batch, then runs the other actions in
order; a crash can cut the list anywhere after that batch. `Net.execute` does the same, and
`Net.crash_after_persist` cuts a list right after its batch. Validation is asynchronous as in the daemon:
`ValidateBlock` is queued until the test answers it (`validate`), unless `auto_validate` is set. Messages
are queued per destination and delivered only when the test says so, so a test controls every step.
Replicas listed in `byzantine` are not run: the test signs their messages with their real keys (`sign`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from consensus import messages as m
from consensus.block import Block, CommitCertificate
from consensus.replica import (
    Action,
    Broadcast,
    Deliver,
    Persist,
    RecordEvidence,
    Replica,
    ReplicaConfig,
    Send,
    ValidateBlock,
    ViewChanged,
)

CHAIN = hashlib.sha256(b"attack-tests").digest()


def signer(index: int) -> Callable[[bytes], bytes]:
    key = hashlib.sha256(b"attack" + bytes([index])).digest()
    return lambda data: hashlib.blake2b(data, key=key, digest_size=16).digest()


class Net:
    """N replicas (the Byzantine ones driven by hand), per-destination queues, a manual clock."""

    def __init__(self, n: int = 4, f: int = 1, byzantine: Iterable[int] = (), auto_validate: bool = True,
                 **cfg: int) -> None:
        self.config = ReplicaConfig(CHAIN, n, f, **{"view_timeout_ms": 100, "checkpoint_interval": 2,
                                                    "window": 4, **cfg})
        self.n = n
        self.byzantine = set(byzantine)
        self.auto_validate = auto_validate
        self.verify_calls = 0
        self.persisted: list[dict[bytes, bytes]] = [{} for _ in range(n)]
        self.ledgers: list[list[tuple[Block, CommitCertificate]]] = [[] for _ in range(n)]
        self.inbox: list[list[m.Message]] = [[] for _ in range(n)]
        self.pending_validation: list[list[Block]] = [[] for _ in range(n)]
        self.evidence: list[list[RecordEvidence]] = [[] for _ in range(n)]
        self.views: list[list[int]] = [[] for _ in range(n)]
        self.now = 0
        self.replicas = [self._new_replica(i) for i in range(n)]

    # ------------------------------------------------------------------ keys

    def verify(self, index: int, data: bytes, sig: bytes) -> bool:
        self.verify_calls += 1
        return 0 <= index < self.n and signer(index)(data) == sig

    def sign(self, msg):
        """`msg` signed with its sender's real key (how a Byzantine replica signs)."""
        return replace(msg, signature=signer(msg.sender)(m.signing_bytes(CHAIN, msg)))

    def _new_replica(self, i: int) -> Replica:
        ledger = self.ledgers[i]
        head = (len(ledger), ledger[-1][1].block_hash) if ledger else None
        return Replica(self.config, i, signer(i), self.verify, persisted=dict(self.persisted[i]), committed=head,
                       committed_cert=ledger[-1][1] if ledger else None)

    # ------------------------------------------------------------------ executing actions

    def execute(self, i: int, actions: list[Action], *, crash_after_persist: bool = False) -> None:
        """Persist the whole batch, then (unless crashing) run the rest in order."""
        for action in actions:
            if isinstance(action, Persist):
                self.persisted[i][action.key] = action.value
        if crash_after_persist:
            self.restart(i)
            return
        for action in actions:
            self._run(i, action)

    def _run(self, i: int, action: Action) -> None:
        if isinstance(action, Broadcast):
            for j in range(self.n):
                if j != i:
                    self.inbox[j].append(action.msg)
        elif isinstance(action, Send):
            self.inbox[action.to].append(action.msg)
        elif isinstance(action, ValidateBlock):
            if self.auto_validate:
                self.execute(i, self.replicas[i].block_validated(action.block.hash(), True, self.now))
            else:
                self.pending_validation[i].append(action.block)
        elif isinstance(action, Deliver):
            self.ledgers[i].append((action.block, action.cert))
        elif isinstance(action, RecordEvidence):
            self.evidence[i].append(action)
        elif isinstance(action, ViewChanged):
            self.views[i].append(action.view)

    def restart(self, i: int) -> None:
        """The process dies (queued validations and unread messages are lost) and restarts from disk."""
        self.pending_validation[i].clear()
        self.inbox[i].clear()
        self.replicas[i] = self._new_replica(i)
        self.execute(i, self.replicas[i].tick(self.now))

    def validate(self, i: int) -> None:
        """Answer replica i's queued validations (all valid)."""
        blocks, self.pending_validation[i] = self.pending_validation[i], []
        for block in blocks:
            self.execute(i, self.replicas[i].block_validated(block.hash(), True, self.now))

    # ------------------------------------------------------------------ network

    def to(self, i: int, msg: m.Message) -> None:
        """Hand replica i a message now (e.g. one a Byzantine replica signed)."""
        self.execute(i, self.replicas[i].receive(msg, self.now))

    def deliver(self, only: Callable[[int, m.Message], bool] = lambda to, msg: True, rounds: int = 50) -> None:
        """Deliver queued messages to honest replicas until quiet; `only` filters (others are dropped)."""
        for _ in range(rounds):
            moved = False
            for i in range(self.n):
                msgs, self.inbox[i] = self.inbox[i], []
                for msg in msgs:
                    if i in self.byzantine or not only(i, msg):
                        continue
                    moved = True
                    self.to(i, msg)
            if not moved:
                return

    def tick(self, ms: int, step: int = 10) -> None:
        for _ in range(ms // step):
            self.now += step
            for i in self.honest:
                self.execute(i, self.replicas[i].tick(self.now))
            self.deliver()

    @property
    def honest(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.byzantine]

    def propose(self, i: int, *txs: bytes) -> m.PrePrepare:
        actions = self.replicas[i].propose(tuple(txs), self.now)
        pp = next(a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.PrePrepare))
        self.execute(i, actions)
        return pp

    def fork(self) -> list[str]:
        """Heights at which two honest ledgers hold different blocks."""
        out = []
        for height in range(1, max(len(self.ledgers[i]) for i in self.honest) + 1):
            hashes = {self.ledgers[i][height - 1][0].hash() for i in self.honest if len(self.ledgers[i]) >= height}
            if len(hashes) > 1:
                out.append(f"fork at height {height}")
        return out

    def catch_up(self, i: int, source: int) -> None:
        """Replica i fetches source's ledger (the daemon's FetchBlocks path)."""
        for block, cert in self.ledgers[source][len(self.ledgers[i]):]:
            self.execute(i, self.replicas[i].add_committed(block, cert, self.now))


def view_1_installed() -> Net:
    """Replica 0 is down; 1, 2 and 3 give up view 0 and install view 1 (its primary is 1)."""
    net = Net(byzantine={0})
    for i in net.honest:
        net.execute(i, net.replicas[i].note_pending(net.now))
    net.tick(200)
    assert all(net.replicas[i].view == 1 and net.replicas[i].active for i in net.honest)
    return net


def state_entries(replica: Replica) -> int:
    """Everything a replica holds in containers, counted generically (independent of its own accounting):
    the length of every dict, list, set or tuple attribute, and of containers one level inside them. The
    stats Counter is left out: its keys are a fixed set of names."""
    total = 0
    for value in vars(replica).values():
        if isinstance(value, Counter):
            continue
        if isinstance(value, (dict, list, set, tuple)):
            total += len(value)
            inner = value.values() if isinstance(value, dict) else value
            total += sum(len(v) for v in inner if isinstance(v, (dict, list, set)))
    return total
