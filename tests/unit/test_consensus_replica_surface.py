"""The replica's own surface (consensus/replica.py), one rule at a time: the filters in `receive` and their
counters, the half-timeout schedules (retransmission, help to a peer, catch-up grace) and the fetch retry,
the request timer and the watched set, when the view-change timer is armed, stale messages that still help
their sender, and catch-up through `add_committed`.

N = 4, f = 1, quorum 3; the primary of view v is v % 4. Counters are asserted after two identical events,
so each one counts once per event under its own name.
"""

from __future__ import annotations

from collections import Counter

import pytest
from consensus_net import CHAIN, Net, signer, view_1_installed
from test_consensus_attacks import fork_setup
from test_consensus_view_change_checks import sign, view_changes

from consensus import messages as m
from consensus.actions import KEY_NEW_VIEW, MAX_WATCHED_TXS
from consensus.block import Block, CommitCertificate, commit_statement, sha256
from consensus.replica import Broadcast, FetchBlocks, Replica, Send, ValidateBlock

H = b"\7" * 32
A = Block(CHAIN, 1, CHAIN, 0, 0, (b"A",))


def half(timeout_ms: int) -> int:
    """Half a view timeout, rounded down, and at least 1 ms: the retransmission, help and grace period."""
    return max(1, timeout_ms // 2)


def committed_at_1(**cfg: int) -> Net:
    """Every replica has committed A at height 1 in view 0, except replica 3, which saw no COMMIT."""
    net = Net(**cfg)
    net.propose(0, b"A")
    net.deliver(only=lambda to, msg: not (to == 3 and isinstance(msg, m.Commit)))
    assert [r.committed_height for r in net.replicas] == [1, 1, 1, 0]
    return net


def certificate(block: Block, signers=(0, 1, 2)) -> CommitCertificate:
    return CommitCertificate(block.height, 0, block.hash(), tuple(
        (s, signer(s)(commit_statement(CHAIN, 0, block.height, block.hash()))) for s in signers))


FILTERED = {
    "unknown_type": m.PreparedCertificate(m.PrePrepare(0, 1, A, 0), ()),
    "unknown_sender": m.Prepare(0, 1, H, 4),
    "own_message": m.Prepare(0, 1, H, 2),
    "stale (a PREPARE at our committed height)": m.Prepare(0, 0, H, 3),
    "stale (a COMMIT at our committed height)": m.Commit(0, 0, H, 3),
    "bad_signature": m.Prepare(0, 1, H, 3),
}


@pytest.mark.parametrize("case", FILTERED)
def test_each_filter_of_receive_counts_each_message_once_under_its_name_and_does_nothing_else(case: str) -> None:
    replica = Net().replicas[2]
    actions = replica.receive(FILTERED[case], 0) + replica.receive(FILTERED[case], 0)
    assert actions == []
    assert replica.stats == Counter({case.split(" ")[0]: 2})


def test_each_message_past_the_filters_is_counted_as_received() -> None:
    net = Net()
    replica = net.replicas[2]
    for sender in (1, 3):
        replica.receive(net.sign(m.Prepare(0, 1, H, sender)), 0)
    assert replica.stats["received"] == 2


@pytest.mark.parametrize("timeout_ms", [1, 101])
def test_a_view_change_is_resent_every_half_timeout(timeout_ms: int) -> None:
    net = Net(byzantine={0, 1, 3}, view_timeout_ms=timeout_ms)
    replica = net.replicas[2]
    replica.note_pending(0)
    vc_at = []
    for now in range(timeout_ms, timeout_ms + 3 * half(timeout_ms) + 1):
        if any(isinstance(a, Broadcast) and isinstance(a.msg, m.ViewChange) for a in replica.tick(now)):
            vc_at.append(now)
    assert vc_at == [timeout_ms + k * half(timeout_ms) for k in range(4)]


def test_the_first_tick_already_resends() -> None:
    net = Net(byzantine={1, 2, 3})
    pp = net.propose(0, b"a")
    assert Broadcast(pp) in net.replicas[0].tick(0)


@pytest.mark.parametrize("timeout_ms", [1, 101])
def test_a_lagging_peer_is_helped_at_most_once_per_half_timeout_and_every_peer_on_its_own(timeout_ms: int) -> None:
    net = committed_at_1(view_timeout_ms=timeout_ms)
    helper = net.replicas[1]
    helped_at: dict[int, list[int]] = {3: [], 2: []}
    for now in range(3 * half(timeout_ms) + 1):
        for peer, times in helped_at.items():
            actions = helper.receive(net.sign(m.Prepare(0, 1, A.hash(), peer)), now)
            if actions:
                times.append(now)
                assert {a.to for a in actions} == {peer} and all(isinstance(a.msg, m.Commit) for a in actions)
    expected = [k * half(timeout_ms) for k in range(4)]
    assert helped_at == {3: expected, 2: expected}


def test_a_peer_that_showed_a_higher_height_is_not_helped_on_an_old_message() -> None:
    net = committed_at_1()
    helper = net.replicas[1]
    helper.receive(net.sign(m.Prepare(0, 2, H, 3)), net.now)
    assert helper.receive(net.sign(m.Prepare(0, 1, A.hash(), 3)), net.now) == []


def test_a_replayed_lower_claim_does_not_lower_what_a_peer_has_shown() -> None:
    net = Net()
    replica = net.replicas[0]
    for sender, height in ((1, 4), (2, 4), (2, 2)):
        replica.receive(net.sign(m.Checkpoint(height, H, sender)), net.now)
    assert replica._ahead == {1: 4, 2: 4}


def test_a_message_of_an_old_view_for_our_next_height_draws_no_help() -> None:
    """A fresh incarnation knows nothing of its peers: the stale message's own claim decides."""
    net = view_1_installed()
    net.execute(1, net.replicas[1].propose((b"A",), net.now))
    net.deliver()
    net.restart(2)
    assert net.replicas[2].committed_height == 1 and net.replicas[2].view == 1
    assert net.replicas[2].receive(net.sign(m.Prepare(0, 2, H, 3)), net.now) == []


CLAIMS = {
    "one behind: wait a grace period": ((1, 1), 1),
    "two behind: at once": ((2, 2), 0),
    "the f+1-th highest claim decides, not the highest": ((1, 3), 1),
}


@pytest.mark.parametrize("timeout_ms", [1, 101])
@pytest.mark.parametrize("case", CLAIMS)
def test_catch_up_fetches_after_its_grace_retries_every_timeout_and_rotates_over_the_peers(
        case: str, timeout_ms: int) -> None:
    """Peers 1 and 2 show how far they are (a PREPARE for h + 1 says h is committed); peers that showed the
    target come first, then every other peer but us, in turn."""
    claims, waits = CLAIMS[case]
    net = Net(byzantine={0, 1, 2}, view_timeout_ms=timeout_ms)
    replica = net.replicas[3]
    start = 1000
    for sender, height in zip((1, 2), claims, strict=True):
        replica.receive(net.sign(m.Prepare(0, height + 1, H, sender)), start)
    fetches = []
    for now in range(start, start + waits * half(timeout_ms) + 5 * timeout_ms + 1):
        fetches += [(now, a) for a in replica.tick(now) if isinstance(a, FetchBlocks)]
    first = start + waits * half(timeout_ms)
    assert fetches == [(first + k * timeout_ms, FetchBlocks(1, peer)) for k, peer in enumerate([1, 2, 0] * 2)]
    assert replica.stats["fetch_requests"] == 6


def test_a_replica_restarted_behind_its_stable_checkpoint_fetches() -> None:
    net = Net(byzantine={0, 1, 2})
    for sender in (0, 1, 2):
        net.to(3, net.sign(m.Checkpoint(2, H, sender)))
    assert net.replicas[3].stable_checkpoint == (2, H)
    net.restart(3)
    assert net.replicas[3].stats["fetch_requests"] == 1, "on its first tick, knowing no peer's height"


def request_timeout_at(rewatch_at: int | None = None) -> int:
    """Replica 1 watches a transaction no block carries, from time 0, while a block commits every 50 ms;
    the time of its first request timeout."""
    net = Net()
    digest = sha256(b"censored")
    net.execute(1, net.replicas[1].watch_tx(digest, net.now))
    for k in range(100):
        if net.now == rewatch_at:
            net.execute(1, net.replicas[1].watch_tx(digest, net.now))
        if net.now % 50 == 0:
            net.propose(net.replicas[0].primary(net.replicas[0].view), b"tx%d" % k)
        net.tick(10)
        if net.replicas[1].stats["request_timeouts"]:
            return net.now
    raise AssertionError("no request timeout")


def test_the_request_timer_fires_at_exactly_its_factor_of_view_timeouts_from_the_first_watch() -> None:
    deadline = Net().config.request_timeout_factor * Net().config.view_timeout_ms
    assert request_timeout_at() == deadline
    assert request_timeout_at(rewatch_at=150) == deadline, "watching again does not restart the timer"


def test_watching_is_bounded_by_max_watched_txs() -> None:
    replica = Net().replicas[1]
    digests = [sha256(b"%d" % k) for k in range(MAX_WATCHED_TXS + 1)]
    for digest in digests:
        replica.watch_tx(digest, 0)
    assert list(replica._watched) == digests[:-1]
    replica = Net().replicas[1]
    replica.watch_only(digests, 0)
    assert len(replica._watched) == MAX_WATCHED_TXS


def test_watch_only_arms_the_timer_only_when_something_is_watched() -> None:
    replica = Net().replicas[1]
    assert replica.watch_only([], 0) == [] and replica.deadline_ms is None and not replica.work_pending
    assert replica.watch_only([sha256(b"x")], 5) == [] and replica.deadline_ms == 5 + replica.timeout_ms()


def test_unwatch_forgets_a_watched_digest_and_ignores_an_unknown_one() -> None:
    replica = Net().replicas[1]
    replica.watch_tx(sha256(b"x"), 0)
    replica.unwatch_tx(sha256(b"y"))
    assert list(replica._watched) == [sha256(b"x")]
    replica.unwatch_tx(sha256(b"x"))
    assert replica._watched == {}


def test_note_pending_arms_the_timer_once_and_never_while_changing_views() -> None:
    replica = Net().replicas[1]
    replica.note_pending(0)
    replica.note_pending(50)
    assert replica.deadline_ms == 100
    replica.tick(100)
    assert not replica.active and replica.deadline_ms is None
    replica.note_pending(150)
    assert replica.deadline_ms is None


def test_a_proposal_still_pending_after_a_view_change_arms_the_timer_in_the_next_view() -> None:
    """Replica 0 proposed (its PRE-PREPARE never arrives) and nothing else is pending anywhere it knows of."""
    net = Net()
    net.propose(0, b"lost")
    for i in (1, 2, 3):
        net.execute(i, net.replicas[i].note_pending(net.now))
    for _ in range(20):
        net.now += 10
        for i in range(net.n):
            net.execute(i, net.replicas[i].tick(net.now))
        net.deliver(only=lambda to, msg: not isinstance(msg, m.PrePrepare))
    primary = net.replicas[0]
    assert primary.view == 1 and primary.active
    assert primary.deadline_ms is not None


def test_a_late_validation_that_completes_a_commit_rearms_the_timer_at_that_time() -> None:
    net = Net(byzantine={0, 1, 3}, auto_validate=False)
    replica = net.replicas[2]
    replica.watch_tx(sha256(b"elsewhere"), 0)
    net.to(2, net.sign(m.PrePrepare(0, 1, A, 0)))
    for sender in (1, 3):
        net.to(2, net.sign(m.Prepare(0, 1, A.hash(), sender)))
        net.to(2, net.sign(m.Commit(0, 1, A.hash(), sender)))
    net.now = 70
    net.validate(2)
    assert replica.committed_height == 1 and replica.deadline_ms == 70 + replica.timeout_ms()


def test_a_certificate_that_finalises_a_held_block_rearms_the_timer_at_that_time() -> None:
    net = Net(byzantine={0, 1, 3})
    replica = net.replicas[2]
    replica.watch_tx(sha256(b"elsewhere"), 0)
    net.to(2, net.sign(m.PrePrepare(0, 1, A, 0)))
    replica.receive(net.sign(m.ViewChange(1, certificate(A, (0, 1, 3)), None, 3)), 70)
    assert replica.committed_height == 1 and replica.deadline_ms == 70 + replica.timeout_ms()


@pytest.mark.parametrize("timer", ["view_timeouts", "request_timeouts"])
def test_a_single_replica_changes_view_on_its_own_when_a_timer_fires(timer: str) -> None:
    """Its own VIEW-CHANGE is a quorum: the NEW-VIEW's timer is armed at the time of the tick, and fires again."""
    net = Net(n=1, f=0)
    replica = net.replicas[0]
    replica.watch_tx(sha256(b"never proposed"), 0)
    for now in range(50, 2000, 50):
        if timer == "request_timeouts":
            net.execute(0, replica.propose((b"%d" % now,), now))
        replica.tick(now)
        if replica.view == 2:
            break
    assert replica.view == 2 and replica.active
    assert (replica.stats["view_timeouts"], replica.stats["request_timeouts"]) == (
        (2, 0) if timer == "view_timeouts" else (0, 2))
    assert replica.deadline_ms == now + replica.timeout_ms()


def test_a_restored_replica_takes_up_its_forced_pre_prepare_on_a_tick_that_also_changes_view() -> None:
    net, block_b, _ = fork_setup()
    block, cert = net.ledgers[2][-1]
    replica = Replica(net.config, 2, signer(2), net.verify, persisted=dict(net.persisted[2]),
                      committed=(block.height, cert.block_hash), committed_cert=cert)
    replica.note_pending(net.now)
    actions = replica.tick(net.now + replica.timeout_ms())
    assert ValidateBlock(block_b) in actions
    assert any(isinstance(a, Broadcast) and isinstance(a.msg, m.ViewChange) for a in actions)


def test_a_replica_with_nothing_pending_installs_a_view_without_arming_its_timer() -> None:
    net = Net()
    replica = net.replicas[2]
    replica.receive(sign(m.NewView(1, view_changes(1, (0, 1, 3)), None, 1)), net.now)
    assert replica.view == 1 and replica.active and replica.deadline_ms is None


def test_block_verdicts_count_each_invalid_candidate_once_and_ignore_unknown_or_repeated_ones() -> None:
    net = Net(byzantine={0, 1, 3}, auto_validate=False)
    replica = net.replicas[2]
    net.to(2, net.sign(m.PrePrepare(0, 1, A, 0)))
    other = Block(CHAIN, 1, CHAIN, 0, 0, (b"other",))
    replica._remember_candidate(other.hash(), other)
    for block_hash in (A.hash(), A.hash(), H, other.hash()):
        assert replica.block_validated(block_hash, False, 0) == []
    assert replica.stats["invalid_block"] == 2


def test_a_resent_new_view_is_stale_and_an_old_view_change_gets_our_new_view() -> None:
    net = view_1_installed()
    replica = net.replicas[2]
    nv = m.decode(net.persisted[2][KEY_NEW_VIEW])
    stale = replica.stats["stale"]
    assert replica.receive(nv, net.now) == []
    assert replica.stats["stale"] == stale + 1
    assert replica.receive(net.sign(m.ViewChange(0, None, None, 3)), net.now) == [Send(3, nv)]


def test_once_a_view_is_installed_and_a_checkpoint_stable_neither_is_resent() -> None:
    net = view_1_installed()
    for k in range(2):
        net.execute(1, net.replicas[1].propose((b"%d" % k,), net.now))
        net.deliver()
    replica = net.replicas[2]
    assert replica.stable_checkpoint[0] == 2 and replica.active
    resent = replica.tick(net.now + 1000)
    assert not any(isinstance(a.msg, (m.ViewChange, m.Checkpoint)) for a in resent if isinstance(a, Broadcast))


def test_a_replica_started_from_a_committed_head_quotes_and_shares_its_certificate() -> None:
    net = committed_at_1()
    block, cert = net.ledgers[1][0]
    replica = Replica(net.config, 1, signer(1), net.verify, committed=(1, cert.block_hash), committed_cert=cert)
    helped = replica.receive(net.sign(m.Prepare(0, 1, block.hash(), 3)), 0)
    assert helped == [Send(3, m.Commit(0, 1, cert.block_hash, s, sig)) for s, sig in cert.signatures if s != 3]
    replica.note_pending(0)
    vc = next(a.msg for a in replica.tick(100) if isinstance(a, Broadcast) and isinstance(a.msg, m.ViewChange))
    assert vc.committed == cert


def test_catch_up_counts_each_block_and_each_refusal_once() -> None:
    net = Net(byzantine={0, 1, 3})
    replica = net.replicas[2]
    second = Block(CHAIN, 2, A.hash(), 0, 0, (b"B",))
    unlinked = Block(CHAIN, 1, bytes(32), 0, 0, (b"U",))
    attempts = [(second, certificate(second)), (unlinked, certificate(unlinked)),
                (A, certificate(A, (0, 0, 1))), (A, certificate(A, (1, 1, 3)))]
    for block, cert in attempts:
        assert replica.add_committed(block, cert, 0) == []
    for block in (A, second):
        assert any(type(a).__name__ == "Deliver" for a in replica.add_committed(block, certificate(block), 0))
    assert replica.committed_height == 2
    assert {k: v for k, v in replica.stats.items() if k.startswith("catchup")} == {
        "catchup_not_next": 2, "catchup_bad_certificate": 2, "catchup_blocks": 2}
