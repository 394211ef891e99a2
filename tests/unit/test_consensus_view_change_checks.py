"""The view change's checks one at a time: what a VIEW-CHANGE's prepared certificate and a NEW-VIEW must
satisfy (each attack refused alone, next to the honest message that passes), what a replica persists,
counts and records while changing views, and when its timer fires.

N = 4, f = 1, quorum 3 throughout; the primary of view v is v % 4.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from consensus_net import CHAIN, Net, signer

from consensus import codec
from consensus import messages as m
from consensus.actions import KEY_NEW_VIEW, KEY_SIGNED, KEY_VIEW, KEY_VIEW_CHANGE
from consensus.block import Block, CommitCertificate, commit_statement
from consensus.replica import Broadcast, Persist, RecordEvidence, Replica, Send, ViewChanged, new_view_plan
from consensus.view_change import NewViewPlan

OTHER_CHAIN = hashlib.sha256(b"another chain").digest()


def any_index_verify(index: int, data: bytes, sig: bytes) -> bool:
    """Knows a key for every index, members or not: bounding senders is the replica's job."""
    return signer(index)(data) == sig


def sign(msg):
    return replace(msg, signature=signer(msg.sender)(m.signing_bytes(CHAIN, msg)))


def block(tag: bytes = b"A", chain: bytes = CHAIN, view: int = 0) -> Block:
    return Block(chain, 1, chain, view, view % 4, (tag,))


def prepared(view: int = 0, backups: tuple[int, ...] = (1, 3), *, primary: int | None = None,
             blk: Block | None = None) -> m.PreparedCertificate:
    """A prepared certificate for height 1 in `view`, every message signed by the replica it names."""
    blk = block(view=view) if blk is None else blk
    pp = sign(m.PrePrepare(view, 1, blk, view % 4 if primary is None else primary))
    return m.PreparedCertificate(pp, tuple(sign(m.Prepare(view, 1, blk.hash(), s)) for s in backups))


def victim(index: int = 2) -> Replica:
    net = Net()
    return Replica(net.config, index, signer(index), any_index_verify)


def offer(replica: Replica, cert: m.PreparedCertificate, new_view: int = 1, sender: int = 3) -> bool:
    """Hand `replica` a VIEW-CHANGE carrying `cert`; True if it counted it."""
    before = replica.stats["bad_view_change"]
    replica.receive(sign(m.ViewChange(new_view, None, cert, sender)), 0)
    accepted = replica.stats["bad_view_change"] == before
    assert accepted == (replica._view_changes.get(sender) is not None)
    return accepted


def test_an_honest_prepared_certificate_is_accepted_including_a_prepare_from_replica_0() -> None:
    assert offer(victim(), prepared())
    assert offer(victim(), prepared(view=1, backups=(0, 2)), new_view=2), "replica 0 is a member like any other"


def test_a_prepared_certificate_from_the_view_being_left_or_a_later_one_is_refused() -> None:
    assert not offer(victim(), prepared(view=1, backups=(0, 3)), new_view=1)


def test_a_pre_prepare_not_from_its_views_primary_is_refused() -> None:
    assert not offer(victim(), prepared(backups=(2, 3), primary=1))


def test_a_pre_prepare_for_a_block_of_another_chain_is_refused() -> None:
    assert not offer(victim(), prepared(blk=block(chain=OTHER_CHAIN)))


def test_the_primary_cannot_count_as_one_of_its_own_prepares() -> None:
    assert not offer(victim(), prepared(backups=(0, 1)))


def test_a_prepare_from_a_non_member_is_refused_even_if_it_verifies() -> None:
    assert not offer(victim(), prepared(backups=(1, 4)))


def test_a_repeated_prepare_is_refused() -> None:
    assert not offer(victim(), prepared(backups=(1, 1, 3)))


def test_a_prepare_with_a_bad_signature_is_refused() -> None:
    cert = prepared()
    forged = replace(cert.prepares[1], signature=b"\1" * 16)
    assert not offer(victim(), replace(cert, prepares=(cert.prepares[0], forged)))


def test_a_view_change_costs_one_signature_check_and_a_resent_copy_none() -> None:
    net = Net()
    vc = net.sign(m.ViewChange(1, None, None, 3))
    net.to(2, vc)
    assert net.verify_calls == 1
    net.to(2, vc)
    assert net.verify_calls == 1, "a resent copy is recognised before any signature check"


def view_changes(new_view: int, senders: tuple[int, ...], **fields) -> tuple[m.ViewChange, ...]:
    return tuple(sign(m.ViewChange(new_view, fields.get("committed"), fields.get("prepared"), s)) for s in senders)


