"""Checkpoint behaviour the mutation run of consensus/checkpoints.py showed unasserted: what survives a
restart, a quorum completed by our own checkpoint, the window's edge, catch-up from checkpoints, evidence
per sender, what is collected, and exactly how often (and to whom) a stable proof is sent."""

from __future__ import annotations

import hashlib

from consensus_net import Net

from consensus import codec
from consensus import messages as m
from consensus.actions import MAX_PROOF_SENDS
from consensus.replica import FetchBlocks, Send


def commit_heights(net: Net, *txs: bytes, only=lambda to, msg: True) -> None:
    """Replica 0 (the primary of view 0) proposes one block per tx; each is delivered before the next."""
    for tx in txs:
        net.propose(0, tx)
        net.deliver(only=only)


def proof_sends(actions: list) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.msg, m.Checkpoint)]


def test_a_restarted_replica_keeps_its_stable_checkpoint() -> None:
    net = Net()
    commit_heights(net, b"a", b"b")
    stable = net.replicas[1].stable_checkpoint
    assert stable[0] == 2
    net.restart(1)
    assert net.replicas[1].stable_checkpoint == stable
    assert net.replicas[1].high_watermark == 2 + net.config.window
    assert not net.replicas[1]._checkpoint_votes, "its own checkpoint, at the stable height, is no vote to hold"


def test_replicas_restarted_before_any_checkpoint_arrived_resend_their_own_and_agree() -> None:
    net = Net()
    commit_heights(net, b"a", b"b", only=lambda to, msg: not isinstance(msg, m.Checkpoint))
    assert all(r.stable_checkpoint[0] == 0 and r.committed_height == 2 for r in net.replicas)
    for i in range(net.n):
        net.restart(i)
    net.tick(200)
    assert {r.stable_checkpoint for r in net.replicas} == {(2, net.ledgers[0][-1][1].block_hash)}


def test_our_own_checkpoint_completing_the_quorum_makes_it_stable_at_once() -> None:
    net = Net()
    commit_heights(net, b"a")
    held: list[m.Message] = []

    def hold_commits_to_3(to: int, msg: m.Message) -> bool:
        """3 gets no COMMIT for height 2 (held) and the CHECKPOINTs of 0 and 1 only."""
        if to == 3 and isinstance(msg, m.Commit):
            held.append(msg)
        return not (to == 3 and (isinstance(msg, m.Commit) or isinstance(msg, m.Checkpoint) and msg.sender == 2))

    commit_heights(net, b"b", only=hold_commits_to_3)
    assert net.replicas[0].stable_checkpoint[0] == 2
    assert net.replicas[3].committed_height == 1 and net.replicas[3].stable_checkpoint[0] == 0
    for msg in held:
        net.to(3, msg)
    assert net.replicas[3].committed_height == 2
    assert net.replicas[3].stable_checkpoint == net.replicas[0].stable_checkpoint, "before anything more arrives"


def test_an_old_checkpoint_from_a_peer_behind_us_gets_our_head_certificate() -> None:
    net = Net()
    commit_heights(net, b"a", b"b")
    commit_heights(net, b"c", only=lambda to, msg: to != 3)
    assert net.replicas[0].committed_height == 3 and net.replicas[3].committed_height == 2
    net.now += 1000
    actions = net.replicas[0].receive(net.replicas[3]._my_checkpoint, net.now)
    commits = [a.msg for a in actions if isinstance(a, Send) and isinstance(a.msg, m.Commit)]
    assert commits and all(a.height == 3 for a in commits)


def test_votes_exactly_at_the_window_edge_are_held_and_one_interval_above_is_not() -> None:
    net = Net()
    edge = net.config.window
    block_hash = hashlib.sha256(b"edge").digest()
    for sender in (1, 2, 3):
        net.to(0, net.sign(m.Checkpoint(edge + net.config.checkpoint_interval, block_hash, sender)))
    assert net.replicas[0].stats["checkpoint_above_window"] == 3
    for sender in (1, 2, 3):
        net.to(0, net.sign(m.Checkpoint(edge, block_hash, sender)))
    assert net.replicas[0].stable_checkpoint == (edge, block_hash)
    assert net.replicas[0].stats["checkpoint_above_window"] == 3


def test_checkpoints_above_the_window_from_f_plus_1_peers_start_a_fetch() -> None:
    net = Net()
    block_hash = hashlib.sha256(b"far").digest()
    first = net.replicas[0].receive(net.sign(m.Checkpoint(10, block_hash, 1)), net.now)
    assert not any(isinstance(a, FetchBlocks) for a in first), "one peer's claim may be a lie"
    second = net.replicas[0].receive(net.sign(m.Checkpoint(10, block_hash, 2)), net.now)
    assert [a for a in second if isinstance(a, FetchBlocks)] == [FetchBlocks(1, 1)]


def test_conflicting_checkpoints_of_two_senders_are_two_evidence_records() -> None:
    net = Net(n=7, f=2, byzantine={5, 6})
    for sender in (5, 6):
        for k in range(2):
            net.to(0, net.sign(m.Checkpoint(2, bytes([k]) * 32, sender)))
    assert [e.kind for e in net.evidence[0]] == ["checkpoint", "checkpoint"]
    senders = [{m.decode(raw).sender for raw in codec.decode(e.data, max_bytes=4096)} for e in net.evidence[0]]
    assert senders == [{5}, {6}]


def test_each_stable_checkpoint_is_counted_and_its_votes_collected() -> None:
    net = Net()
    commit_heights(net, b"a", b"b")
    assert net.replicas[0].stats["stable_checkpoints"] == 1
    assert all(height > 2 for height in net.replicas[0]._checkpoint_votes)
    commit_heights(net, b"c", b"d")
    assert [r.stable_checkpoint[0] for r in net.replicas] == [4] * 4
    assert all(r.stats["stable_checkpoints"] == 2 for r in net.replicas)
    assert all(not r._checkpoint_votes for r in net.replicas), "every vote was at or below 4"


def test_the_stable_proof_goes_exactly_max_times_per_peer_and_again_for_the_next_stable_checkpoint() -> None:
    net = Net()
    commit_heights(net, b"a", b"b", only=lambda to, msg: not (isinstance(msg, m.Checkpoint) and msg.sender == 3))
    old = net.replicas[3]._my_checkpoint
    answered = 0
    for _ in range(2 * MAX_PROOF_SENDS):
        net.now += 1000
        answered += bool(proof_sends(net.replicas[0].receive(old, net.now)))
    assert answered == MAX_PROOF_SENDS
    commit_heights(net, b"c", b"d")
    assert net.replicas[0].stable_checkpoint[0] == 4
    net.now += 1000
    sends = proof_sends(net.replicas[0].receive(old, net.now))
    assert sends and all(s.to == 3 and s.msg.height == 4 for s in sends)


def test_two_peers_that_missed_the_stable_checkpoint_are_both_answered_at_once() -> None:
    net = Net()
    commit_heights(net, b"a", b"b")
    net.now += 1000
    for peer in (2, 3):
        sends = proof_sends(net.replicas[0].receive(net.replicas[peer]._my_checkpoint, net.now))
        assert sends and all(s.to == peer for s in sends), peer
