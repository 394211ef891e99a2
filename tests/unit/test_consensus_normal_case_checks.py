"""The normal case's filters one at a time: each refused PRE-PREPARE or PREPARE is refused without a vote
and counted under its own name (the counters are the operator's view of a misbehaving peer), equivocation
evidence is recorded once per sender, kind and slot and bounded per sender, and honest PREPAREs never make
a replica believe it is behind.

N = 4, f = 1, quorum 3; replica 2 is the one under test and the others are driven by hand.
"""

from __future__ import annotations

import hashlib

import pytest
from consensus_net import CHAIN, Net
from test_consensus_view_change_checks import prepared, sign, view_changes

from consensus import messages as m
from consensus.actions import KEY_CERT, LAST_COMMIT_RESENDS, MAX_CANDIDATE_BLOCKS, MAX_EVIDENCE_PER_SENDER
from consensus.block import Block
from consensus.replica import Broadcast, Persist, RecordEvidence, Send, ValidateBlock

A = Block(CHAIN, 1, CHAIN, 0, 0, (b"A",))
B = Block(CHAIN, 1, CHAIN, 0, 0, (b"B",))


def victim() -> Net:
    return Net(byzantine={0, 1, 3})


REFUSED = {
    "wrong_view (pre-prepare of view 1 while in view 0)":
        ("wrong_view", m.PrePrepare(1, 1, Block(CHAIN, 1, CHAIN, 1, 1, (b"x",)), 1)),
    "wrong_view (prepare of view 1 while in view 0)": ("wrong_view", m.Prepare(1, 1, A.hash(), 3)),
    "pre-prepare not from the primary": ("preprepare_not_from_primary",
                                         m.PrePrepare(0, 1, Block(CHAIN, 1, CHAIN, 0, 1, (b"x",)), 1)),
    "prepare from the primary": ("prepare_from_primary", m.Prepare(0, 1, A.hash(), 0)),
    "above the high watermark": ("above_watermark", m.Prepare(0, 10, A.hash(), 3)),
    "block not linked to our head": ("preprepare_bad_link",
                                     m.PrePrepare(0, 1, Block(CHAIN, 1, bytes(32), 0, 0, (b"x",)), 0)),
    "block proposed in another's name": ("preprepare_unjustified",
                                         m.PrePrepare(0, 1, Block(CHAIN, 1, CHAIN, 0, 1, (b"x",)), 0)),
    "block of another view": ("preprepare_unjustified", m.PrePrepare(0, 1, Block(CHAIN, 1, CHAIN, 3, 0, (b"x",)), 0)),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_message_draws_no_vote_and_is_counted_under_its_name(case: str) -> None:
    stat, msg = REFUSED[case]
    net = victim()
    replica = net.replicas[2]
    actions = []
    for _ in range(2):
        actions += replica.receive(net.sign(msg), net.now)
    assert replica.stats[stat] == 2, replica.stats
    assert not any(isinstance(a, (ValidateBlock, Broadcast)) for a in actions)
    assert replica._slot is None


def test_a_second_pre_prepare_for_an_open_slot_is_a_counted_duplicate() -> None:
    net = victim()
    replica = net.replicas[2]
    pp = net.sign(m.PrePrepare(0, 1, A, 0))
    net.to(2, pp)
    assert replica._slot is not None
    for _ in range(2):
        net.to(2, pp)
    assert replica.stats["preprepare_duplicate"] == 2


def test_every_delivered_block_is_counted() -> None:
    net = Net()
    for k in range(3):
        net.propose(0, b"tx%d" % k)
        net.deliver()
    assert [r.stats["delivered"] for r in net.replicas] == [3, 3, 3, 3]


def test_prepares_for_our_next_height_do_not_make_us_think_we_are_behind() -> None:
    """All PREPAREs arrive, the COMMITs do not: every replica is one vote from committing, not behind."""
    net = Net()
    net.propose(0, b"tx")
    net.deliver(only=lambda to, msg: not isinstance(msg, m.Commit))
    for _ in range(30):
        net.now += 10
        for i in range(4):
            actions = net.replicas[i].tick(net.now)
            assert not any(type(a).__name__ == "FetchBlocks" for a in actions), (i, actions)
    assert all(r.stats["fetch_requests"] == 0 for r in net.replicas)


def evidence_of(actions: list) -> list[str]:
    return [a.kind for a in actions if isinstance(a, RecordEvidence)]


def test_equivocation_is_evidence_once_per_sender_kind_and_slot_and_further_copies_are_counted() -> None:
    net = victim()
    replica = net.replicas[2]
    actions = []
    for msg in (m.PrePrepare(0, 1, A, 0), m.PrePrepare(0, 1, B, 0),
                m.Prepare(0, 1, A.hash(), 3), m.Prepare(0, 1, B.hash(), 3),
                m.Prepare(0, 1, A.hash(), 1), m.Prepare(0, 1, B.hash(), 1),
                m.Commit(0, 1, A.hash(), 3), m.Commit(0, 1, B.hash(), 3)):
        actions += replica.receive(net.sign(msg), net.now)
    assert evidence_of(actions) == ["preprepare", "prepare", "prepare", "commit"]
    assert replica.stats["equivocations"] == 4
    third = Block(CHAIN, 1, CHAIN, 0, 0, (b"C",))
    fourth = Block(CHAIN, 1, CHAIN, 0, 0, (b"D",))
    again = replica.receive(net.sign(m.Prepare(0, 1, third.hash(), 3)), net.now)
    again += replica.receive(net.sign(m.Prepare(0, 1, fourth.hash(), 3)), net.now)
    assert evidence_of(again) == [] and replica.stats["evidence_suppressed"] == 2


def test_a_sender_gets_at_most_max_evidence_per_sender_records() -> None:
    """Replica 3 equivocates in its VIEW-CHANGE for one view after another; each record is a synced
    write, so only the first MAX_EVIDENCE_PER_SENDER are recorded."""
    net = victim()
    replica = net.replicas[2]
    actions = []
    for view in range(1, MAX_EVIDENCE_PER_SENDER + 3):
        actions += replica.receive(net.sign(m.ViewChange(view, None, None, 3)), net.now)
        actions += replica.receive(net.sign(m.ViewChange(view, None, prepared(), 3)), net.now)
    assert evidence_of(actions) == ["viewchange"] * MAX_EVIDENCE_PER_SENDER
    assert replica.stats["evidence_suppressed"] == 2


def test_a_sender_flooding_conflicting_commits_holds_at_most_two_votes_at_one_height() -> None:
    net = victim()
    replica = net.replicas[2]
    for tag in (b"A", b"B", b"C", b"D", b"E"):
        replica.receive(net.sign(m.Commit(0, 1, Block(CHAIN, 1, CHAIN, 0, 0, (tag,)).hash(), 3)), net.now)
    assert sum(3 in votes for votes in replica._commits.values()) == 2, "its first COMMIT and its latest second"


def test_replacing_a_flooders_second_commit_keeps_the_other_senders_votes_for_that_block() -> None:
    net = victim()
    replica = net.replicas[2]
    replica.receive(net.sign(m.Commit(0, 1, B.hash(), 1)), net.now)
    for block in (A, B, Block(CHAIN, 1, CHAIN, 0, 0, (b"C",))):
        replica.receive(net.sign(m.Commit(0, 1, block.hash(), 3)), net.now)
    assert set(replica._commits[(0, B.hash())]) == {1}


def test_messages_for_later_heights_are_held_and_replayed_once_their_height_is_next() -> None:
    """Everything for heights 2 and 3 that replica 2 needs from others arrives before height 1 commits;
    after height 1 it commits 2 from the held messages alone, votes for it, and keeps 3's for later."""
    net = victim()
    replica = net.replicas[2]
    second = Block(CHAIN, 2, A.hash(), 0, 0, (b"two",))
    third = Block(CHAIN, 3, second.hash(), 0, 0, (b"three",))
    early = [m.PrePrepare(0, 2, second, 0), m.Prepare(0, 2, second.hash(), 1), m.Commit(0, 2, second.hash(), 0),
             m.Commit(0, 2, second.hash(), 1), m.Prepare(0, 3, third.hash(), 3), m.Commit(0, 3, third.hash(), 3)]
    for msg in early:
        net.to(2, net.sign(msg))
    assert replica.committed_height == 0
    for msg in (m.PrePrepare(0, 1, A, 0), m.Prepare(0, 1, A.hash(), 1), m.Commit(0, 1, A.hash(), 0),
                m.Commit(0, 1, A.hash(), 1)):
        net.to(2, net.sign(msg))
    assert replica.committed_height == 2
    own_votes = {(type(msg), msg.height) for msg in net.inbox[0] if msg.sender == 2}
    assert {(m.Prepare, 2), (m.Commit, 2)} <= own_votes, "its votes for height 2 were sent"
    net.to(2, net.sign(m.PrePrepare(0, 3, third, 0)))
    net.to(2, net.sign(m.Commit(0, 3, third.hash(), 0)))
    assert replica.committed_height == 3, "replica 3's held PREPARE and COMMIT for height 3 still counted"
    assert replica.stats["old_height"] == 0, "a replayed message is not held for a second replay"


def broadcasts(actions: list, kind: type) -> list:
    return [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, kind)]


