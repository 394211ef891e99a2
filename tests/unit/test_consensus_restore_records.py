"""What each persisted record gives back to a restarted replica (consensus/restore.py): its signed votes,
the certificate of a block it persisted but never applied, its head certificate, the view it installed with
the NEW-VIEW that installed it, and the VIEW-CHANGE it was waiting on."""

from __future__ import annotations

from consensus_net import CHAIN, Net, signer, view_1_installed

from consensus import messages as m
from consensus.actions import KEY_NEW_VIEW, KEY_VIEW_CHANGE
from consensus.block import Block
from consensus.replica import Deliver, FetchBlocks, Replica, Send


def test_a_restarted_primary_does_not_propose_a_second_block_for_its_slot() -> None:
    net = Net()
    net.propose(0, b"a")
    net.restart(0)
    assert not net.replicas[0].ready_to_propose
    assert net.replicas[0].propose((b"b",), net.now) == []


def test_a_restarted_replica_never_signs_a_second_commit_for_one_slot() -> None:
    """Everybody else is Byzantine here: only the persisted record of its COMMIT stops replica 1."""
    net = Net(byzantine={0, 2, 3})
    blocks = [Block(CHAIN, 1, CHAIN, 0, 0, (tx,)) for tx in (b"a", b"b")]
    for block in blocks:
        if block is blocks[1]:
            net.restart(1)
        net.to(1, net.sign(m.PrePrepare(0, 1, block, 0)))
        for sender in (2, 3):
            net.to(1, net.sign(m.Prepare(0, 1, block.hash(), sender)))
    assert [msg.block_hash for msg in net.inbox[0] if isinstance(msg, m.Commit)] == [blocks[0].hash()]
    assert net.replicas[1].stats["refused_conflicting_commit"] == 1


def test_a_crash_after_persisting_a_certificate_before_applying_its_block_ends_in_a_fetch() -> None:
    """The Persist of the certificate is synced with its batch; the Deliver after it is lost in the crash."""
    net = Net()
    net.propose(0, b"a")
    crashed = False
    while not crashed:
        for i in range(net.n):
            msgs, net.inbox[i] = net.inbox[i], []
            for msg in msgs:
                actions = net.replicas[i].receive(msg, net.now)
                crash = not crashed and i == 3 and any(isinstance(a, Deliver) for a in actions)
                net.execute(i, actions, crash_after_persist=crash)
                crashed = crashed or crash
    restarted = net.replicas[3]
    assert restarted.committed_height == 0 and not net.ledgers[3]
    actions = restarted.tick(net.now + net.config.view_timeout_ms)
    assert [a for a in actions if isinstance(a, FetchBlocks)] == [FetchBlocks(1, 0)]


def test_a_replica_restarted_without_its_head_certificate_restores_it_to_help_a_lagging_peer() -> None:
    net = Net()
    net.propose(0, b"a")
    net.deliver(only=lambda to, msg: not (to == 3 and isinstance(msg, m.Commit)))
    assert net.replicas[3].committed_height == 0
    block, head = net.ledgers[1][0]
    restarted = Replica(net.config, 1, signer(1), net.verify, persisted=dict(net.persisted[1]),
                        committed=(1, head.block_hash))
    actions = restarted.receive(net.sign(m.Prepare(0, 1, block.hash(), 3)), net.now)
    assert actions == [Send(3, m.Commit(head.view, 1, head.block_hash, s, sig)) for s, sig in head.signatures if s != 3]


def test_a_replica_restarted_after_a_view_change_runs_the_view_and_forwards_its_new_view() -> None:
    net = view_1_installed()
    net.restart(2)
    restarted = net.replicas[2]
    assert restarted.view == 1 and restarted.active
    asking = restarted.receive(net.sign(m.ViewChange(1, None, None, 3)), net.now)
    assert asking == [Send(3, m.decode(net.persisted[2][KEY_NEW_VIEW]))]


def test_a_primary_restarted_while_waiting_resends_its_view_change_and_counts_it_in_the_new_view() -> None:
    net = Net(byzantine={0, 2, 3})
    net.execute(1, net.replicas[1].note_pending(net.now))
    net.tick(100)
    own = m.decode(net.persisted[1][KEY_VIEW_CHANGE])
    assert own.new_view == 1 and not net.replicas[1].active
    net.inbox[2].clear()
    net.restart(1)
    assert net.inbox[2] == [own], "re-sent exactly as signed"
    for sender in (2, 3):
        net.to(1, net.sign(m.ViewChange(1, None, None, sender)))
    assert net.replicas[1].view == 1 and net.replicas[1].active
    assert m.decode(net.persisted[1][KEY_NEW_VIEW]).view_changes[0] == own
