"""Scenario tests for the view-change bugs known from real PBFT code.

1. Prepared certificates inside VIEW-CHANGE accepted without validation.
2. NEW-VIEW built or accepted without verifying the VIEW-CHANGEs it quotes (or its PRE-PREPARE).
3. Sequence numbers reset (or re-used) on view change.
Plus the property these guard: a block that may have committed is re-proposed by the new view.
"""

from __future__ import annotations

from dataclasses import replace

from test_consensus_replica import CHAIN, Cluster, signer, verify

from consensus import messages as m
from consensus.block import Block, CommitCertificate
from consensus.replica import Broadcast, Replica, new_view_plan


def signed(msg):
    return replace(msg, signature=signer(msg.sender)(m.signing_bytes(CHAIN, msg)))


def prepared_everywhere_but_committed_nowhere() -> tuple[Cluster, Block]:
    """Block A is prepared at every replica in view 0, but all COMMITs are lost; primary 0 then dies."""
    c = Cluster()
    c.drop = lambda to, msg: isinstance(msg, m.Commit) and msg.view == 0
    c.propose(b"A")
    block = c.replicas[1]._slot.preprepare.block
    assert all(not ledger for ledger in c.ledgers)
    assert all(r._prepared is not None for r in c.replicas[1:])
    c.down.add(0)
    return c, block


def view_changes_from(c: Cluster, senders) -> dict[int, m.ViewChange]:
    out = {}
    for i in senders:
        actions = c.replicas[i]._start_view_change(1, c.now)
        out[i] = next(a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.ViewChange))
    return out


def test_new_view_re_proposes_the_prepared_block_and_heights_continue() -> None:
    c, block_a = prepared_everywhere_but_committed_nowhere()
    for i in (1, 2, 3):
        c.replicas[i].note_pending(c.now)
    c.advance(150)
    for i in (1, 2, 3):
        assert c.replicas[i].view == 1 and c.replicas[i].active
        assert [b.hash() for b, _ in c.ledgers[i]] == [block_a.hash()], "A re-proposed and committed in view 1"
        assert c.ledgers[i][0][1].view == 1
    c.propose(b"B")
    assert [b.height for b, _ in c.ledgers[1]] == [1, 2], "the next block continues at height 2"


def forged_prepared_certificate(block: Block, view: int = 0) -> m.PreparedCertificate:
    """A certificate for `block` whose PREPAREs were never signed by the replicas it names."""
    pp = m.PrePrepare(view, 1, block, view % 4, b"\0" * 16)
    prepares = tuple(m.Prepare(view, 1, block.hash(), s, b"\1" * 16) for s in (1, 2))
    return m.PreparedCertificate(pp, prepares)


def test_view_change_with_unvalidated_prepared_certificate_is_dropped() -> None:
    c, block_a = prepared_everywhere_but_committed_nowhere()
    block_b = Block(CHAIN, 1, CHAIN, 0, 0, (b"B-never-prepared",))
    primary = c.replicas[1]
    primary._start_view_change(1, c.now)
    bad_certs = [
        forged_prepared_certificate(block_b),
        replace(forged_prepared_certificate(block_b), prepares=()),
    ]
    genuine_pp = signed(m.PrePrepare(0, 1, block_b, 0))
    bad_certs.append(m.PreparedCertificate(genuine_pp, (signed(m.Prepare(0, 1, block_b.hash(), 3)),)))
    bad_certs.append(m.PreparedCertificate(signed(m.PrePrepare(0, 1, block_b, 0)),
                                           (signed(m.Prepare(0, 1, block_a.hash(), 2)),
                                            signed(m.Prepare(0, 1, block_b.hash(), 3)))))
    for cert in bad_certs:
        vc = signed(m.ViewChange(1, None, cert, 3))
        assert primary.receive(vc, c.now) == []
    assert primary.stats["bad_view_change"] == len(bad_certs)
    assert 3 not in primary._view_changes, "a forged certificate must not count toward the quorum"
    honest = view_changes_from(c, [2, 3])
    actions = primary.receive(honest[2], c.now) + primary.receive(honest[3], c.now)
    nvs = [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.NewView)]
    assert len(nvs) == 1 and nvs[0].preprepare is not None
    assert nvs[0].preprepare.block.hash() == block_a.hash(), "the genuinely prepared block wins"


