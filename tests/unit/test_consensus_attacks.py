"""Attacks by one Byzantine member with valid keys (issue 13), run against the pure core.

Replicas are driven the way the daemon drives them (consensus_net: one synced Persist batch per action
list, asynchronous validation, crashes that lose what was not persisted). N=4, f=1, quorum 3.
"""

from __future__ import annotations

import hashlib

from consensus_net import CHAIN, Net, state_entries

from consensus import messages as m
from consensus.block import Block, CommitCertificate
from consensus.replica import MAX_COMMIT_VIEWS_PER_SENDER, MAX_EVIDENCE_PER_SENDER, Broadcast, ValidateBlock

BYZ = 1


def byz(net: Net, msg, *to: int) -> None:
    """Byzantine replica BYZ signs `msg` with its real key and hands it to the replicas `to`."""
    signed = net.sign(msg)
    for i in to:
        net.to(i, signed)


def commit_height_1_without_replica_3(net: Net) -> None:
    """Height 1 commits at 0 and 2 (with BYZ's votes); replica 3 hears nothing of it."""
    pp = net.propose(0, b"h1")
    h = pp.block.hash()
    byz(net, m.Prepare(0, 1, h, BYZ), 0, 2)
    net.deliver(only=lambda to, msg: to != 3)
    byz(net, m.Commit(0, 1, h, BYZ), 0, 2)
    net.deliver(only=lambda to, msg: to != 3)
    net.inbox[3].clear()
    assert [len(net.ledgers[i]) for i in (0, 2, 3)] == [1, 1, 0]


def fork_setup() -> tuple[Net, Block, m.NewView]:
    """Block B commits at height 2 on replica 0 only; replicas 2 and 3 move to view 1, whose Byzantine
    primary sends the correct NEW-VIEW forcing B. Returns the net (2's validation of B pending)."""
    net = Net(byzantine={BYZ})
    commit_height_1_without_replica_3(net)
    pp = net.propose(0, b"B")
    block_b = pp.block
    byz(net, m.Prepare(0, 2, block_b.hash(), BYZ), 0, 2)
    net.deliver(only=lambda to, msg: to == 0 or (to == 2 and not isinstance(msg, m.Commit)))
    byz(net, m.Commit(0, 2, block_b.hash(), BYZ), 0)
    assert [len(ledger) for ledger in net.ledgers] == [2, 0, 1, 0], "B final at replica 0 only"
    for inbox in net.inbox:
        inbox.clear()
    net.restart(2)
    vcs = {}
    for i in (2, 3):
        net.execute(i, net.replicas[i].note_pending(net.now))
    net.now += 150
    for i in (2, 3):
        actions = net.replicas[i].tick(net.now)
        vcs[i] = next(a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.ViewChange))
        net.execute(i, actions)
    for inbox in net.inbox:
        inbox.clear()
    vcs[BYZ] = net.sign(m.ViewChange(1, net.ledgers[0][0][1], None, BYZ))
    forced = net.sign(m.PrePrepare(1, 2, block_b, BYZ))
    nv = net.sign(m.NewView(1, (vcs[BYZ], vcs[2], vcs[3]), forced, BYZ))
    net.auto_validate = False
    for i in (2, 3):
        net.to(i, nv)
    assert [b.hash() for b in net.pending_validation[2]] == [block_b.hash()]
    return net, block_b, nv


def test_finding_1_no_fork_after_new_view_restart_and_fresh_preprepare() -> None:
    net, _, _ = fork_setup()
    net.restart(2)  # killed while validating the forced block
    h1 = net.ledgers[2][0][0].hash()
    fresh = Block(CHAIN, 2, h1, 1, BYZ, (b"B-prime",))
    byz(net, m.PrePrepare(1, 2, fresh, BYZ), 2, 3)
    net.auto_validate = True
    net.validate(2)
    net.catch_up(3, 2)
    net.deliver(only=lambda to, msg: to != 0)
    byz(net, m.Commit(1, 2, fresh.hash(), BYZ), 2, 3)
    net.deliver(only=lambda to, msg: to != 0)
    assert net.fork() == []
    assert all(b.hash() != fresh.hash() for i in (2, 3) for b, _ in net.ledgers[i])