def test_a_new_view_quoting_view_changes_for_another_view_is_refused() -> None:
    backup = victim(3)
    backup.receive(sign(m.NewView(1, view_changes(2, (0, 1, 2)), None, 1)), 0)
    assert backup.stats["bad_new_view"] == 1 and backup.view == 0
    backup.receive(sign(m.NewView(1, view_changes(1, (0, 1, 2)), None, 1)), 0)
    assert backup.view == 1 and backup.active


def test_a_new_view_quoting_a_non_member_view_change_is_refused_even_if_it_verifies() -> None:
    backup = victim(3)
    backup.receive(sign(m.NewView(1, view_changes(1, (0, 1, 4)), None, 1)), 0)
    assert backup.stats["bad_new_view"] == 1 and backup.view == 0


def test_a_new_view_may_not_propose_when_no_view_change_carries_a_prepared_block() -> None:
    backup = victim(3)
    fresh = Block(CHAIN, 1, CHAIN, 1, 1, (b"fresh",))
    backup.receive(sign(m.NewView(1, view_changes(1, (0, 1, 2)), sign(m.PrePrepare(1, 1, fresh, 1)), 1)), 0)
    assert backup.stats["bad_new_view"] == 1 and backup.view == 0


def commit_cert(blk: Block, view: int = 0) -> CommitCertificate:
    statement = commit_statement(CHAIN, view, blk.height, blk.hash())
    return CommitCertificate(blk.height, view, blk.hash(), tuple((s, signer(s)(statement)) for s in (0, 1, 2)))


def test_the_plan_names_the_highest_final_block_and_its_certificate() -> None:
    assert new_view_plan(CHAIN, view_changes(1, (0, 1, 2))) == NewViewPlan(0, CHAIN, None, None)
    first = block()
    cert = commit_cert(first)
    plan = new_view_plan(CHAIN, (*view_changes(1, (0, 1)), *view_changes(1, (2,), committed=cert)))
    assert (plan.floor_height, plan.floor_hash, plan.floor_cert, plan.block) == (1, first.hash(), cert, None)


def test_a_new_view_teaches_a_backup_the_final_height_its_view_changes_prove() -> None:
    """Backup 3 saw none of the VIEW-CHANGEs; the certificate quoted in the NEW-VIEW makes it catch up."""
    backup = victim(3)
    cert = commit_cert(block())
    nv = sign(m.NewView(1, (*view_changes(1, (0, 1)), *view_changes(1, (2,), committed=cert)), None, 1))
    backup.receive(nv, 0)
    assert backup.view == 1 and backup._final_height() == 1


def primary_of_view_1(net: Net, senders: tuple[int, ...]) -> list:
    """Replica 1 gives up view 0 and receives VIEW-CHANGEs for view 1 from `senders`; its actions."""
    primary = net.replicas[1]
    actions = primary._start_view_change(1, net.now)
    for vc in view_changes(1, senders):
        actions += primary.receive(replace(vc, signature=net.sign(vc).signature), net.now)
    return actions


def test_the_new_primary_waits_for_a_quorum_of_view_changes_for_its_own_view() -> None:
    net = Net()
    actions = primary_of_view_1(net, (2,))
    actions += net.replicas[1].receive(net.sign(m.ViewChange(2, None, None, 3)), net.now)
    assert not any(isinstance(a, Broadcast) and isinstance(a.msg, m.NewView) for a in actions), \
        "two VIEW-CHANGEs for view 1 (its own and 2's) and one for view 2 are no quorum for view 1"
    assert net.replicas[1].stats["new_views_sent"] == 0


def test_the_new_primary_quotes_exactly_a_quorum_persists_and_counts_its_new_view() -> None:
    net = Net()
    actions = primary_of_view_1(net, (0, 2, 3))
    nvs = [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.NewView)]
    assert len(nvs) == 1 and len(nvs[0].view_changes) == 3
    assert Persist(KEY_NEW_VIEW, m.encode(nvs[0])) in actions
    assert Persist(KEY_VIEW, codec.encode([1, True, 1])) in actions and ViewChanged(1) in actions
    assert net.replicas[1].stats["new_views_sent"] == 1 and net.replicas[1].stats["views_installed"] == 1


def test_a_new_primary_persists_its_re_proposal_as_a_signed_pre_prepare() -> None:
    net = Net()
    cert = prepared()
    primary = net.replicas[1]
    actions = primary._start_view_change(1, net.now)
    for vc in view_changes(1, (2, 3), prepared=cert):
        actions += primary.receive(net.sign(vc), net.now)
    nv = next(a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, m.NewView))
    assert nv.preprepare is not None and nv.preprepare.block == cert.preprepare.block
    assert Persist(KEY_SIGNED + b"preprepare", codec.encode([1, 1, cert.preprepare.block.hash()])) in actions


