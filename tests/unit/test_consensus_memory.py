"""What a member's PBFT messages can make a replica hold: the memos of block hashes and signing bytes."""

from __future__ import annotations

import tracemalloc

from consensus import messages as m
from consensus.block import Block
from consensus.replica import Replica, ReplicaConfig
from tests.unit.test_consensus_replica import CHAIN, signer, verify

PREPREPARES = 300
BLOCK_TX_BYTES = 900 << 10
"""One transaction per block, under MAX_BLOCK_IN_MESSAGE_BYTES: 300 of them are 264 MiB if each stays pinned."""
HELD_MAX_BYTES = 2 * m.HASHED_BLOCKS_MAX * m.MAX_BLOCK_IN_MESSAGE_BYTES
"""What they may leave allocated: the `hash_block` memo's blocks, twice over for slack (14 MiB measured)."""


def test_distinct_preprepares_from_a_non_primary_pin_a_bounded_number_of_blocks() -> None:
    """Every PRE-PREPARE's signature is checked before the rules refuse it (member 3 is not the primary of
    view 0); the memos that check uses must not keep each one's block."""
    replica = Replica(ReplicaConfig(CHAIN, 4, 1, view_timeout_ms=100, checkpoint_interval=2), 0, signer(0), verify)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(PREPREPARES):
            block = Block(CHAIN, 5 + i, bytes(32), 0, 3, (i.to_bytes(8, "big") + bytes(BLOCK_TX_BYTES),))
            unsigned = m.PrePrepare(0, 5 + i, block, 3)
            replica.receive(m.PrePrepare(0, 5 + i, block, 3, signer(3)(m.signing_bytes(CHAIN, unsigned))), 0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert replica.stats["preprepare_not_from_primary"] == PREPREPARES, replica.stats
    assert held <= HELD_MAX_BYTES, f"{held >> 20} MiB held after {PREPREPARES} PRE-PREPAREs"
