"""The round contract's plain data: the phase table as `phase_info` reads it, and a state copy that shares nothing
mutable with its original (what a shadow contract tries transactions on)."""

from __future__ import annotations

import dataclasses

from node import contract as rc
from node.contract_state import PendingBlame
from smpc import blame
from tests.unit.test_contract import CHAIN, M0

PENDING = PendingBlame((0, 2), (0, 1, 2), (), True, blame.Ledger({}, {}, None, 0.5), 1, {1: {0: 5}},
                       {0: {2: blame.PairScalars(0, 0)}}, {}, {2})


def params(**changes: object) -> rc.ContractParams:
    return dataclasses.replace(rc.ContractParams(CHAIN, 4, 2, M0, 3), **changes)


def test_phase_info_gives_the_input_and_closing_kinds_and_the_next_phase_empty_after_the_last() -> None:
    assert params().phase_info("collect") == ("update", "result", "")
    assert params(secure=True).phase_info("inputs") == ("input", "close", "unmask")
    assert params(secure=True).phase_info("unmask") == ("", "result", "blame")  # a `fail` without validation (B13)
    assert params(secure=True).phase_info("blame") == ("blame", "verdict", "excise")  # opened by a verdict only
    assert params(secure=True).phase_info("excise") == ("", "result", "")
    assert params(secure=True, validate=True, sketch_width=1000).phase_info("inputs") == ("input", "close", "seed")
    assert params(secure=True, validate=True, sketch_width=1000).phase_info("validate") == ("stats", "accept", "unmask")
    assert params(secure=True, validate=True, sketch_width=1000).phase_info("unmask") == ("", "result", "blame")
    validated = params(secure=True, validate=True, sketch_width=1000)
    assert validated.phase_info("blame") == ("blame", "verdict", "excise")  # opened by a convicting verdict only
    assert validated.phase_info("excise") == ("", "result", "")


def test_a_state_copy_equals_its_original_and_shares_nothing_mutable() -> None:
    outcome = rc.RoundOutcome(1, True, (0, 1), M0, 5)
    state = rc.ContractState(
        round=3, open=True, phase="validate", model_hash=M0, participants=(0, 1, 2), inputs={1: (b"i", 2)},
        expected=(1, 2), u1=(0, 1, 2), digests={1: b"d"}, weights={1: 11}, seed_commitments={1: b"s"}, rejected=(2,),
        rejections={2: 1}, outcomes=[outcome], height=9, ahead_phase="shares", ahead_inputs={0: b"a"},
        ahead_u1=(0, 1), ahead_u2=(0,), absent=(3,), absent_since={3: 2}, excluded=(3,), evals={2: {0: (5, 9)}},
        eval_rows={0: 9}, dealt_hashes={1: {2: b"h"}}, complaints={(1, 2): "open"}, channel_keys={1: b"k"},
        dealt_digests={2: b"g"}, answers={(1, 2): b"a"}, answered_height=8, liars=(2,), clip_bound_micro=5,
        next_clip_bound_micro=4, holders=(0, 1), summed=(1,), failure=(1, 3), disclosures={1: (b"p", b"s")},
        convicted=(3,), disputes=((0, 1),), bases=b"b", suspended={2: 1}, pending={1: PENDING},
            excised=(1,), excise_reveals={0: b"x"}, verdict=outcome)
    assert all(getattr(state, f.name) != f.default for f in dataclasses.fields(state)
               if f.default is not dataclasses.MISSING), "every plain field differs from its default"
    copy = state.copy()
    assert copy == state
    for name in ("inputs", "digests", "weights", "seed_commitments", "rejections", "ahead_inputs", "absent_since",
                 "eval_rows", "dealt_hashes", "complaints", "channel_keys", "dealt_digests", "answers", "disclosures",
                 "suspended", "pending"):
        getattr(copy, name)[7] = None
    copy.pending[1].awaiting.add(1)
    copy.pending[1].cleared[0][3] = blame.PairScalars(1, 1)
    copy.pending[1].shares[1][2] = 3
    copy.pending[1].undecided[0] = {}
    assert state.pending[1] == PENDING
    copy.outcomes.append(outcome)
    copy.evals[2][1] = (0, 1)
    assert copy != state and state.inputs == {1: (b"i", 2)} and state.evals == {2: {0: (5, 9)}}
    assert state.outcomes == [outcome] and state.eval_rows == {0: 9}
