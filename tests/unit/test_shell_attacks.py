"""A hostile member against the daemon's shell components (issue 17), each played against the component.

The mempool flood, the stale-blocks liar, oversized block answers, a handler that a peer's bytes make
raise, and fetches answered with wrong content: each test is the member's attack, then what the honest
node must still do.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import pytest
import trio
from nacl.signing import SigningKey

from consensus import codec
from consensus import messages as pbft
from consensus.block import Block
from node import contract as rc
from node.config import ConfigError
from node.daemon import evidence_slot
from node.faults import OVERRUN_BYTES, Faults
from node.hooks import SHELL_FAULT_NAMES
from node.libp2p_compat import YAMUX_INITIAL_WINDOW_BYTES
from node.mempool import AUTHOR_BYTES_MAX, AUTHOR_TXS_MAX, Mempool
from node.quotas import AuthorCache
from node.rounds import RoundDriver
from node.secure_rounds import SecureRounds
from node.status import Metrics
from node.store import Store
from node.sync import Sync
from node.transport import Transport, contained
from node.wire import Envelope
from smpc import messages as sam
from tests.unit.test_store import build_chain, make_genesis

CHAIN = hashlib.sha256(b"shell attacks").digest()
N = 4
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(N)]
M0 = hashlib.sha256(b"initial model").digest()


def verify(i: int, data: bytes, sig: bytes) -> bool:
    try:
        KEYS[i].verify_key.verify(data, sig)
    except Exception:  # noqa: BLE001 - any failure means invalid
        return False
    return True


def tx(kind: str, author: int, round_id: int, *fields: object) -> bytes:
    return rc.make_tx(CHAIN, kind, author, round_id, list(fields), lambda b: KEYS[author].sign(b).signature)


def update(author: int, round_id: int, nonce: int) -> bytes:
    return tx("update", author, round_id, hashlib.sha256(b"%d %d" % (author, nonce)).digest(), 10)


def open_contract() -> rc.Contract:
    contract = rc.Contract(rc.ContractParams(CHAIN, N, 8, M0, 3), verify)
    contract.apply_block(Block(CHAIN, 1, CHAIN, 0, 0, (tx("open", 0, 1, M0, [0, 1, 2, 3]),)))
    assert contract.state.open and contract.state.round == 1
    return contract


def mempool(index: int = 0) -> Mempool:
    async def nowhere(*_: Any) -> None:
        return None

    return Mempool(open_contract(), index, Metrics(), nowhere, nowhere)


# ---------------------------------------------------------------------------------------- finding 3: mempool


def test_a_member_flooding_future_rounds_fills_nothing() -> None:
    pool = mempool()
    for round_id in range(3, 5003):
        pool.accept(update(3, round_id, round_id))
    assert not pool.txs


def test_a_member_flooding_the_admitted_rounds_fills_only_its_quota_and_honest_txs_still_enter() -> None:
    pool = mempool()
    for nonce in range(5000):
        pool.accept(update(3, 1 + nonce % 2, nonce))
    count, held_bytes = pool.held(3)
    assert count <= AUTHOR_TXS_MAX and held_bytes <= AUTHOR_BYTES_MAX
    honest = update(1, 1, 0)
    pool.accept(honest)
    assert hashlib.sha256(honest).digest() in pool.txs


def test_our_own_transactions_are_never_refused() -> None:
    pool = mempool(index=2)
    for nonce in range(AUTHOR_TXS_MAX):
        pool.accept(update(2, 1, nonce))
    own = update(2, 2, 10_000)
    trio.run(pool.submit_own, own, 2, 2)
    assert hashlib.sha256(own).digest() in pool.txs and pool.held(2)[0] == AUTHOR_TXS_MAX + 1


def test_passing_rounds_return_the_quota() -> None:
    pool = mempool()
    for nonce in range(AUTHOR_TXS_MAX):
        pool.accept(update(3, 1, nonce))
    for digest in list(pool.txs):
        pool.forget(digest)
    assert pool.held(3) == (0, 0)
    pool.accept(update(3, 1, 99_999))
    assert pool.held(3)[0] == 1


def test_a_members_overdue_transaction_is_relayed_to_the_primary_once_per_primary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A member's valid transaction a backup holds past RESUBMIT_S arms its request timer (`overdue`); the primary
    may never have got it (the author's connection to it cut), so the backup relays it to the primary first, once
    per primary, and not its own (resubmitted by `tick`) nor what was committed."""
    sent: list[tuple[int, bytes]] = []

    async def send(to: int, _kind: str, _round: int, raw: bytes) -> None:
        sent.append((to, raw))

    async def nowhere(*_: Any) -> None:
        return None

    clock = iter(range(100, 200))
    monkeypatch.setattr("node.mempool.time.monotonic", lambda: float(next(clock)))
    pool = Mempool(open_contract(), 2, Metrics(), send, nowhere)
    theirs, gone = update(3, 1, 1), update(1, 1, 2)
    pool.accept(theirs)
    pool.accept(gone)
    trio.run(pool.submit_own, update(2, 1, 3), 1, 2)
    sent.clear()
    pool.forget(hashlib.sha256(gone).digest())
    overdue = pool.overdue()
    assert hashlib.sha256(theirs).digest() in overdue
    for primary in (0, 0, 1, 1, 2):
        trio.run(pool.relay_overdue, overdue, primary)
    assert sent == [(0, theirs), (1, theirs)]