def test_finding_1_restored_replica_takes_up_the_forced_preprepare_again() -> None:
    """Liveness half of the fix: after the restart the forced block is validated again (not only the
    fresh proposal refused), so the view can still commit it."""
    net, block_b, _ = fork_setup()
    net.restart(2)
    net.tick(20)
    assert [b.hash() for b in net.pending_validation[2]] == [block_b.hash()]


def test_finding_1_future_buffer_cannot_swap_the_forced_preprepare() -> None:
    """Replica 3 lags: it buffered the NEW-VIEW's forced PRE-PREPARE. A fresh one for the same height must
    not replace it; after catching up, 3 validates B and nothing else."""
    net, block_b, _ = fork_setup()
    h1 = net.ledgers[2][0][0].hash()
    fresh = Block(CHAIN, 2, h1, 1, BYZ, (b"B-prime",))
    byz(net, m.PrePrepare(1, 2, fresh, BYZ), 3)
    net.catch_up(3, 2)
    assert [b.hash() for b in net.pending_validation[3]] == [block_b.hash()]


def test_finding_1_a_fresh_preprepare_is_refused_where_the_new_view_forced_a_block() -> None:
    net, _, _ = fork_setup()
    h1 = net.ledgers[2][0][0].hash()
    fresh = Block(CHAIN, 2, h1, 1, BYZ, (b"B-prime",))
    net.pending_validation[2].clear()
    replica = net.replicas[2]
    replica._slot = None  # even with the forced slot gone (a crash), the fresh block is refused
    actions = replica.receive(net.sign(m.PrePrepare(1, 2, fresh, BYZ)), net.now)
    assert not any(isinstance(a, ValidateBlock) for a in actions)


def test_finding_2_checkpoint_flood_does_not_halt_the_chain() -> None:
    """Between an honest replica's own checkpoint and its peers' ones, BYZ streams signed CHECKPOINTs for
    far-future heights; the real checkpoint must still become stable and the chain move past the window."""
    net = Net(byzantine={3})
    for k in range(12):
        primary = net.replicas[0].primary(net.replicas[0].view)
        if net.replicas[primary].ready_to_propose:
            net.propose(primary, b"tx%d" % k)
        net.deliver(only=lambda to, msg: not isinstance(msg, m.Checkpoint))
        for far in range(40):
            byz(net, m.Checkpoint(10_000 + 2 * (40 * k + far), bytes(32), 3), 0, 1, 2)
        net.tick(60)
    assert [len(net.ledgers[i]) for i in net.honest] == [12, 12, 12]
    assert all(state_entries(net.replicas[i]) < 200 for i in net.honest)


def test_finding_3_votes_with_many_hashes_are_bounded_and_evidenced_once() -> None:
    net = Net(byzantine={3})
    net.propose(0, b"open")  # a slot in flight at height 1, view 0
    net.deliver(only=lambda to, msg: isinstance(msg, m.PrePrepare))
    before = state_entries(net.replicas[1])
    for k in range(2000):
        digest = hashlib.sha256(b"%d" % k).digest()
        byz(net, m.Prepare(0, 1, digest, 3), 1)
        byz(net, m.Commit(k % 50, 1, digest, 3), 1)
    per_sender = 3 * (1 + 2 * MAX_COMMIT_VIEWS_PER_SENDER) + MAX_EVIDENCE_PER_SENDER + 2
    assert state_entries(net.replicas[1]) - before <= per_sender, "one vote per (sender, view, height) is kept"
    kinds = [e.kind for e in net.evidence[1]]
    assert kinds.count("prepare") == 1 and kinds.count("commit") <= MAX_COMMIT_VIEWS_PER_SENDER