def test_starting_a_view_change_persists_counts_and_doubles_the_timeout() -> None:
    net = Net()
    replica = net.replicas[2]
    actions = replica._start_view_change(1, net.now)
    vc = next(a.msg for a in actions if isinstance(a, Broadcast))
    assert actions[:2] == [Persist(KEY_VIEW_CHANGE, m.encode(vc)), Persist(KEY_VIEW, codec.encode([1, False, 1]))]
    replica._start_view_change(2, net.now)
    assert replica.stats["view_changes_started"] == 2
    assert replica.timeout_ms() == net.config.view_timeout_ms * 4, "doubled once per consecutive view change"


def test_a_view_change_after_a_commit_carries_its_certificate_and_no_prepared_certificate_for_that_height() -> None:
    net = Net()
    net.propose(0, b"tx")
    net.deliver()
    replica = net.replicas[2]
    assert replica.committed_height == 1
    vc = next(a.msg for a in replica._start_view_change(1, net.now) if isinstance(a, Broadcast))
    assert vc.committed is not None and vc.committed.height == 1
    assert vc.prepared is None, "height 1 is final: its prepared certificate proves nothing more"


def test_a_replica_that_gave_up_a_view_arms_its_timer_on_a_quorum_and_moves_on_when_it_fires() -> None:
    net = Net(byzantine={1})
    replica = net.replicas[2]
    net.execute(2, replica._start_view_change(1, net.now))
    assert replica.deadline_ms is None
    net.to(2, net.sign(m.ViewChange(1, None, None, 0)))
    net.to(2, net.sign(m.ViewChange(1, None, None, 3)))
    timeout = replica.timeout_ms()
    assert replica.deadline_ms == net.now + timeout
    net.execute(2, replica.tick(net.now + timeout - 1))
    assert replica.view == 1
    net.execute(2, replica.tick(net.now + timeout))
    assert replica.view == 2


def test_no_stale_new_view_is_forwarded_while_no_view_is_installed() -> None:
    net = Net()
    replica = net.replicas[2]
    replica._start_view_change(2, net.now)
    actions = replica.receive(net.sign(m.ViewChange(1, None, None, 3)), net.now)
    assert not any(isinstance(a, Send) for a in actions)


def test_two_view_changes_for_one_view_are_evidence_against_each_sender() -> None:
    net = Net()
    replica = net.replicas[2]
    records = []
    for sender in (0, 3):
        first = net.sign(m.ViewChange(1, None, None, sender))
        second = net.sign(m.ViewChange(1, None, prepared(), sender))
        records += replica.receive(first, net.now) + replica.receive(second, net.now)
    evidence = [a for a in records if isinstance(a, RecordEvidence)]
    assert [e.kind for e in evidence] == ["viewchange", "viewchange"]
    assert [codec.decode(e.data, max_bytes=1 << 20)[0] for e in evidence] == [m.encode(net.sign(
        m.ViewChange(1, None, None, s))) for s in (0, 3)]


def test_conflicting_messages_quoted_in_a_prepared_certificate_are_evidence() -> None:
    """Replica 2 holds primary 0's PRE-PREPARE and replica 1's PREPARE for block A; a VIEW-CHANGE quotes
    both signing block B at the same slot: two equivocations, two records."""
    net = Net(byzantine={0, 1, 3})
    a, b = block(b"A"), block(b"B")
    net.to(2, net.sign(m.PrePrepare(0, 1, a, 0)))
    net.to(2, net.sign(m.Prepare(0, 1, a.hash(), 1)))
    net.to(2, net.sign(m.ViewChange(1, None, prepared(blk=b), 3)))
    assert [e.kind for e in net.evidence[2]] == ["preprepare", "prepare"]


def test_a_second_new_view_for_the_installed_view_is_counted_and_evidence_once() -> None:
    net = Net()
    backup = net.replicas[3]
    backup.receive(sign(m.NewView(1, view_changes(1, (0, 1, 2)), None, 1)), net.now)
    assert backup.view == 1
    actions = []
    for senders in ((0, 2, 3), (1, 2, 3)):
        actions += backup.receive(sign(m.NewView(1, view_changes(1, senders), None, 1)), net.now)
    assert backup.stats["stale_new_view"] == 2
    assert [a.kind for a in actions if isinstance(a, RecordEvidence)] == ["newview"]


