"""How many synced writes the daemon makes for an action list (`Daemon._execute`), and that what the
replica asked to persist is on disk before anything of the list leaves the node.

A list that delivers a block before it sends anything writes the replica's state in the block's synced
batch; a list that sends first writes it alone, before the send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.block import Block, CommitCertificate, commit_statement
from consensus.messages import Commit
from consensus.replica import Broadcast, Deliver, Persist
from node.config import load_node_config
from node.daemon import Daemon
from node.identity import load as load_identity
from tests.unit.test_daemon_join import _member_config, _running

N = 4


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with _running(_member_config(tmp_path)) as d:
        yield d


def _certified_next_block(d: Daemon) -> tuple[Block, CommitCertificate]:
    """An empty block at the next height with a certificate signed by the first three members."""
    block = Block(d.genesis.chain_id, d.store.head_height + 1, d.store.head_hash(), 0, 0, ())
    statement = commit_statement(d.genesis.chain_id, 0, block.height, block.hash())
    homes = sorted((d.cfg.home / "..").resolve().glob("node-*/config.json"))[:3]
    signatures = tuple((i, load_identity(load_node_config(home).key_path).sign(statement))
                       for i, home in enumerate(homes))
    return block, CommitCertificate(block.height, 0, block.hash(), signatures)


def _synced_writes(d: Daemon, actions: list[Any]) -> list[tuple[str, list[bytes]]]:
    """Run `actions` through `_execute`; return each synced write as (what, keys), and check that every
    persisted key was on disk when the list's first broadcast was handed to the transport."""
    writes: list[tuple[str, list[bytes]]] = []
    store, transport = d.store, d.transport
    write_batch, append, broadcast = store.write_batch_sync, store.append_block, transport.broadcast
    persisted = [a.key for a in actions if isinstance(a, Persist)]

    def counting_batch(puts: Any, deletes: Any = ()) -> None:
        puts = list(puts)
        writes.append(("batch", [k for k, _ in puts]))
        write_batch(puts, deletes)

    def counting_append(block: Block, cert: CommitCertificate, blobs: Any = None, puts: Any = ()) -> None:
        writes.append(("block", [k for k, _ in puts]))
        append(block, cert, blobs, puts)

    async def checked_broadcast(kind: str, height: int, payload: bytes) -> None:
        assert all(store.get(key) is not None for key in persisted), "sent before its state was on disk"
        await broadcast(kind, height, payload)

    store.write_batch_sync, store.append_block = counting_batch, counting_append  # type: ignore[method-assign]
    transport.broadcast = checked_broadcast  # type: ignore[method-assign]
    trio.run(d._execute, actions)
    return writes


def test_a_delivery_writes_the_replica_state_in_the_blocks_batch(daemon: Daemon) -> None:
    block, cert = _certified_next_block(daemon)
    writes = _synced_writes(daemon, [Persist(b"pbft/cert", cert.encode()), Deliver(block, cert),
                                     Persist(b"pbft/checkpoint", b"c")])
    assert writes == [("block", [b"pbft/cert", b"pbft/checkpoint"])]
    assert daemon.store.head_height == 1 and daemon.store.get(b"pbft/cert") == cert.encode()


def test_state_is_written_alone_before_a_send_that_comes_before_the_delivery(daemon: Daemon) -> None:
    block, cert = _certified_next_block(daemon)
    commit = Commit(0, 1, block.hash(), daemon.index, b"s" * 64)
    writes = _synced_writes(daemon, [Persist(b"pbft/signed/commit", b"v"), Broadcast(commit),
                                     Persist(b"pbft/cert", cert.encode()), Deliver(block, cert)])
    assert writes == [("batch", [b"pbft/signed/commit", b"pbft/cert"]), ("block", [])]