def test_finding_4_censoring_primary_is_replaced_while_blocks_commit() -> None:
    """Primary 0 commits an empty block every 90 ms (view timeout 100 ms) and never includes the backups'
    transaction, which every backup watches. The request timer (2 view timeouts) fires although blocks
    commit, and view 1 is installed within 3 view timeouts of the watch; the transaction then commits."""
    net = Net()
    tx = b"censored"
    digest = hashlib.sha256(tx).digest()
    for i in (1, 2, 3):
        net.execute(i, net.replicas[i].watch_tx(digest, net.now))
    installed_at = None
    while net.now < 1000 and installed_at is None:
        if net.replicas[0].ready_to_propose:
            net.propose(0)
        net.deliver()
        net.tick(10)
        if all(net.replicas[i].view >= 1 and net.replicas[i].active for i in (1, 2, 3)):
            installed_at = net.now
    assert net.ledgers[1], "blocks were committing all along"
    assert installed_at is not None and installed_at <= 3 * net.config.view_timeout_ms, installed_at
    net.propose(1, tx)
    net.deliver()
    assert all(tx in net.ledgers[i][-1][0].txs for i in range(4))
    assert all(not net.replicas[i]._watched for i in (1, 2, 3)), "the commit ends the watch"


def test_finding_5_differing_view_changes_are_evidence_once() -> None:
    net = Net(byzantine={3})
    net.propose(0, b"a")
    net.deliver()
    cert = net.ledgers[0][0][1]
    variants = [cert, CommitCertificate(cert.height, cert.view, cert.block_hash, tuple(reversed(cert.signatures)))]
    for k in range(18):
        variant = variants[k % 2] if k % 3 else None
        byz(net, m.ViewChange(5, variant, None, 3), 0)
    assert len(net.evidence[0]) == 1


def test_finding_6_stale_messages_are_dropped_before_their_signature_is_checked() -> None:
    net = Net(byzantine={3})
    for _ in range(3):
        net.propose(0, b"x")
        net.deliver()
    net.verify_calls = 0
    block = net.ledgers[0][0][0]
    for stale in (m.Commit(0, 1, block.hash(), 3), m.Prepare(0, 1, block.hash(), 3),
                  m.PrePrepare(0, 1, block, 0, b"\0" * 16)):
        net.to(1, net.sign(stale) if stale.sender == 3 else stale)
    assert net.verify_calls == 0


def test_finding_6_a_resent_view_change_is_not_verified_again() -> None:
    net = Net(byzantine={3})
    net.propose(0, b"a")
    net.deliver()
    vc = net.sign(m.ViewChange(1, net.ledgers[0][0][1], None, 3))
    net.to(0, vc)
    net.verify_calls = 0
    for _ in range(5):
        net.to(0, vc)
    assert net.verify_calls == 0


def test_finding_6_conflicting_new_views_are_evidence() -> None:
    net, _, nv = fork_setup()
    other = net.sign(m.NewView(1, (nv.view_changes[1], nv.view_changes[0], nv.view_changes[2]), nv.preprepare, BYZ))
    net.to(3, other)
    net.to(3, other)
    assert [e.kind for e in net.evidence[3]] == ["newview"]


def test_watch_only_keeps_the_timers_of_digests_still_wanted() -> None:
    net = Net()
    replica = net.replicas[1]
    a, b, c = (hashlib.sha256(x).digest() for x in (b"a", b"b", b"c"))
    replica.watch_only([a, b], 0)
    replica.watch_only([b, c], 50)
    assert replica._watched == {b: 0, c: 50}
    replica.watch_only([], 60)
    assert replica._watched == {}


def test_a_relayed_certificate_counts_although_its_byzantine_signer_equivocated_to_us() -> None:
    """BYZ sends replica 3 a COMMIT for another block first, then signs the real one with 0 and 2. When 0
    relays its head certificate (as its quorum of COMMITs), 3 must still learn the block is final: the
    sender's second COMMIT for the slot is kept (two at most), not only evidenced."""
    net = Net(byzantine={BYZ})
    pp = net.propose(0, b"a")
    h = pp.block.hash()
    byz(net, m.Commit(0, 1, hashlib.sha256(b"other").digest(), BYZ), 3)
    byz(net, m.Prepare(0, 1, h, BYZ), 0, 2)
    net.deliver(only=lambda to, msg: to != 3)
    byz(net, m.Commit(0, 1, h, BYZ), 0, 2)
    net.deliver(only=lambda to, msg: to != 3)
    assert BYZ in {s for s, _ in net.ledgers[0][0][1].signatures}, "the certificate needs the Byzantine COMMIT"
    net.execute(0, net.replicas[0]._help_peer(3, 0, net.now))
    net.deliver()
    assert net.replicas[3]._final_height() == 1