def test_a_replica_signs_and_sends_one_commit_per_height_and_persists_the_certificate_first() -> None:
    net = Net(byzantine={0, 1, 3})
    replica = net.replicas[2]
    actions = []
    for msg in (m.PrePrepare(0, 1, A, 0), m.Prepare(0, 1, A.hash(), 1), m.Prepare(0, 1, A.hash(), 3),
                m.Commit(0, 1, A.hash(), 0), m.Commit(0, 1, A.hash(), 1)):
        actions += replica.receive(net.sign(msg), net.now)
        if isinstance(actions[-1:][0] if actions else None, ValidateBlock):
            actions += replica.block_validated(A.hash(), True, net.now)
    assert len(broadcasts(actions, m.Commit)) == 1 and len(broadcasts(actions, m.Prepare)) == 1
    deliver = next(i for i, a in enumerate(actions) if type(a).__name__ == "Deliver")
    cert = actions[deliver].cert
    assert actions[deliver - 1] == Persist(KEY_CERT, cert.encode())


def test_a_prepared_certificate_holds_exactly_quorum_minus_one_prepares() -> None:
    """Replica 2 validates late, after both other backups' PREPAREs: three backups have prepared, the
    certificate it persists and quotes needs only two."""
    net = Net(auto_validate=False)
    net.propose(0, b"tx")
    net.deliver()
    for i in (1, 3):
        net.validate(i)
    net.deliver(only=lambda to, msg: not isinstance(msg, m.Commit))
    net.validate(2)
    assert net.replicas[2]._prepared is not None and len(net.replicas[2]._prepared.prepares) == 2


