"""Checkpoints and watermarks (consensus/checkpoints.py): stability, the window, proofs, floods."""

from __future__ import annotations

import hashlib

from consensus_net import Net, state_entries
from test_consensus_replica import Cluster

from consensus import messages as m
from consensus.replica import Send


def test_primary_stops_at_the_high_watermark_until_a_checkpoint_is_stable() -> None:
    c = Cluster(checkpoint_interval=2, window=4)
    c.drop = lambda to, msg: isinstance(msg, m.Checkpoint)
    for k in range(6):
        c.propose(b"w%d" % k)
    assert all(r.committed_height == 4 for r in c.replicas), "window 4 above stable checkpoint 0"
    assert not c.replicas[0].ready_to_propose
    c.drop = lambda to, msg: False
    c.advance(60)
    assert c.replicas[0].stable_checkpoint[0] == 4 and c.replicas[0].ready_to_propose


def test_a_replica_that_missed_the_stable_checkpoint_gets_its_proof() -> None:
    c = Cluster(checkpoint_interval=2, window=4)
    c.drop = lambda to, msg: isinstance(msg, m.Checkpoint) and to == 3
    c.propose(b"a")
    c.propose(b"b")
    assert c.replicas[0].stable_checkpoint[0] == 2 and c.replicas[3].stable_checkpoint[0] == 0
    c.drop = lambda to, msg: False
    c.advance(60)
    assert c.replicas[3].stable_checkpoint[0] == 2




def test_votes_above_the_window_are_not_held_but_count_as_a_height_claim() -> None:
    net = Net(byzantine={3})
    before = state_entries(net.replicas[0])
    for k in range(500):
        net.to(0, net.sign(m.Checkpoint(10 + 2 * k, hashlib.sha256(b"%d" % k).digest(), 3)))
    assert state_entries(net.replicas[0]) - before <= 3
    assert net.replicas[0].stats["checkpoint_above_window"] == 500
    assert net.replicas[0]._ahead[3] == 10 + 2 * 499


def test_a_conflicting_checkpoint_is_evidence_once_and_the_first_vote_stands() -> None:
    net = Net(byzantine={3})
    net.propose(0, b"a")
    net.deliver(only=lambda to, msg: not isinstance(msg, m.Checkpoint))
    net.propose(0, b"b")
    net.deliver(only=lambda to, msg: not isinstance(msg, m.Checkpoint))
    for k in range(5):
        net.to(0, net.sign(m.Checkpoint(2, bytes([k]) * 32, 3)))
    assert [e.kind for e in net.evidence[0]] == ["checkpoint"]
    assert net.replicas[0].stable_checkpoint[0] == 0, "one bogus vote plus our own is no quorum"


def test_the_stable_proof_is_sent_a_bounded_number_of_times() -> None:
    net = Net()
    net.propose(0, b"a")
    net.deliver()
    net.propose(0, b"b")
    net.deliver()
    assert net.replicas[0].stable_checkpoint[0] == 2
    old = net.replicas[3]._my_checkpoint
    sends = 0
    for _ in range(10):
        net.now += 100
        sends += sum(isinstance(a, Send) for a in net.replicas[0].receive(old, net.now))
    assert 0 < sends <= 3 * 2, "MAX_PROOF_SENDS times the q-1 checkpoints of others"
