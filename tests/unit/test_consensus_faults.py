"""node.consensus_faults: the live-cluster consensus faults, driven against honest replicas (consensus_net)."""

from __future__ import annotations

from consensus_net import CHAIN, Net, signer

from consensus import messages as m
from consensus.replica import Send
from node.consensus_faults import FLOOD_BATCH, ConsensusFault


def fault(mode: str, index: int = 0) -> ConsensusFault:
    return ConsensusFault(mode, index, 4, CHAIN, signer(index), checkpoint_interval=2, view_timeout_ms=100)


def run_faulty(net: Net, i: int, f: ConsensusFault, actions) -> None:
    replica = net.replicas[i]
    net.execute(i, f.actions(actions, replica.view, replica.committed_height, net.now))


def test_equivocating_primary_splits_the_backups_and_commits_nothing_conflicting() -> None:
    net = Net()
    f = fault("equivocate")
    run_faulty(net, 0, f, net.replicas[0].propose((b"a", b"b"), net.now))
    sent = [e for e in net.inbox[1] + net.inbox[2] + net.inbox[3] if isinstance(e, m.PrePrepare)]
    assert len({pp.block.hash() for pp in sent}) == 2
    assert all(net.verify(0, m.signing_bytes(CHAIN, pp), pp.signature) for pp in sent)
    net.deliver()
    assert net.fork() == [] and not any(net.ledgers), "neither block gathers a quorum of COMMITs"


def test_floods_are_rate_limited_and_do_not_stop_the_chain() -> None:
    for mode in ("checkpoint-flood", "vote-flood"):
        net = Net()
        f = fault(mode, index=3)
        for k in range(8):
            primary = net.replicas[0].primary(net.replicas[0].view)
            net.execute(primary, net.replicas[primary].propose((b"t%d" % k,), net.now))
            for _ in range(20):
                net.now += 5
                run_faulty(net, 3, f, net.replicas[3].tick(net.now))
                net.deliver()
        assert all(len(net.ledgers[i]) == 8 for i in range(3)), mode


def test_a_flood_sends_at_most_its_rate() -> None:
    f = fault("vote-flood", index=3)
    sent = sum(len(f.actions([], 0, 1, t)) for t in range(0, 1000, 5))
    assert 30 <= sent <= 40 + FLOOD_BATCH


def test_censor_drops_only_the_victims_transactions() -> None:
    f = fault("censor", index=3)
    assert f.victim == 0
    assert f.proposal([b"x", b"y", b"z"], [0, 1, 0]) == [b"y"]


def test_slow_primary_waits_most_of_a_view_timeout() -> None:
    f = fault("slow-primary")
    assert not f.propose_now(5, 0)
    assert not f.propose_now(5, 79)
    assert f.propose_now(5, 80)
    assert not f.propose_now(6, 81), "a new height, a new wait"
    assert fault("censor").propose_now(5, 0)


def test_equivocation_sends_each_backup_one_pre_prepare() -> None:
    net = Net()
    out = fault("equivocate").actions(net.replicas[0].propose((b"a", b"b"), 0), 0, 0, 0)
    assert sorted(a.to for a in out if isinstance(a, Send)) == [1, 2, 3]
