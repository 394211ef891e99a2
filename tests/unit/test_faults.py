"""The fault-injection plug-in (node/hooks.py, node/faults.py): honest no-ops by default, and each
implemented fault doing what `fednode cluster` asks of it, without a running daemon."""

from __future__ import annotations

import signal
from typing import Any

import numpy as np
import pytest

from node import contract as rc
from node import faults as faults_module
from node.cli_node import _fault_hooks
from node.hooks import NO_FAULTS, FaultContext, FaultHooks
from smpc.blame import Disclosure, PairScalars, SketchRow

CHAIN, N, ME = b"c" * 32, 4, 2


def _sign(body: bytes) -> bytes:
    return b"\x00" * 64


def _parse(raw: bytes) -> rc.Tx:
    return rc.parse_tx(raw, CHAIN, N, lambda _i, _data, _sig: True)


def _bound(behaviour: dict[str, Any]) -> faults_module.Faults:
    faults = faults_module.Faults(behaviour)
    faults.bind(FaultContext(ME, N, CHAIN, _sign, _parse, None, None))  # type: ignore[arg-type]
    return faults


def _tx(kind: str, fields: list[object]) -> bytes:
    return rc.make_tx(CHAIN, kind, ME, 3, fields, _sign)


def _inputs_closed(round_id: int, members: tuple[int, ...] = tuple(range(N))) -> rc.PhaseClosed:
    return rc.PhaseClosed(round_id, "inputs", members, (), height=7)


def test_a_node_without_behaviour_runs_the_honest_no_op_hooks() -> None:
    assert _fault_hooks({}) is NO_FAULTS
    raw = _tx("stats", [b"\x05" * 8])

    def honest(vec: np.ndarray, round_id: int) -> Any:
        return None

    assert NO_FAULTS.outgoing_tx(raw) == raw
    assert NO_FAULTS.train_fn(honest) is honest
    assert NO_FAULTS.phase_closed(_inputs_closed(1)) is False


def test_a_behaviour_plugs_in_the_faults() -> None:
    assert isinstance(_fault_hooks({"validator": "withhold"}), faults_module.Faults)
    assert isinstance(_fault_hooks({"validator": "withhold"}), FaultHooks)


def test_a_withholding_validator_submits_no_statistics_and_everything_else_unchanged() -> None:
    faults = _bound({"validator": "withhold"})
    assert faults.outgoing_tx(_tx("stats", [b"\x05" * 8])) is None
    other = _tx("input", [b"d" * 32, 1, b"c" * 32])
    assert faults.outgoing_tx(other) == other


def test_a_corrupting_validator_flips_a_bit_of_its_statistic_shares() -> None:
    faults = _bound({"validator": "corrupt"})
    out = faults.outgoing_tx(_tx("stats", [b"\x05" * 8]))
    assert out is not None
    tx = _parse(out)
    assert (tx.kind, tx.author, tx.round, tx.fields) == ("stats", ME, 3, (b"\x04" + b"\x05" * 7,))


def test_a_frivolous_complainer_complains_about_the_next_member_instead_of_publishing() -> None:
    faults = _bound({"validator": "frivolous-complaint"})
    out = faults.outgoing_tx(_tx("stats", [b"\x05" * 8]))
    assert out is not None
    tx = _parse(out)
    assert (tx.kind, tx.author, tx.round, tx.fields) == ("complaint", ME, 3, ((ME + 1) % N,))
    other = _tx("dealt", [b"d" * 32, b"h" * 32])
    assert faults.outgoing_tx(other) == other


def test_a_crashing_node_stops_at_its_round_and_dies_once_its_masked_input_reached_every_peer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[int] = []
    monkeypatch.setattr(faults_module.os, "kill", lambda _pid, signum: killed.append(signum))
    faults = _bound({"crash_after_input_round": 2})
    faults.masked_input_sent(2)
    assert faults.phase_closed(_inputs_closed(1)) is False
    assert faults.phase_closed(_inputs_closed(2, members=(0, 1, 3))) is False, "not in U2: nothing to crash on"
    for _ in range(N - 2):
        faults.frame_delivered("masked")
    faults.frame_delivered("pbft")
    assert faults.phase_closed(_inputs_closed(2)) is True
    assert killed == []
    faults.frame_delivered("masked")
    assert killed == [signal.SIGKILL]


def test_a_poisoning_node_gives_its_attack_the_ledgers_bound_for_the_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """B is public on the ledger; an attacker that knows the rule needs it (`AttackContext.clip_bound`), and on real
    daemons it was left empty, so a plugin aiming just under B fell back to its own length."""
    from types import SimpleNamespace

    seen: list[Any] = []
    monkeypatch.setattr(faults_module, "malicious_train", lambda *args: seen.append(args[-1]))
    plan = SimpleNamespace(seed=1, model=SimpleNamespace(n_classes=10), training=None)
    learner = SimpleNamespace(local=SimpleNamespace(X_train=None, y_train=None))
    faults = faults_module.Faults({"attack": "sign-flip"})
    faults.bind(FaultContext(ME, N, CHAIN, _sign, _parse, plan, learner,  # type: ignore[arg-type]
                             clip_bound=lambda round_id: 2.5 if round_id == 4 else None))
    faults.train_fn(lambda vec, round_id: None)(np.zeros(3), 4)
    assert seen[0].clip_bound == 2.5


def test_only_a_lie_disclosure_member_changes_its_blame_disclosure_and_only_with_a_failed_sketch_row() -> None:
    """`blame_disclosure`: the honest hooks and every other mode disclose what they were given; `lie-disclosure`
    shifts the sketch scalar of its lowest partner alone (`lying_pairs`), and nothing when only the weight failed."""
    pairs = {j: PairScalars(100 + j, 200 + j) for j in (1, 2, 4)}
    disclosure, row = Disclosure(pairs, {1: 7}), SketchRow(3, np.arange(4), np.arange(4, 5))
    for hooks in (NO_FAULTS, _bound({"validator": "lie-identity"}), _bound({"validator": "lie-disclosure"})):
        assert hooks.blame_disclosure(ME + 1, disclosure, None) is disclosure
    assert _bound({"validator": "lie-identity"}).blame_disclosure(ME + 1, disclosure, row) is disclosure
    lied = _bound({"validator": "lie-disclosure"}).blame_disclosure(ME + 1, disclosure, row)
    assert lied.shares == disclosure.shares and {j: lied.pairs[j] for j in (2, 4)} == {j: pairs[j] for j in (2, 4)}
    assert lied.pairs[1] == PairScalars(101, (201 - 3 * faults_module.LIE_IDENTITY_SHIFT) % 2**32)