def test_after_a_commit_the_own_commit_is_resent_a_few_times_and_checkpoints_name_the_block() -> None:
    net = Net()
    for k in range(2):
        net.propose(0, b"tx%d" % k)
        net.deliver()
    replica = net.replicas[2]
    resent = []
    for _ in range(LAST_COMMIT_RESENDS + 2):
        net.now += net.config.view_timeout_ms
        resent += broadcasts(replica.tick(net.now), m.Commit)
    assert [(c.height, c.sender) for c in resent] == [(2, 2)] * LAST_COMMIT_RESENDS
    checkpoint = replica._my_checkpoint
    assert checkpoint is not None and (checkpoint.height, checkpoint.block_hash) == (2, net.ledgers[2][1][0].hash())


def test_a_block_without_the_watched_transaction_leaves_it_watched_and_the_timer_running() -> None:
    net = Net()
    digest = hashlib.sha256(b"wanted").digest()
    net.execute(2, net.replicas[2].watch_tx(digest, net.now))
    net.propose(0, b"other")
    net.deliver()
    replica = net.replicas[2]
    assert replica.committed_height == 1 and digest in replica._watched
    assert replica.work_pending is True and replica.deadline_ms is not None


def test_a_replica_that_committed_and_then_falls_behind_fetches() -> None:
    net = Net(byzantine={0, 1, 3})
    replica = net.replicas[2]
    for msg in (m.PrePrepare(0, 1, A, 0), m.Prepare(0, 1, A.hash(), 1), m.Commit(0, 1, A.hash(), 0),
                m.Commit(0, 1, A.hash(), 1)):
        net.to(2, net.sign(msg))
    assert replica.committed_height == 1
    for sender in (0, 1):
        net.to(2, net.sign(m.Checkpoint(2, bytes(32), sender)))
    grace = net.config.view_timeout_ms // 2
    replica.tick(net.now + 1)
    assert replica.stats["fetch_requests"] == 0, "one height behind: wait a grace period first"
    fetched = [a for a in replica.tick(net.now + grace) if type(a).__name__ == "FetchBlocks"]
    assert [a.from_height for a in fetched] == [2]


