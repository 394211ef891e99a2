"""Claim (docs/threat-model.md, What is revealed and Known limits; docs/validation.md "Blame after a failed
identity", Bound): every blame phase is, once judged, a new conviction (its round then finishing over the others,
the excise phase) or a new distinct dispute of the coalition (its round aborting), so f Byzantine members get at
most f (f + 1) judged blame phases in a consortium's life, none ever naming an honest member.

The coalition: members 3 and 4 of a validated round at N = 7 (f = 2, t_v = 2), with their real keys. In each
round one of them masks its update plus 2^20 on every coordinate while sketching the update itself
(`lie-identity`), and passes its own blame check by lying about its pair mask with a chosen partner, re-signing
its `blame` (as `tests/unit/test_validator_faults.py` plays one liar). Each plan is a coalition strategy: the
partners chosen in turn, honest ones or the accomplice. The test counts blame phases until the coalition can
lie no more (both convicted) and checks each verdict against the bound's argument.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from node import contract as rc
from node.faults import Faults
from node.hooks import FaultContext
from node.secure_round import LinearIdentityFailed, SubmitTx, decide_accepted
from tests.unit.test_secure_round import CHAIN, Cluster, L
from tests.unit.test_validator_faults import lie_about_pair

N, F, COALITION, SEED = 7, 2, (3, 4), 61


class CoalitionCluster(Cluster):
    """The member named by `lying` sends its outputs through its `Faults` (lie-identity), as
    `RoundDriver.submit` does; the other colluder behaves honestly that round."""

    def __init__(self) -> None:
        super().__init__(N, SEED, validate=True, validation_degree=F, rounds=20)
        self.faults = {m: Faults({"validator": "lie-identity"}) for m in COALITION}
        for m, faults in self.faults.items():
            faults.bind(FaultContext(m, N, CHAIN, self.sign(m), self.contracts[0].parse,  # type: ignore[arg-type]
                                     SimpleNamespace(n_params=L), None))
        self.lying: int | None = None

    def emit(self, sender: int, outputs: list[Any]) -> None:
        if sender == self.lying:
            faults, forged = self.faults[sender], []
            for out in map(faults.secure_output, outputs):
                raw = faults.outgoing_tx(out.raw) if isinstance(out, SubmitTx) else b""
                if not isinstance(out, SubmitTx):
                    forged.append(out)
                elif raw is not None:
                    forged.append(SubmitTx(raw))
            outputs = forged
        super().emit(sender, outputs)


def validated_round(c: CoalitionCluster, round_id: int, updates: dict[int, np.ndarray]) -> tuple[int, ...]:
    """Run `round_id` (every member a participant) to its unmask phase; returns the accepted set S."""
    contract = c.contracts[0]
    if round_id == 1:
        c.mask_updates(updates)
        outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    else:
        c.commit(c.tx("open", [contract.state.model_hash, list(range(N))], round_id))
        c.commit(c.tx("close", ["keys"], round_id))
        c.commit(c.tx("close", ["shares"], round_id))
        for i in sorted(set(contract.state.expected) & c.alive):
            c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
        for phase in ("inputs", "seed", "sketch"):
            c.commit(c.tx("close", [phase], round_id))
        c.commit()
        outcome = decide_accepted(contract.validation_check(None), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields(), round_id))
    return outcome.accepted


def blame_phase(c: CoalitionCluster, round_id: int, liar: int, partner: int) -> rc.RoundOutcome:
    """Every honest node's unmasking fails identically: commit the `fail`, the disclosures (the liar's
    tampered), and the ledger's own `verdict`; if it convicts members L of S, the excise phase it opens: the excise
    reveals, and the `result` over S \\ L every honest node computes alike. Returns the round's outcome."""
    honest = sorted(c.alive - set(COALITION))
    for i in honest:
        with pytest.raises(LinearIdentityFailed):
            c.rounds[i].try_sum(deadline_passed=False)
    (found,) = {c.rounds[i].failure_fields() for i in honest}
    assert found is not None
    weight, coordinate, bases = found
    c.commit(c.tx("fail", [int(weight), -1 if coordinate is None else coordinate, bases], round_id))
    lie_about_pair(c, liar, partner)
    c.commit()
    judged = c.contracts[0].blame_judgement()
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)], round_id))
    s = c.contracts[0].state
    excising = s.open and s.phase == "excise"
    if excising:
        kept = tuple(m for m in s.summed if m not in s.excised)
        c.commit()
        totals = [c.rounds[i].try_excised_sum() for i in honest]
        assert all(t is not None and np.array_equal(t, totals[0]) for t in totals)
        c.commit(c.tx("result", [list(kept), hashlib.sha256(b"excised %d" % round_id).digest()], round_id))
    outcome = s.outcomes[-1]
    assert outcome.committed == excising and outcome.round == round_id
    assert excising == bool(set(outcome.convicted) & set(s.summed)), "a verdict convicting members of S excises them"
    return outcome


PLANS = {
    "each-liar-three-honest-partners": [(3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)],
    "interleaved": [(3, 0), (4, 5), (3, 6), (4, 0), (3, 1), (4, 6)],
    "accomplice-first": [(3, 4), (3, 0), (3, 1), (4, 5), (4, 6)],
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_f_colluders_get_at_most_f_times_f_plus_1_blame_phases_each_naming_one_of_them(plan: str) -> None:
    c = CoalitionCluster()
    rng = np.random.default_rng(SEED)
    updates = {i: rng.normal(0, 0.3, L) for i in range(N)}
    state, blamed = c.contracts[0].state, 0
    for round_id, (liar, partner) in enumerate(PLANS[plan], start=1):
        where = f"seed={SEED} plan={plan} round={round_id} liar={liar} partner={partner}"
        c.lying = liar
        accepted = validated_round(c, round_id, updates)
        assert liar in accepted and partner in accepted, f"{where}: accepted {accepted}"
        before = (set(state.convicted), set(state.disputes))
        outcome = blame_phase(c, round_id, liar, partner)
        blamed += 1
        new = (set(state.convicted) - before[0], set(state.disputes) - before[1])
        assert new != (set(), set()), f"{where}: a blame phase with no new conviction and no new dispute"
        assert set(state.convicted) <= set(COALITION), f"{where}: honest member convicted: {state.convicted}"
        assert all(set(pair) & set(COALITION) for pair in state.disputes), f"{where}: {state.disputes}"
        assert set(outcome.convicted) | {m for pair in outcome.disputes for m in pair} <= set(COALITION) | {partner}
    assert set(state.convicted) == set(COALITION), f"seed={SEED} plan={plan}: {state.convicted}"
    assert blamed <= F * (F + 1)
    c.lying = COALITION[0]
    accepted = validated_round(c, len(PLANS[plan]) + 1, updates)
    assert not set(accepted) & set(COALITION)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in accepted], axis=0)
    for i in sorted(c.alive - set(COALITION)):
        total = c.rounds[i].try_sum(deadline_passed=False)
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), f"seed={SEED} node {i}"