def test_view_changes_for_the_next_view_still_count_after_a_view_is_installed() -> None:
    net = Net()
    backup = net.replicas[3]
    backup.receive(sign(m.NewView(1, view_changes(1, (0, 1, 2)), None, 1)), net.now)
    backup.receive(net.sign(m.ViewChange(2, None, None, 0)), net.now)
    assert backup.view == 1
    backup.receive(net.sign(m.ViewChange(2, None, None, 1)), net.now)
    assert backup.view == 2 and not backup.active


def committed(blocks: int) -> Net:
    """Replicas 0-2 commit `blocks` blocks; replica 3 has sent nothing yet, so it has shown no height."""
    net = Net(byzantine={3})
    for k in range(blocks):
        net.propose(0, b"tx%d" % k)
        net.deliver()
    assert all(net.replicas[i].committed_height == blocks for i in (0, 1, 2))
    return net


def helps(blocks: int, committed_cert: int | None, with_prepared: bool = False) -> bool:
    """Does replica 2, at height `blocks`, send replica 3 its head COMMITs on 3's VIEW-CHANGE?"""
    net = committed(blocks)
    cert = None if committed_cert is None else net.ledgers[2][committed_cert - 1][1]
    vc = net.sign(m.ViewChange(1, cert, prepared() if with_prepared else None, 3))
    return any(isinstance(a, Send) and a.to == 3 and isinstance(a.msg, m.Commit)
               for a in net.replicas[2].receive(vc, net.now))


def test_a_view_change_shows_how_far_its_sender_is_and_a_sender_behind_gets_our_head_commits() -> None:
    assert helps(1, None), "no certificate: the sender is at genesis"
    assert helps(2, None, with_prepared=True)
    assert helps(2, 1)
    assert not helps(2, 2), "the sender is as far as we are"


def test_a_replica_that_committed_a_re_proposed_block_votes_for_it_in_the_new_view() -> None:
    """Only replica 3 saw the COMMITs of A in view 0; the NEW-VIEW of view 1 (built without 3) re-proposes
    A, and 3 votes PREPARE and COMMIT for it so that the others can commit it in view 1."""
    net = Net()
    a = net.propose(0, b"A").block
    net.deliver(only=lambda to, msg: not isinstance(msg, m.Commit) or to == 3)
    assert net.replicas[3].committed_height == 1 and net.replicas[1].committed_height == 0
    for i in (0, 1, 2):
        net.execute(i, net.replicas[i]._start_view_change(1, net.now))
    net.deliver(only=lambda to, msg: to != 3)
    nv = net.replicas[1]._new_view
    assert nv is not None and nv.preprepare is not None and nv.preprepare.block == a
    actions = net.replicas[3].receive(nv, net.now)
    assert ViewChanged(1) in actions
    votes = {(type(x.msg), x.msg.view, x.msg.height, x.msg.block_hash, x.msg.sender) for x in actions
             if isinstance(x, Broadcast) and isinstance(x.msg, (m.Prepare, m.Commit))}
    assert votes == {(m.Prepare, 1, 1, a.hash(), 3), (m.Commit, 1, 1, a.hash(), 3)}
    for kind in (b"prepare", b"commit"):
        assert Persist(KEY_SIGNED + kind, codec.encode([1, 1, a.hash()])) in actions
    again = net.replicas[3].receive(nv.preprepare, net.now)
    assert net.replicas[3].stats["preprepare_bad_link"] == 0
    assert {type(x.msg) for x in again if isinstance(x, Broadcast)} == {m.Prepare, m.Commit}, \
        "a retransmitted re-proposal is answered with the same votes"
    net.now += net.config.view_timeout_ms
    resent = [x.msg for x in net.replicas[3].tick(net.now) if isinstance(x, Broadcast)]
    assert any(isinstance(x, m.Commit) and (x.view, x.height, x.sender) == (1, 1, 3) for x in resent)


def test_the_request_timer_restarts_when_a_view_is_installed_and_still_fires_in_the_new_view() -> None:
    """Replicas 2 and 3 watch a transaction from t = 0; view 1 is installed later and its primary commits
    empty blocks without it: the request timer runs from the installation, not from the watch, and fires."""
    net = Net()
    digest = hashlib.sha256(b"censored").digest()
    for i in (2, 3):
        net.execute(i, net.replicas[i].watch_tx(digest, net.now))
    net.now = 150
    for i in range(4):
        net.execute(i, net.replicas[i]._start_view_change(1, net.now))
    net.deliver()
    assert all(r.view == 1 and r.active for r in net.replicas)
    installed_at = net.now
    while net.now < 2000 and net.replicas[2].stats["request_timeouts"] == 0:
        if net.replicas[1].ready_to_propose:
            net.propose(1)
        net.deliver()
        net.tick(10)
    fired_at = net.now
    assert net.replicas[2].stats["request_timeouts"] == 1 and net.replicas[1].committed_height > 0
    assert fired_at >= installed_at + net.config.request_timeout_factor * net.config.view_timeout_ms, fired_at