def test_new_view_with_forged_view_change_is_rejected() -> None:
    c, _ = prepared_everywhere_but_committed_nowhere()
    vcs = view_changes_from(c, [1, 2, 3])
    backup = Replica(c.config, 2, signer(2), verify)
    plan = new_view_plan(CHAIN, vcs.values())
    pp = signed(m.PrePrepare(1, plan.floor_height + 1, plan.block, 1))
    forged = replace(vcs[3], signature=b"\7" * 16)
    bad = signed(m.NewView(1, (vcs[1], vcs[2], forged), pp, 1))
    assert backup.receive(bad, 0) == []
    assert backup.stats["bad_new_view"] == 1
    tampered_vc = signed(replace(vcs[3], prepared=forged_prepared_certificate(plan.block)))
    bad = signed(m.NewView(1, (vcs[1], vcs[2], tampered_vc), pp, 1))
    assert backup.receive(bad, 0) == [] and backup.stats["bad_new_view"] == 2
    too_few = signed(m.NewView(1, (vcs[1], vcs[2]), pp, 1))
    assert backup.receive(too_few, 0) == [] and backup.stats["bad_new_view"] == 3
    good = signed(m.NewView(1, (vcs[1], vcs[2], vcs[3]), pp, 1))
    assert backup.receive(good, 0) != [] and backup.view == 1 and backup.active


def test_new_view_that_drops_or_replaces_the_prepared_block_is_rejected() -> None:
    c, _ = prepared_everywhere_but_committed_nowhere()
    vcs = view_changes_from(c, [1, 2, 3])
    chosen = (vcs[1], vcs[2], vcs[3])
    backup = Replica(c.config, 3, signer(3), verify)
    dropped = signed(m.NewView(1, chosen, None, 1))
    fresh = Block(CHAIN, 1, CHAIN, 1, 1, (b"fresh",))
    replaced = signed(m.NewView(1, chosen, signed(m.PrePrepare(1, 1, fresh, 1)), 1))
    for nv in (dropped, replaced):
        assert backup.receive(nv, 0) == []
    assert backup.stats["bad_new_view"] == 2 and backup.view == 0


def test_sequence_numbers_do_not_reset_on_view_change() -> None:
    c = Cluster()
    c.propose(b"h1")
    c.propose(b"h2")
    c.down.add(0)
    for i in (1, 2, 3):
        c.replicas[i].note_pending(c.now)
    c.advance(150)
    new_primary = c.replicas[1]
    assert new_primary.view == 1 and new_primary.ready_to_propose
    actions = new_primary.propose((b"h3",), c.now)
    pp = next(a.msg for a in actions if isinstance(a, Broadcast))
    assert pp.height == 3 and pp.block.prev_hash == c.ledgers[1][-1][0].hash()
    restarted_at_one = Block(CHAIN, 1, CHAIN, 1, 1, (b"again",))
    stale = signed(m.PrePrepare(1, 1, restarted_at_one, 1))
    backup = c.replicas[2]
    stale_before = backup.stats["stale"]
    assert not any(isinstance(a, Broadcast) for a in backup.receive(stale, c.now))
    assert backup.stats["stale"] == stale_before + 1, "dropped before its signature is checked"
    skipping = Block(CHAIN, 5, c.ledgers[2][-1][0].hash(), 1, 1, (b"skip",))
    assert backup.receive(signed(m.PrePrepare(1, 5, skipping, 1)), c.now) == []
    assert backup.committed_height == 2


def test_new_view_pre_prepare_must_sit_right_above_the_final_height() -> None:
    c, block_a = prepared_everywhere_but_committed_nowhere()
    vcs = view_changes_from(c, [1, 2, 3])
    chosen = (vcs[1], vcs[2], vcs[3])
    wrong_height = signed(m.NewView(1, chosen, signed(m.PrePrepare(1, 2, replace(block_a, height=2), 1)), 1))
    backup = Replica(c.config, 2, signer(2), verify)
    assert backup.receive(wrong_height, 0) == [] and backup.stats["bad_new_view"] == 1


def test_committed_block_survives_when_only_one_replica_saw_the_commits() -> None:
    """Replica 1 commits A (it alone got the COMMITs); the new view must not let anyone commit B at 1."""
    c = Cluster()
    c.drop = lambda to, msg: isinstance(msg, m.Commit) and msg.view == 0 and to != 1
    c.propose(b"A")
    assert len(c.ledgers[1]) == 1 and not c.ledgers[2] and not c.ledgers[3]
    c.down.add(0)
    for i in (1, 2, 3):
        c.replicas[i].note_pending(c.now)
    c.advance(150)
    assert all(c.replicas[i].view == 1 and c.replicas[i].active for i in (1, 2, 3))
    assert all(len(c.ledgers[i]) == 1 for i in (2, 3)), "the certificate in replica 1's VIEW-CHANGE suffices"
    c.propose(b"next")
    assert {c.ledgers[i][0][0].hash() for i in (1, 2, 3)} == {c.ledgers[1][0][0].hash()}
    assert all(len(c.ledgers[i]) == 2 for i in (1, 2, 3))


def test_commit_certificate_from_an_old_view_still_counts() -> None:
    c = Cluster()
    c.propose(b"x")
    block, cert = c.ledgers[1][0]
    assert isinstance(cert, CommitCertificate) and cert.view == 0
    late = Replica(c.config, 3, signer(3), verify)
    late._start_view_change(1, 0)
    assert late.add_committed(block, cert, 0)[-1].block == block
