"""The PBFT replica on a perfect in-memory network: normal case, action order, restarts, view change."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from consensus import messages as m
from consensus.block import Block, verify_certificate
from consensus.replica import (
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

CHAIN = hashlib.sha256(b"replica-tests").digest()


def signer(index: int):
    key = hashlib.sha256(bytes([index])).digest()
    return lambda data: hashlib.blake2b(data, key=key, digest_size=16).digest()


def verify(index: int, data: bytes, sig: bytes) -> bool:
    return signer(index)(data) == sig


class Cluster:
    """N replicas wired by an instant, reliable network; validation answered immediately with `valid`."""

    def __init__(self, n: int = 4, f: int = 1, **cfg) -> None:
        self.config = ReplicaConfig(CHAIN, n, f, **{"view_timeout_ms": 100, "checkpoint_interval": 2,
                                                    "window": 4, **cfg})
        self.persisted: list[dict[bytes, bytes]] = [{} for _ in range(n)]
        self.ledgers: list[list[tuple[Block, object]]] = [[] for _ in range(n)]
        self.replicas = [Replica(self.config, i, signer(i), verify) for i in range(n)]
        self.down: set[int] = set()
        self.valid = True
        self.queue: list[tuple[int, object]] = []
        self.drop = lambda to, msg: False
        self.log: list[tuple[int, object]] = []
        self.now = 0

    def run(self, index: int, actions) -> None:
        for action in actions:
            self.log.append((index, action))
            if isinstance(action, Persist):
                self.persisted[index][action.key] = action.value
            elif isinstance(action, Broadcast):
                self.queue += [(j, action.msg) for j in range(len(self.replicas)) if j != index]
            elif isinstance(action, Send):
                self.queue.append((action.to, action.msg))
            elif isinstance(action, ValidateBlock):
                self.run(index, self.replicas[index].block_validated(action.block.hash(), self.valid, self.now))
            elif isinstance(action, Deliver):
                self.ledgers[index].append((action.block, action.cert))

    def settle(self) -> None:
        while self.queue:
            to, msg = self.queue.pop(0)
            if to not in self.down and not self.drop(to, msg):
                self.run(to, self.replicas[to].receive(msg, self.now))

    def propose(self, *txs: bytes) -> None:
        primary = next(i for i, r in enumerate(self.replicas) if r.is_primary and i not in self.down)
        self.run(primary, self.replicas[primary].propose(tuple(txs), self.now))
        self.settle()

    def advance(self, ms: int) -> None:
        for _ in range(ms // 10):
            self.now += 10
            for i, r in enumerate(self.replicas):
                if i not in self.down:
                    self.run(i, r.tick(self.now))
            self.settle()

    def restart(self, i: int) -> None:
        ledger = self.ledgers[i]
        head = (len(ledger), ledger[-1][1].block_hash) if ledger else None
        self.replicas[i] = Replica(self.config, i, signer(i), verify, persisted=dict(self.persisted[i]),
                                   committed=head)


def test_normal_case_commits_in_order_with_verifiable_certificates() -> None:
    c = Cluster()
    for k in range(5):
        c.propose(b"tx%d" % k)
    for ledger in c.ledgers:
        assert [b.height for b, _ in ledger] == [1, 2, 3, 4, 5]
        assert [b.hash() for b, _ in ledger] == [b.hash() for b, _ in c.ledgers[0]]
        for block, cert in ledger:
            verify_certificate(CHAIN, block, cert, n=4, quorum=3, verify=verify)
    assert all(r.committed_height == 5 for r in c.replicas)
    assert all(r.stable_checkpoint[0] == 4 for r in c.replicas), "checkpoints every 2 become stable"


def test_everything_signed_is_persisted_before_it_is_sent() -> None:
    c = Cluster()
    c.propose(b"a")
    c.propose(b"b")
    for index in range(4):
        actions = [a for i, a in c.log if i == index]
        for pos, action in enumerate(actions):
            if isinstance(action, Broadcast) and not isinstance(action.msg, m.Checkpoint):
                msg = action.msg
                earlier = [a.key for a in actions[:pos] if isinstance(a, Persist)]
                kind = {m.PrePrepare: b"preprepare", m.Prepare: b"prepare", m.Commit: b"commit"}[type(msg)]
                assert b"pbft/signed/" + kind in earlier, (index, msg)


def test_no_prepare_before_the_application_validates() -> None:
    c = Cluster()
    pp_actions = c.replicas[0].propose((b"x",), 0)
    pp = next(a.msg for a in pp_actions if isinstance(a, Broadcast))
    backup = c.replicas[1]
    actions = backup.receive(pp, 0)
    assert any(isinstance(a, ValidateBlock) for a in actions)
    assert not any(isinstance(a, Broadcast) for a in actions), "no PREPARE until validated"
    assert backup.block_validated(pp.block.hash(), False, 0) == []
    assert backup.stats["invalid_block"] == 1


def test_invalid_block_is_never_committed_and_triggers_a_view_change() -> None:
    c = Cluster()
    c.valid = False
    c.propose(b"bad")
    assert all(not ledger for ledger in c.ledgers)
    c.valid = True
    c.advance(150)
    assert all(r.view == 1 and r.active for r in c.replicas)
    c.propose(b"good")
    assert all([b.txs for b, _ in ledger] == [(b"good",)] for ledger in c.ledgers)


def test_bad_signatures_are_dropped_and_counted() -> None:
    c = Cluster()
    block = Block(CHAIN, 1, CHAIN, 0, 0, (b"evil",))
    forged = m.PrePrepare(0, 1, block, 0, b"\0" * 16)
    assert c.replicas[1].receive(forged, 0) == []
    assert c.replicas[1].stats["bad_signature"] == 1
    impersonated = replace(forged, signature=signer(3)(m.signing_bytes(CHAIN, forged)))
    assert c.replicas[1].receive(impersonated, 0) == []
    assert c.replicas[1].stats["bad_signature"] == 2


def test_equivocating_primary_is_recorded_as_evidence() -> None:
    c = Cluster()
    a = Block(CHAIN, 1, CHAIN, 0, 0, (b"a",))
    b = Block(CHAIN, 1, CHAIN, 0, 0, (b"b",))
    pa, pb = (replace(p, signature=signer(0)(m.signing_bytes(CHAIN, p)))
              for p in (m.PrePrepare(0, 1, a, 0), m.PrePrepare(0, 1, b, 0)))
    backup = c.replicas[2]
    backup.receive(pa, 0)
    evidence = [x for x in backup.receive(pb, 0) if isinstance(x, RecordEvidence)]
    assert len(evidence) == 1 and evidence[0].kind == "preprepare"
    first, second = m.codec.decode(evidence[0].data, max_bytes=1 << 20)
    assert {m.decode(first), m.decode(second)} == {pa, pb}


def test_view_change_after_primary_dies_keeps_heights_and_timers_double() -> None:
    c = Cluster()
    c.propose(b"one")
    c.down.add(0)
    for i in (1, 2, 3):
        c.replicas[i].note_pending(c.now)
    c.advance(150)
    assert all(c.replicas[i].view == 1 and c.replicas[i].active for i in (1, 2, 3))
    assert any(isinstance(a, ViewChanged) for _, a in c.log)
    c.propose(b"two")
    for i in (1, 2, 3):
        assert [blk.height for blk, _ in c.ledgers[i]] == [1, 2], "sequence numbers continue after a view change"
    assert c.replicas[1].timeout_ms() == 100, "a commit resets the timeout"


def test_timeouts_double_while_no_view_succeeds() -> None:
    c = Cluster()
    c.down.update({0, 1})
    r = c.replicas[2]
    r.note_pending(0)
    c.replicas[3].note_pending(0)
    c.advance(100)
    assert r.view == 1 and not r.active
    assert r.timeout_ms() == 200
    assert r.deadline_ms is None, "no quorum of VIEW-CHANGEs yet: the timer waits, the view does not race"


def test_commits_from_many_views_are_bounded_per_sender() -> None:
    c = Cluster()
    backup = c.replicas[1]
    for view in range(50):
        commit = m.Commit(view, 1, bytes([view]) * 32, 3)
        backup.receive(replace(commit, signature=signer(3)(m.signing_bytes(CHAIN, commit))), 0)
    assert backup.stats["commit_views_exceeded"] == 46
    assert sum(len(v) for v in backup._commits.values()) == 4


def test_a_lagging_replica_learns_the_head_certificate_from_a_helper() -> None:
    c = Cluster()
    c.drop = lambda to, msg: to == 3 and isinstance(msg, m.Commit)
    c.propose(b"a")
    assert c.replicas[3].committed_height == 0 and c.replicas[1].committed_height == 1
    c.drop = lambda to, msg: False
    c.run(3, c.replicas[3].note_pending(c.now))
    c.advance(300)
    assert c.replicas[3].committed_height == 1, "COMMITs of the head certificate deliver the held block"
    assert [b.hash() for b, _ in c.ledgers[3]] == [b.hash() for b, _ in c.ledgers[0]]


def test_a_replica_that_missed_the_new_view_is_sent_it() -> None:
    c = Cluster()
    c.down.add(0)
    for i in (1, 2, 3):
        c.replicas[i].note_pending(0)
    c.drop = lambda to, msg: to == 3
    c.advance(150)
    assert c.replicas[1].view == 1 and c.replicas[1].active and c.replicas[3].view == 1 and not c.replicas[3].active
    c.drop = lambda to, msg: False
    c.advance(100)
    assert c.replicas[3].view == 1 and c.replicas[3].active
