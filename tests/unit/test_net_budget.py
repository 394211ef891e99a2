"""Per-peer token buckets of the transport (node.network.budget.PeerBudget): pure, driven by a fake clock."""

from __future__ import annotations

import trio

from node.network import FairInbox, NetLimits, PeerBudget, TokenBucket


def test_charges_within_the_burst_do_not_wait_and_debt_is_repaid_at_the_rate() -> None:
    bucket = TokenBucket(rate=100.0, capacity=200.0, tokens=200.0, stamp=0.0)
    assert bucket.charge(150, now=0.0) == 0.0
    assert bucket.charge(150, now=0.0) == 1.0  # 100 tokens of debt at 100 per second
    assert bucket.charge(0, now=1.0) == 0.0
    assert bucket.available(now=100.0) == 200.0  # refills to the capacity, no further


def test_a_frame_larger_than_the_burst_still_passes_after_its_wait() -> None:
    bucket = TokenBucket(rate=10.0, capacity=10.0, tokens=10.0, stamp=0.0)
    assert bucket.charge(50, now=0.0) == 4.0


def test_a_flood_is_bounded_by_burst_plus_rate_times_time() -> None:
    limits = NetLimits(peer_bytes_per_s=1000.0, peer_bytes_burst=float(1 << 20), peer_msgs_per_s=10.0,
                       peer_msgs_burst=20.0)
    budget = PeerBudget.full(limits, now=0.0)
    taken = sum(budget.try_charge(1, now=i / 1000) for i in range(10_000))  # 10 s of 1000 messages/s
    assert taken <= 20 + 10 * 10 + 1


def test_try_charge_takes_nothing_when_either_bucket_is_short() -> None:
    limits = NetLimits(peer_bytes_per_s=1.0, peer_bytes_burst=float(1 << 20), peer_msgs_per_s=1.0,
                       peer_msgs_burst=5.0)
    budget = PeerBudget.full(limits, now=0.0)
    assert not budget.try_charge((1 << 20) + 1, now=0.0)
    assert budget.messages.tokens == 5.0 and budget.bytes.tokens == float(1 << 20)
    assert budget.try_charge(1 << 20, now=0.0)
    assert not budget.try_charge(1, now=0.0)


def test_a_flooding_member_fills_only_its_own_inbox_queue_and_others_are_served_in_turn() -> None:
    inbox = FairInbox(per_peer_max=100)
    flood = [("direct", "flooder", b"%d" % i) for i in range(1000)]
    assert sum(inbox.put_nowait(item) for item in flood) == 100
    assert inbox.put_nowait(("direct", "honest", b"vote"))
    assert inbox.put_nowait(("gossip", "other", b"tx"))

    async def first_three() -> list[tuple[str, str, bytes]]:
        return [await inbox.receive() for _ in range(3)]

    assert trio.run(first_three) == [flood[0], ("direct", "honest", b"vote"), ("gossip", "other", b"tx")]
    assert inbox.statistics().current_buffer_used == 99
