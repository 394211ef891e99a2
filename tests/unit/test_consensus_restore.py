"""Restart (consensus/restore.py): a replica rebuilt from its persisted map resumes its view, never signs
a conflicting vote, keeps what it prepared and takes up a NEW-VIEW's forced block again."""

from __future__ import annotations

from dataclasses import replace

from test_consensus_replica import CHAIN, Cluster, signer

from consensus import messages as m
from consensus.block import Block
from consensus.replica import Broadcast


def test_restart_never_signs_a_conflicting_vote() -> None:
    c = Cluster()
    pp_actions = c.replicas[0].propose((b"x",), 0)
    pp = next(a.msg for a in pp_actions if isinstance(a, Broadcast))
    c.run(1, c.replicas[1].receive(pp, 0))
    assert b"pbft/signed/prepare" in c.persisted[1]
    c.restart(1)
    other = Block(CHAIN, 1, CHAIN, 0, 0, (b"y",))
    conflicting = replace(m.PrePrepare(0, 1, other, 0), signature=b"")
    conflicting = replace(conflicting, signature=signer(0)(m.signing_bytes(CHAIN, conflicting)))
    actions = c.replicas[1].receive(conflicting, 0)
    actions += c.replicas[1].block_validated(other.hash(), True, 0)
    assert not any(isinstance(a, Broadcast) and isinstance(a.msg, m.Prepare) for a in actions)
    assert c.replicas[1].stats["refused_conflicting_prepare"] == 1


def test_restarted_replica_resumes_and_catches_up() -> None:
    c = Cluster()
    c.propose(b"a")
    c.down.add(3)
    c.propose(b"b")
    c.propose(b"c")
    c.down.clear()
    c.restart(3)
    assert c.replicas[3].committed_height == 1
    fetches = []
    for k in range(3):
        c.propose(b"d%d" % k)
    fetches = [a for i, a in c.log if i == 3 and type(a).__name__ == "FetchBlocks"]
    assert fetches and fetches[0].from_height == 2
    for block, cert in c.ledgers[0][c.replicas[3].committed_height:]:
        c.run(3, c.replicas[3].add_committed(block, cert, c.now))
    assert [b.hash() for b, _ in c.ledgers[3]] == [b.hash() for b, _ in c.ledgers[0]]


def test_restore_when_a_crash_cut_between_view_change_and_view_record() -> None:
    c = Cluster()
    r = c.replicas[2]
    actions = r._start_view_change(1, 0)
    c.run(2, actions[:2])
    c.run(2, r._start_view_change(2, 0)[:1])
    c.restart(2)
    restored = c.replicas[2]
    assert restored.view == 2 and not restored.active
    vc = restored._my_view_change
    assert vc is not None and vc.new_view == 2
    resent = [a.msg for a in restored.tick(1000) if isinstance(a, Broadcast)]
    assert vc in resent, "the persisted VIEW-CHANGE is re-sent exactly as signed"


def test_a_restarted_replica_still_holds_the_block_it_prepared() -> None:
    """If the only other holder of a committed block is Byzantine, honest preparers must still have it."""
    c = Cluster()
    c.drop = lambda to, msg: isinstance(msg, m.Commit) and to in (2, 3)
    c.propose(b"only-prepared")
    assert c.replicas[2].committed_height == 0 and c.replicas[1].committed_height == 1
    c.restart(2)
    c.drop = lambda to, msg: False
    c.run(2, c.replicas[2].note_pending(c.now))
    c.advance(300)
    assert [b.txs for b, _ in c.ledgers[2]] == [(b"only-prepared",)]
    assert c.replicas[2].stats["fetch_requests"] == 0, "delivered from its persisted prepared certificate"