def test_at_most_max_candidate_blocks_are_held_the_oldest_evicted_first() -> None:
    replica = victim().replicas[2]
    blocks = [Block(CHAIN, 1, CHAIN, v, v % 4, (b"c",)) for v in range(MAX_CANDIDATE_BLOCKS + 2)]
    for k, blk in enumerate(blocks):
        replica._remember_candidate(blk.hash(), blk)
        if k != 1:
            replica._validated[blk.hash()] = True
    held = [b.hash() for b in blocks[2:]]
    assert list(replica._candidates) == held
    assert set(replica._validated) == set(held), "an evicted block's verdict goes with it"
    replica._remember_candidate(blocks[-1].hash(), blocks[-1])
    assert list(replica._candidates) == held, "remembering a held block again evicts nothing"


def test_a_message_for_our_next_height_draws_no_help() -> None:
    net = Net(byzantine={0, 1, 3})
    replica = net.replicas[2]
    for msg in (m.PrePrepare(0, 1, A, 0), m.Prepare(0, 1, A.hash(), 1), m.Commit(0, 1, A.hash(), 0),
                m.Commit(0, 1, A.hash(), 1)):
        net.to(2, net.sign(msg))
    second = Block(CHAIN, 2, A.hash(), 0, 0, (b"two",))
    actions = replica.receive(net.sign(m.PrePrepare(0, 2, second, 0)), net.now)
    actions += replica.receive(net.sign(m.Prepare(0, 2, second.hash(), 3)), net.now)
    assert not any(isinstance(a, Send) for a in actions)


def test_the_future_buffer_keeps_a_senders_highest_message() -> None:
    replica = victim().replicas[2]
    net = Net()
    replica.receive(net.sign(m.Prepare(0, 3, A.hash(), 3)), 0)
    replica.receive(net.sign(m.Prepare(0, 2, A.hash(), 3)), 0)
    assert replica._future[(3, m.Prepare)].height == 3


def view_1_installed_while_validating_x() -> tuple[Net, Block]:
    net = Net(byzantine={0, 1, 3}, auto_validate=False)
    x = Block(CHAIN, 1, CHAIN, 0, 0, (b"X",))
    net.to(2, net.sign(m.PrePrepare(0, 1, x, 0)))
    net.replicas[2].receive(sign(m.NewView(1, view_changes(1, (0, 1, 3)), None, 1)), net.now)
    assert net.replicas[2].view == 1 and net.replicas[2].active and net.replicas[2]._slot is None
    return net, x


def test_a_late_validation_of_another_block_is_no_vote_for_the_open_slot() -> None:
    """Replica 2 still validates view 0's block X when view 1 installs and proposes Y: X's verdict must
    neither crash the replica (no slot yet) nor make it PREPARE Y, which nobody validated."""
    net, x = view_1_installed_while_validating_x()
    assert net.replicas[2].block_validated(x.hash(), True, net.now) == []
    net, x = view_1_installed_while_validating_x()
    net.to(2, net.sign(m.PrePrepare(1, 1, Block(CHAIN, 1, CHAIN, 1, 1, (b"Y",)), 1)))
    assert net.replicas[2].block_validated(x.hash(), True, net.now) == []


def test_the_primary_resends_its_pre_prepare_and_a_backup_its_prepare_until_they_commit() -> None:
    net = Net()
    pp = net.propose(0, b"tx")
    net.deliver(only=lambda to, msg: False)
    net.now += net.config.view_timeout_ms // 2
    assert pp in broadcasts(net.replicas[0].tick(net.now), m.PrePrepare)
    net.to(2, pp)
    net.deliver(only=lambda to, msg: False)
    net.now += net.config.view_timeout_ms // 2
    resent = broadcasts(net.replicas[2].tick(net.now), m.Prepare)
    assert [(p.height, p.sender) for p in resent] == [(1, 2)]
