"""The `eval` transaction: each member's held-out evaluation of a committed model, on the ledger.

Attack-style: a member replays its eval, evaluates a round that is too old or not committed, names a model
other than the committed one, inflates its held-out rows after declaring them, claims more correct rows than
rows, or a non-member signs one. Each must be refused with a reason; the accepted ones make the consortium
accuracy of the round.
"""

from __future__ import annotations

import hashlib

import pytest
from nacl.signing import SigningKey

from node import contract as rc
from node.consortium import consortium_accuracy
from tests.unit.test_contract import CHAIN, KEYS, M0, N, block, contract, tx, upd


def _model(round_id: int) -> bytes:
    return hashlib.sha256(b"model %d" % round_id).digest()


def _committed(rounds: int, total: int | None = None) -> tuple[rc.Contract, int]:
    """A contract (of `total` rounds, default two more) after `rounds` committed plain rounds; returns it and the
    next block height."""
    c = contract(rounds=total or rounds + 2)
    height = 1
    for r in range(1, rounds + 1):
        model = c.state.model_hash
        c.apply_block(block(height, 0, tx("open", 0, r, model, [0, 1, 2, 3])))
        c.apply_block(block(height + 1, 0, *(upd(a, r) for a in range(N)), tx("result", 0, r, [0, 1, 2, 3],
                                                                                 _model(r))))
        height += 2
    return c, height


def ev(author: int, round_id: int, correct: int, total: int, model: bytes | None = None) -> bytes:
    return tx("eval", author, round_id, model if model is not None else _model(round_id), correct, total)


def test_evals_of_a_committed_round_are_recorded_and_pooled() -> None:
    c, h = _committed(1)
    events = c.apply_block(block(h, 1, ev(0, 1, 30, 40), ev(1, 1, 18, 20), ev(2, 1, 9, 10)))
    assert [e for e in events if isinstance(e, rc.EvalCommitted)] == [
        rc.EvalCommitted(1, 0, 30, 40, h), rc.EvalCommitted(1, 1, 18, 20, h), rc.EvalCommitted(1, 2, 9, 10, h)]
    summary = consortium_accuracy(c.state.evals[1], [f"site-{i}" for i in range(N)])
    assert summary["pooled_accuracy"] == pytest.approx(57 / 70)
    assert summary["median_site_accuracy"] == pytest.approx(0.9)
    assert summary["sites_reported"] == 3 and summary["held_out_rows"] == 70
    assert [s["site"] for s in summary["sites"]] == ["site-0", "site-1", "site-2"]


def test_an_eval_needs_no_block_proposer_and_no_open_round() -> None:
    c, h = _committed(1)
    assert c.check_block(block(h, 3, ev(0, 1, 3, 4))) == []
    assert c.tx_valid_now(c.parse(ev(0, 1, 3, 4)))


@pytest.mark.parametrize(("txs", "reason"), [
    pytest.param(lambda: [ev(1, 2, 3, 4), ev(1, 2, 4, 4)], "member 1 already evaluated round 2", id="duplicate"),
    pytest.param(lambda: [ev(1, 2, 3, 4), ev(1, 2, 3, 4)], "member 1 already evaluated round 2", id="replay"),
    pytest.param(lambda: [ev(1, 2, 3, 4, model=_model(1))], "names model .* round 2 committed", id="wrong-model"),
    pytest.param(lambda: [ev(1, 2, 3, 4, model=M0)], "names model .* round 2 committed", id="initial-model"),
    pytest.param(lambda: [ev(1, 3, 3, 4)], "round 3 has no committed result", id="future-round"),
    pytest.param(lambda: [ev(1, 2, 3, 4), ev(1, 1, 30, 400)], "differs from the 4 held-out rows",
                 id="inflated-total-after-declaring"),
])
def test_bad_evals_are_refused_with_a_reason(txs, reason: str) -> None:  # type: ignore[no-untyped-def]
    c, h = _committed(2)
    with pytest.raises(rc.TxError, match=reason):
        c.check_block(block(h, 0, *txs()))


def test_an_eval_is_late_once_its_round_left_the_window() -> None:
    c, h = _committed(rc.EVAL_WINDOW + 1)
    c.check_block(block(h, 0, ev(1, 2, 3, 4)))
    with pytest.raises(rc.TxError, match="round 1 is too old"):
        c.check_block(block(h, 0, ev(1, 1, 3, 4)))
    assert not c.tx_valid_now(c.parse(ev(1, 1, 3, 4)))
    assert c.eval_expired(c.parse(ev(1, 1, 3, 4)))


