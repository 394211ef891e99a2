"""The round contract: validity rules, determinism, and what the shell must check before voting."""

from __future__ import annotations

import hashlib

import pytest
from nacl.signing import SigningKey

from consensus.block import Block
from node import contract as rc

CHAIN = hashlib.sha256(b"test chain").digest()
N = 4
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(N)]
M0 = hashlib.sha256(b"initial model").digest()


def verify(i: int, data: bytes, sig: bytes) -> bool:
    try:
        KEYS[i].verify_key.verify(data, sig)
    except Exception:  # noqa: BLE001 - any failure means invalid in this reference verifier
        return False
    return True


def tx(kind: str, author: int, round_id: int, *fields: object) -> bytes:
    return rc.make_tx(CHAIN, kind, author, round_id, list(fields), lambda b: KEYS[author].sign(b).signature)


def block(height: int, proposer: int, *txs: bytes) -> Block:
    return Block(CHAIN, height, CHAIN, 0, proposer, tuple(txs))


def contract(rounds: int = 2, min_updates: int = 3) -> rc.Contract:
    return rc.Contract(rc.ContractParams(CHAIN, N, rounds, M0, min_updates), verify)


def validated_contract(n: int = N) -> rc.Contract:
    """A validated-mode contract of N = n members: f = (n - 1) // 3, t = 1, t_v = f, 4 rounds, 3 updates, late
    members may lower f_eff (`ContractParams.exclude_late`)."""
    return rc.Contract(rc.ContractParams(CHAIN, n, 4, M0, 3, secure=True, degree=1, validate=True,
                                         validation_degree=(n - 1) // 3, exclude_late=True, sketch_width=8),
                       verify)


def upd(author: int, round_id: int = 1) -> bytes:
    return tx("update", author, round_id, hashlib.sha256(bytes([author, round_id])).digest(), 10 + author)


def test_full_round_applies_and_reports_outcome() -> None:
    c = contract()
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    assert c.state.open and c.state.round == 1
    m1 = hashlib.sha256(b"m1").digest()
    b2 = block(2, 0, *(upd(a) for a in range(N)), tx("result", 0, 1, [0, 1, 2, 3], m1))
    checks = c.check_block(b2)
    assert len(checks) == 1 and isinstance(checks[0], rc.AggregateCheck)
    assert [a for a, _, _ in checks[0].included] == [0, 1, 2, 3] and checks[0].new_model_hash == m1
    events = c.apply_block(b2)
    assert events == [rc.RoundOutcome(1, True, (0, 1, 2, 3), m1, 2)] and c.state.model_hash == m1


def test_partial_result_and_abort_need_the_deadline() -> None:
    c = contract()
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    partial = block(2, 0, upd(0), upd(1), upd(2), tx("result", 0, 1, [0, 1, 2], M0))
    assert any(isinstance(ch, rc.DeadlineCheck) for ch in c.check_block(partial))
    assert c.check_block(block(2, 0, tx("abort", 0, 1, "slow"))) == [rc.DeadlineCheck(1, "collect")]


@pytest.mark.parametrize(("bad", "reason"), [
    pytest.param(lambda: block(1, 0, tx("open", 0, 2, M0, [0, 1, 2, 3])), "cannot open round 2", id="skips-a-round"),
    pytest.param(lambda: block(1, 0, tx("open", 0, 1, b"\x01" * 32, [0, 1, 2, 3])), "a model other than the current",
                 id="wrong-model"),
    pytest.param(lambda: block(1, 1, tx("open", 0, 1, M0, [0, 1, 2, 3])), "authored by the block proposer",
                 id="not-by-proposer"),
    pytest.param(lambda: block(1, 0, tx("open", 0, 1, M0, [0, 1])), "too few participants",
                 id="too-few-participants"),
    pytest.param(lambda: block(1, 0, upd(1)), "round 0 open=False", id="update-before-open"),
    pytest.param(lambda: block(1, 0, b"\x93\x01\x02"), "malformed tx", id="garbage"),
])
def test_invalid_blocks_are_refused(bad, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(rc.TxError, match=reason):
        contract().check_block(bad())


@pytest.mark.parametrize(("txs", "reason"), [
    pytest.param(lambda: [upd(3)], "member 3 .*not expected", id="not-a-participant"),
    pytest.param(lambda: [upd(1), upd(1)], "member 1 .*a second input", id="twice"),
    pytest.param(lambda: [upd(0), upd(1), upd(2), tx("result", 0, 1, [0, 1], M0)], "exactly the round's committed",
                 id="result-leaves-out-an-input"),
    pytest.param(lambda: [upd(0), upd(1), tx("result", 0, 1, [0, 1], M0)], "has 2 inputs, needs 3",
                 id="below-min-updates"),
])
def test_round_rules_inside_an_open_round(txs, reason: str) -> None:  # type: ignore[no-untyped-def]
    c = contract()
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2])))
    with pytest.raises(rc.TxError, match=reason):
        c.check_block(block(2, 0, *txs()))


def test_forged_signature_is_refused() -> None:
    raw = rc.make_tx(CHAIN, "update", 2, 1, [b"\x00" * 32, 5], lambda b: KEYS[1].sign(b).signature)
    with pytest.raises(rc.TxError, match="signature"):
        contract().parse(raw)


def test_check_block_does_not_mutate_and_apply_skips_invalid_deterministically() -> None:
    c = contract()
    c.check_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    assert not c.state.open
    c.apply_block(block(1, 0, upd(1), tx("open", 0, 1, M0, [0, 1, 2, 3]), upd(2)))
    assert c.state.open and list(c.state.inputs) == [2]


def test_finished_after_last_round() -> None:
    c = contract(rounds=1)
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    c.apply_block(block(2, 0, upd(0), upd(1), upd(2), upd(3), tx("result", 0, 1, [0, 1, 2, 3], M0)))
    assert c.finished
    with pytest.raises(rc.TxError, match="cannot open round 2"):
        c.check_block(block(3, 0, tx("open", 0, 2, M0, [0, 1, 2, 3])))


def test_aborted_round_is_retried_under_the_next_round_id() -> None:
    c = contract(rounds=1)
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    c.apply_block(block(2, 0, tx("abort", 0, 1, "deadline")))
    assert not c.finished and c.committed_rounds == 0
    assert c.check_block(block(3, 0, tx("open", 0, 2, M0, [0, 1, 2, 3]))) == []


def test_plain_rounds_run_nothing_ahead() -> None:
    """Key phases ahead exist only in secure modes: in a plain round a `close` for the next round is refused
    and the contract keeps no state ahead."""
    c = contract()
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    assert c.state.ahead_phase == "" and c.committed_sa_messages(2) == []
    with pytest.raises(rc.TxError, match="round 2, but round 1"):
        c.check_block(block(2, 0, tx("close", 0, 2, "keys")))