FLOOD_TXS = 1500
"""60 KiB transactions the memory test floods with: 180 MB pinned if each stayed parsed."""
FLOOD_HELD_MAX_BYTES = 3 * rc.PARSE_CACHE_BYTES
"""What such a flood may leave allocated: the parse memo (its bound in raw bytes, twice that with the decoded
fields, 34 MiB measured) and the flooder's mempool quota (within the memo's), with room to spare."""


def test_a_flood_of_distinct_valid_transactions_holds_bounded_memory() -> None:
    """The attacker's `_mempool_flood`: signed 60 KiB `sa` transactions for the current, the next and far-future
    rounds, all distinct. Each is parsed (and remembered) before the mempool refuses it; what stays allocated
    after the flood must not grow with the number sent."""
    pool = mempool()
    blob = bytes(60 << 10)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for nonce in range(FLOOD_TXS):
            round_id = 1 + nonce % 2 if nonce % 3 else 1000 + nonce
            pool.accept(tx("sa", 3, round_id, nonce.to_bytes(16, "big") + blob))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= FLOOD_HELD_MAX_BYTES, f"{held >> 20} MiB held after {FLOOD_TXS} transactions"
    assert pool.held(3)[1] <= AUTHOR_BYTES_MAX


def test_the_window_overrun_passes_a_new_streams_window_within_the_frames_the_library_reads() -> None:
    """The attack's one SYN frame must overrun every run (more than a new stream's window) and reach our check
    (not more than the library's own frame guard, which would close the connection uncounted)."""
    assert YAMUX_INITIAL_WINDOW_BYTES < OVERRUN_BYTES <= libp2p_yamux.MAX_WINDOW_SIZE


# ---------------------------------------------------------------------------------------- finding 4: catch-up


class FakeTransport:
    """Requests go to in-process `Sync` servers (or a liar's canned answer), in the order given."""

    def __init__(self, answers: dict[str, Any], frame_max_bytes: int = 64 << 20) -> None:
        self.answers = answers
        self.peer_index = {peer: i for i, peer in enumerate(answers)}
        self.violations: Counter[tuple[int, str]] = Counter()
        self.limits = SimpleNamespace(frame_max_bytes=frame_max_bytes)
        self.asked: list[str] = []

    def fetch_order(self) -> list[str]:
        return list(self.answers)

    def connected_peers(self) -> list[str]:
        return list(self.answers)

    async def request(self, peer: str, kind: str, payload: bytes, response_max_bytes: int | None = None) -> bytes:
        self.asked.append(peer)
        answer = self.answers[peer]
        data = answer._blocks_response(payload) if isinstance(answer, Sync) else answer
        assert response_max_bytes is None or len(data) <= response_max_bytes, "an answer above the budget"
        return data

    def violation(self, member: int, reason: str, detail: object = None) -> None:
        self.violations[(member, reason)] += 1


def server(tmp_path: Path, name: str, heights: int) -> Sync:
    genesis = make_genesis()
    store = build_chain(genesis, tmp_path / name, heights)
    return Sync(genesis, store, FakeTransport({}), None, Metrics(), None)  # type: ignore[arg-type]


def lagging(tmp_path: Path, transport: FakeTransport) -> tuple[Sync, Store]:
    genesis = make_genesis()
    store = Store.open(tmp_path / "victim", genesis.chain_id)

    async def apply(block: Block, cert: Any) -> None:
        store.append_block(block, cert)

    return Sync(genesis, store, transport, None, Metrics(), apply), store  # type: ignore[arg-type]


def test_a_member_answering_first_with_stale_blocks_cannot_hold_a_lagging_node_back(tmp_path: Path) -> None:
    honest = server(tmp_path, "honest", 6)
    old_block = honest.store.block(1)
    assert old_block is not None
    stale = codec.encode([[old_block[0].encode(), old_block[1].encode()]])
    transport = FakeTransport({"liar": stale, "honest": honest})
    sync, store = lagging(tmp_path, transport)
    store.append_block(old_block[0], old_block[1])
    trio.run(sync._catch_up_once)
    assert store.head_height == 6
    assert transport.violations[(0, "bad_answer")] == 1


def test_catch_up_ends_after_every_member_was_asked_once(tmp_path: Path) -> None:
    transport = FakeTransport({"liar": b"\x93junk", "silent": b"", "other liar": codec.encode([])})
    sync, store = lagging(tmp_path, transport)
    sync.fetching = False
    trio.run(sync._catch_up_once)
    assert transport.asked == ["liar", "silent", "other liar"] and not sync.fetching and store.head_height == 0
    assert transport.violations == Counter({(0, "bad_answer"): 1, (2, "bad_answer"): 1})