def test_an_aborted_round_takes_no_eval() -> None:
    c, h = _committed(1)
    c.apply_block(block(h, 0, tx("open", 0, 2, _model(1), [0, 1, 2, 3])))
    with pytest.raises(rc.TxError, match="round 2 has no committed result"):
        c.check_block(block(h + 1, 0, ev(0, 2, 3, 4, model=_model(1))))
    c.apply_block(block(h + 1, 0, tx("abort", 0, 2, "slow")))
    with pytest.raises(rc.TxError, match="round 2 has no committed result"):
        c.check_block(block(h + 2, 0, ev(0, 2, 3, 4, model=_model(1))))


@pytest.mark.parametrize(("fields", "reason"), [
    pytest.param([b"\x00" * 32, 5, 4], "more correct rows than rows", id="correct-above-total"),
    pytest.param([b"\x00" * 32, 0, 0], "eval.total", id="no-rows"),
    pytest.param([b"\x00" * 32, -1, 4], "eval.correct", id="negative"),
    pytest.param([b"\x00" * 32, 1, rc.MAX_EVAL_ROWS + 1], "eval.total", id="absurd-total"),
    pytest.param([b"\x00" * 31, 1, 4], "eval.model_hash", id="short-hash"),
])
def test_malformed_evals_are_refused_at_parse(fields: list[object], reason: str) -> None:
    c, _ = _committed(1)
    with pytest.raises(rc.TxError, match=reason):
        c.parse(tx("eval", 1, 1, *fields))


def test_an_eval_signed_by_a_non_member_is_refused() -> None:
    outsider = SigningKey(b"\x77" * 32)
    c, _ = _committed(1)
    raw = rc.make_tx(CHAIN, "eval", 2, 1, [_model(1), 3, 4], lambda b: outsider.sign(b).signature)
    with pytest.raises(rc.TxError, match="bad signature"):
        c.parse(raw)
    beyond = rc.make_tx(CHAIN, "eval", N, 1, [_model(1), 3, 4], lambda b: KEYS[0].sign(b).signature)
    with pytest.raises(rc.TxError, match="malformed"):
        c.parse(beyond)


def test_a_committed_block_skips_a_bad_eval_and_keeps_the_good_ones() -> None:
    c, h = _committed(1)
    c.apply_block(block(h, 0, ev(0, 1, 3, 4), ev(0, 1, 4, 4), ev(1, 1, 2, 4, model=M0), ev(2, 1, 1, 2)))
    assert c.state.evals[1] == {0: (3, 4), 2: (1, 2)}


def test_the_declared_rows_bind_later_rounds_and_old_rounds_are_forgotten() -> None:
    last = rc.EVAL_WINDOW + 2
    c, h = _committed(1, total=last)
    c.apply_block(block(h, 0, ev(0, 1, 3, 4)))
    assert c.state.eval_rows == {0: 4}
    for r in range(2, last + 1):
        c.apply_block(block(h + 1, 0, tx("open", 0, r, c.state.model_hash, [0, 1, 2, 3])))
        c.apply_block(block(h + 2, 0, *(upd(a, r) for a in range(N)), tx("result", 0, r, [0, 1, 2, 3], _model(r)),
                            ev(1, r - 1, 1, 2)))
        h += 2
    assert c.state.round == last and c.finished
    assert sorted(c.state.evals) == list(range(last - rc.EVAL_WINDOW + 1, last))
    for total in (40, 3):
        with pytest.raises(rc.TxError, match=f"total {total} differs from the 4 held-out rows"):
            c.check_block(block(h + 1, 0, ev(0, last, 3, total)))


def test_a_lying_site_moves_the_pooled_figure_but_not_the_median() -> None:
    honest = {0: (80, 100), 1: (85, 100), 2: (90, 100)}
    liar = {**honest, 3: (0, 100)}
    assert consortium_accuracy(liar, None)["median_site_accuracy"] == pytest.approx(0.825)
    assert consortium_accuracy(liar, None)["pooled_accuracy"] == pytest.approx(255 / 400)
    assert consortium_accuracy(honest, None)["median_site_accuracy"] == pytest.approx(0.85)
    assert consortium_accuracy({}, None) is None


def test_an_absent_members_eval_counts_but_does_not_make_it_present() -> None:
    c = contract(rounds=3)
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    c.apply_block(block(2, 0, upd(0), upd(1), upd(2), tx("result", 0, 1, [0, 1, 2], _model(1))))
    assert c.state.absent == (3,)
    c.apply_block(block(3, 0, ev(3, 1, 3, 4)))
    assert c.state.evals[1] == {3: (3, 4)} and c.state.absent == (3,)