def test_a_restarted_replica_does_not_quote_a_prepared_certificate_for_a_final_height() -> None:
    net = Net()
    net.propose(0, b"tx")
    net.deliver()
    net.restart(2)
    replica = net.replicas[2]
    assert replica.committed_height == 1
    vc = next(a.msg for a in replica._start_view_change(1, net.now) if isinstance(a, Broadcast))
    assert vc.committed is not None and vc.committed.height == 1 and vc.prepared is None


def test_every_peer_still_asking_for_the_installed_view_gets_its_new_view() -> None:
    net = Net()
    backup = net.replicas[3]
    nv = sign(m.NewView(1, view_changes(1, (0, 1, 2)), None, 1))
    backup.receive(nv, net.now)
    for peer in (0, 2):
        actions = backup.receive(net.sign(m.ViewChange(1, None, None, peer)), net.now)
        assert Send(peer, nv) in actions, peer


def test_views_installed_and_new_views_sent_count_every_view() -> None:
    net = Net()
    primary_of_view_1(net, (0, 2, 3))
    primary = net.replicas[1]
    primary._start_view_change(5, net.now)
    for vc in view_changes(5, (0, 2)):
        primary.receive(net.sign(vc), net.now)
    assert primary.view == 5 and primary.active
    assert primary.stats["new_views_sent"] == 2 and primary.stats["views_installed"] == 2


def test_equivocations_quoted_anywhere_in_a_new_view_are_evidence() -> None:
    """Backup 3 holds primary 0's PRE-PREPARE and replica 1's PREPARE for A; the NEW-VIEW quotes two
    VIEW-CHANGEs with B's prepared certificate signed by both: each equivocation is recorded once."""
    net = Net(byzantine={0, 1, 2})
    a, b = block(b"A"), block(b"B")
    net.to(3, net.sign(m.PrePrepare(0, 1, a, 0)))
    net.to(3, net.sign(m.Prepare(0, 1, a.hash(), 1)))
    cert = prepared(blk=b, backups=(1, 2))
    vcs = (*view_changes(1, (0,)), *view_changes(1, (1, 2), prepared=cert))
    actions = net.replicas[3].receive(sign(m.NewView(1, vcs, sign(m.PrePrepare(1, 1, b, 1)), 1)), net.now)
    assert net.replicas[3].view == 1
    assert [x.kind for x in actions if isinstance(x, RecordEvidence)] == ["preprepare", "prepare"]


def test_a_view_change_drops_a_prepared_certificate_below_a_height_it_learned_is_final() -> None:
    """Replica 2 prepared A at height 1 (the COMMITs were lost) and then learns from a VIEW-CHANGE that
    height 2 is final: its own VIEW-CHANGE carries that certificate and no prepared certificate."""
    net = Net(byzantine={0, 1, 3})
    a = block(b"A")
    for msg in (m.PrePrepare(0, 1, a, 0), m.Prepare(0, 1, a.hash(), 1), m.Prepare(0, 1, a.hash(), 3)):
        net.to(2, net.sign(msg))
    replica = net.replicas[2]
    assert replica._prepared is not None and replica.committed_height == 0
    second = Block(CHAIN, 2, a.hash(), 0, 0, (b"two",))
    net.to(2, net.sign(m.ViewChange(1, commit_cert(second), None, 3)))
    vc = next(x.msg for x in replica._start_view_change(2, net.now) if isinstance(x, Broadcast))
    assert vc.committed is not None and vc.committed.height == 2 and vc.prepared is None


def test_a_new_view_re_proposing_a_height_below_ours_draws_no_vote_and_is_counted() -> None:
    net = committed(2)
    replica = net.replicas[2]
    a = block(b"A")
    for view in (1, 5):
        nv = sign(m.NewView(view, view_changes(view, (0, 1, 3), prepared=prepared(blk=a)),
                            sign(m.PrePrepare(view, 1, a, 1)), 1))
        actions = replica.receive(nv, net.now)
        assert replica.view == view and not any(isinstance(x, Broadcast) and isinstance(x.msg, (m.Prepare, m.Commit))
                                                for x in actions)
    assert replica.stats["old_height"] == 2