def test_blocks_are_answered_within_the_requesters_byte_budget(tmp_path: Path) -> None:
    """64 blocks above the requester's frame limit made honest catch-up fail every time; now each answer
    fits the budget the requester names and catch-up proceeds in several answers."""
    honest = server(tmp_path, "honest", 40)
    block_bytes = max(len(b.encode()) + len(c.encode()) for b, c in honest.store.blocks())
    transport = FakeTransport({"honest": honest}, frame_max_bytes=5 * block_bytes)
    sync, store = lagging(tmp_path, transport)
    for _ in range(40):
        trio.run(sync._catch_up_once)
    assert store.head_height == 40 and len(transport.asked) > 8


# ---------------------------------------------------------------------------------------- findings 1 and 4: transport


def test_a_handler_failing_on_a_peers_message_is_that_peers_violation_not_the_end() -> None:
    env = Envelope("vshare", 3, 7, 1, b"junk")
    charged: list[tuple[int, str]] = []

    async def decode_fails() -> None:
        codec.decode(b"\xc1", max_bytes=8)

    trio.run(contained, decode_fails(), env, lambda member, reason, _detail: charged.append((member, reason)))
    assert charged == [(3, "handler_error")]

    async def our_bug() -> None:
        raise AssertionError("our own invariant")

    with pytest.raises(AssertionError):
        trio.run(contained, our_bug(), env, lambda *_: None)


def test_a_fetch_answered_with_wrong_content_moves_on_and_charges_the_liar() -> None:
    content = b"the model"
    digest = hashlib.sha256(content).digest()
    fake = FakeTransport({"liar": b"not the model", "honest": content})
    fetched = trio.run(Transport.fetch, _transport_like(fake), "get_blob", digest)
    assert fetched == content and fake.violations == Counter({(0, "bad_answer"): 1})


def _transport_like(fake: FakeTransport) -> Any:
    """A Transport whose network side is `fake` (fetch uses only the order, the requests and the violations)."""
    transport = object.__new__(Transport)
    transport.fetch_order = fake.fetch_order  # type: ignore[method-assign]
    transport.request = fake.request  # type: ignore[method-assign]
    transport.violation = fake.violation  # type: ignore[method-assign]
    transport.peer_index = fake.peer_index
    return transport


# ---------------------------------------------------------------------------------------- finding 5: evidence


def test_evidence_is_keyed_by_the_equivocators_slot() -> None:
    first = pbft.Checkpoint(16, b"\x01" * 32, 3, b"\x00" * 64)
    second = pbft.Checkpoint(16, b"\x02" * 32, 3, b"\x00" * 64)
    data = codec.encode([pbft.encode(first), pbft.encode(second)])
    assert evidence_slot(data) == (3, codec.encode([16]))
    prepare = pbft.Prepare(2, 9, b"\x03" * 32, 1, b"\x00" * 64)
    assert evidence_slot(codec.encode([pbft.encode(prepare), pbft.encode(prepare)])) == (1, codec.encode([2, 9]))


def test_a_junk_share_held_until_its_phase_closes_loses_the_round_here_not_the_daemon() -> None:
    """Finding 1: a junk `vshare` stored on arrival and decoded only when the inputs phase closes (inside
    the delivery of a block) ended every honest daemon. Now the round is lost at this node, nothing else."""

    class JunkHeld:
        def on_phase_closed(self, event: object) -> list[object]:
            codec.decode(b"\x92\x01\x02\x03", max_bytes=8)  # the held junk, decoded now
            return []

    driver = object.__new__(RoundDriver)
    assert driver._advance_secure(JunkHeld(), rc.PhaseClosed(5, "inputs", (0, 1, 2, 3), (), 9)) == []  # type: ignore[arg-type]


def test_a_masked_input_with_a_bad_signature_is_not_kept() -> None:
    """Finding 8: masked inputs were cached before the round checked their signature, so anyone's junk took
    room in the cache honest inputs are fetched from."""
    forged = sam.MaskedInput(round_id=4, sender=2, masked=bytes(64), signature=bytes(64))

    class Round:
        round = 4
        violations: ClassVar[list[object]] = []
        notices: ClassVar[list[str]] = []

        def decode(self, data: bytes) -> sam.MaskedInput:
            return forged

        def on_message(self, message: object) -> None:
            self.violations.append(SimpleNamespace(sender=3))  # what a bad signature records

    content = SimpleNamespace(masked=AuthorCache(4))
    content.keep_masked = lambda author, digest, data: content.masked.put(author, digest, data)
    rounds = SecureRounds(content, Metrics())  # type: ignore[arg-type]
    rounds.rounds[4] = Round()  # type: ignore[assignment]
    rounds.accept_secagg(4, b"forged masked input")
    assert forged.digest() not in content.masked


def test_shell_fault_names_are_checked_and_all_means_every_one() -> None:
    assert Faults({"shell_faults": ["all"]}).shell_faults == SHELL_FAULT_NAMES
    assert Faults({"shell_faults": ["stale-blocks"]}).shell_faults == ("stale-blocks",)
    with pytest.raises(ConfigError, match="shell_faults"):
        Faults({"shell_faults": ["window-overrun", "nope"]})
