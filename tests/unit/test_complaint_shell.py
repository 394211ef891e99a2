"""The daemon side of complaints (docs/validation.md, G8): the primary waits 4 phase deadlines before it aborts a
validate phase with complaints, and a replica votes for a complaint only within its window and for such an
abort only after 0.8 x 4 deadlines, each on its own clock."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from consensus.block import Block
from node import contract as rc
from tests.unit.test_daemon_join import ME, N, _member_config, _running

DEALER = (ME + 1) % N


def _validating(d, *, complaints: dict[tuple[int, int], str], started_deadlines_ago: float) -> float:  # type: ignore[no-untyped-def]
    """Put the daemon's contract in round 1's validate phase, opened here, the phase started that long ago."""
    s = d.contract.state
    s.round, s.open, s.phase, s.participants = 1, True, "validate", tuple(range(N))
    s.expected, s.inputs, s.complaints = tuple(range(N)), {}, dict(complaints)
    deadline = d.settings.phase_deadline_s
    d.timings.round_opened_at[1] = time.monotonic()
    d.timings.phase_started[(1, "validate")] = time.monotonic() - started_deadlines_ago * deadline
    return deadline


def _block(d, *txs: bytes) -> Block:  # type: ignore[no-untyped-def]
    return Block(d.contract.params.chain_id, d.contract.state.height + 1, b"\0" * 32, 0, ME, tuple(txs))


def test_with_complaints_the_primary_aborts_after_four_deadlines_and_replicas_agree_only_then(tmp_path: Path) -> None:
    with _running(_member_config(tmp_path)) as d:
        _validating(d, complaints={(DEALER, ME): "open"}, started_deadlines_ago=2.0)
        assert trio.run(d.proposer.next_block_txs) is None, "a dealer may still answer: no abort yet"
        _validating(d, complaints={(DEALER, ME): "open"}, started_deadlines_ago=4.1)
        txs = trio.run(d.proposer.next_block_txs)
        assert txs is not None and d.contract.parse(txs[0]).kind == "abort"  # (then the retry's open)
        block = _block(d, txs[0])
        assert d.contract.check_block(block) == [rc.DeadlineCheck(1, "validate", rc.COMPLAINT_ABORT_DEADLINES)]
        _validating(d, complaints={(DEALER, ME): "open"}, started_deadlines_ago=3.0)
        assert not trio.run(d.validator.block_ok, block), "3 deadlines are less than 0.8 x 4"
        _validating(d, complaints={(DEALER, ME): "open"}, started_deadlines_ago=3.3)
        assert trio.run(d.validator.block_ok, block)


def test_without_complaints_the_validate_phase_aborts_after_two_deadlines(tmp_path: Path) -> None:
    """Past the complaint window (1.05 deadlines on a replica's clock) before anyone votes for the abort."""
    with _running(_member_config(tmp_path)) as d:
        _validating(d, complaints={}, started_deadlines_ago=1.1)
        assert trio.run(d.proposer.next_block_txs) is None, "a complaint may still land: no abort yet"
        _validating(d, complaints={}, started_deadlines_ago=2.1)
        txs = trio.run(d.proposer.next_block_txs)
        assert txs is not None and d.contract.parse(txs[0]).kind == "abort"
        block = _block(d, txs[0])
        assert d.contract.check_block(block) == [rc.DeadlineCheck(1, "validate", rc.VALIDATE_ABORT_DEADLINES)]
        _validating(d, complaints={}, started_deadlines_ago=1.1)
        assert not trio.run(d.validator.block_ok, block), "1.1 deadlines are inside the complaint window"


def test_after_answers_the_primary_aborts_a_deadline_and_a_quarter_after_the_last_and_replicas_a_deadline_after_it(
        tmp_path: Path) -> None:
    """Red team g8 f3: every complaint answered, the validate phase 3 deadlines old, the last answer committed
    half a deadline ago: its holder still has time to publish or disclose, so no abort yet; 1.3 deadlines after
    the answer the primary aborts, and a replica votes for it only once it saw the answer committed a deadline
    ago (0.8 x 1.25)."""
    with _running(_member_config(tmp_path)) as d:
        deadline = d.settings.phase_deadline_s

        def answered(deadlines_ago: float) -> None:
            _validating(d, complaints={(DEALER, ME): "answered"}, started_deadlines_ago=3.0)
            d.contract.state.height, d.contract.state.answered_height = 5, 4
            d.timings.phase_started[(1, "answered")] = time.monotonic() - deadlines_ago * deadline

        answered(0.5)
        assert trio.run(d.proposer.next_block_txs) is None, "the answered holder may still publish"
        answered(1.3)
        txs = trio.run(d.proposer.next_block_txs)
        assert txs is not None and d.contract.parse(txs[0]).kind == "abort"
        block = _block(d, txs[0])
        assert d.contract.check_block(block) == [rc.DeadlineCheck(1, "validate", rc.VALIDATE_ABORT_DEADLINES,
                                                                  rc.STATISTICS_AFTER_ANSWER_DEADLINES)]
        answered(0.95)
        assert not trio.run(d.validator.block_ok, block), "less than a deadline after the answer"
        answered(1.02)
        assert trio.run(d.validator.block_ok, block)


def test_a_replica_votes_for_a_complaint_only_within_its_window(tmp_path: Path) -> None:
    with _running(_member_config(tmp_path)) as d:
        complaint = rc.make_tx(d.contract.params.chain_id, "complaint", ME, 1, [DEALER], d.identity.sign)
        _validating(d, complaints={}, started_deadlines_ago=0.5)
        assert trio.run(d.validator.block_ok, _block(d, complaint))
        _validating(d, complaints={}, started_deadlines_ago=1.2)
        assert not trio.run(d.validator.block_ok, _block(d, complaint))


def test_every_complaint_step_reaches_the_primarys_mempool(tmp_path: Path) -> None:
    """A complaint, an answer and a disclosure from a peer are admitted by the mempool (a disclosure dropped
    there would leave a holder that received a junk answer unable to prove it: named instead of its dealer)."""
    with _running(_member_config(tmp_path)) as d:
        _validating(d, complaints={(ME, DEALER): "answered"}, started_deadlines_ago=1.5)
        chain = d.contract.params.chain_id
        sign = d.identity.sign
        for kind, fields in (("complaint", [DEALER]), ("answer", [DEALER, b"sealed"]),
                             ("disclose", [DEALER, bytes(32)])):
            raw = rc.make_tx(chain, kind, ME, 1, fields, sign)
            d.mempool.accept(raw)
            assert any(tx.raw == raw for tx in d.mempool.txs.values()), kind
