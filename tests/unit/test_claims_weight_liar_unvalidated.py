"""Claim (docs/threat-model.md, red team B13; docs/validation.md "Blame after a failed identity"): in secure mode
WITHOUT validation, a member that masks another weight than it committed is named and convicted, and an honest
member never is.

An in-process secure round at N = 7 (f = 2, t = 5) without validation (`tests.unit.test_secure_round.Cluster`):
member 3 commits a third of the weight it masks (its `input` re-signed with its own key). The unmasked weight
coordinate then differs from the committed weights' sum at every honest node, which proposes `fail` [1, -1, base
scalars] (no sketch: the weight half of the blame needs none); the members of S disclose their pair scalars
(`blame`), and the ledger's verdict convicts the liar; the round then finishes over S without the liar (the excise
phase, docs/validation.md "Excising convicted survivors"), and the next round commits without it. A liar that also
lies about its pair scalar with an honest partner, to pass its own check, is only in a dispute with it, and after
f + 1 distinct partners convicted (as with validation, `tests/unit/test_validator_faults.py`): the rounds of mere
disputes abort, the convicting one commits over S \\ {liar}.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from node import contract as rc
from node.contract_membership import disclosure_of
from node.secure_round import LinearIdentityFailed
from smpc.blame import PairScalars, encode_pairs
from smpc.field import RING_MODULUS
from tests.unit.test_secure_round import CHAIN, Cluster, L

N, LIAR, SEED = 7, 3, 77


def lying_round(c: Cluster, round_id: int, updates: dict[int, np.ndarray]) -> tuple[int, ...]:
    """Open `round_id`, run its key phases, let every expected member mask its update (LIAR masking weight 1.5 and
    committing a third of it) and close the inputs; the reveals are committed. Returns S."""
    contract = c.contracts[0]
    c.commit(c.tx("open", [contract.state.model_hash, list(range(N))], round_id))
    c.commit(c.tx("close", ["keys"], round_id))
    c.commit(c.tx("close", ["shares"], round_id))
    for i in sorted(set(contract.state.expected) & c.alive):
        vector = c.weighting.vector(updates[i], 50)
        if i == LIAR:
            vector[-1] = 1.5
        c.emit(i, c.rounds[i].set_update(vector))
    for k, raw in enumerate(c.mempool):
        tx = contract.parse(raw)
        if tx.kind == "input" and tx.author == LIAR:
            fields = [tx.fields[0], int(tx.fields[1]) // 3, tx.fields[2]]  # type: ignore[call-overload]
            c.mempool[k] = rc.make_tx(CHAIN, "input", LIAR, round_id, fields, c.sign(LIAR))
    c.commit(c.tx("close", ["inputs"], round_id))
    assert contract.state.phase == "unmask"
    return contract.state.expected


def lie_about_weight_pair(c: Cluster, partner: int) -> None:
    """LIAR's pending `blame` moves its weight scalar with `partner` by what its masked weight exceeds its committed
    one, so that its own check passes (re-signed with its key)."""
    contract, s = c.contracts[0], c.contracts[0].state
    masked = c.rounds[LIAR]._masked_quantized
    assert masked is not None
    excess = (int(masked[-1]) - s.weights[LIAR]) % RING_MODULUS
    for k, raw in enumerate(c.mempool):
        tx = contract.parse(raw)
        if tx.kind == "blame" and tx.author == LIAR:
            pairs = dict(disclosure_of(LIAR, tx.fields[0], tx.fields[1], s.summed, s.disputes).pairs)  # type: ignore[arg-type]
            true = pairs[partner]
            moved = (true.weight + (excess if partner > LIAR else -excess)) % RING_MODULUS
            pairs[partner] = PairScalars(moved, true.sketch)
            c.mempool[k] = rc.make_tx(CHAIN, "blame", LIAR, tx.round, [encode_pairs(pairs), tx.fields[1]],
                                      c.sign(LIAR))


def blame_verdict(c: Cluster, round_id: int, updates: dict[int, np.ndarray], partner: int | None = None
                  ) -> rc.RoundOutcome:
    """Every honest node's unmasking fails the weight check, identically: commit the `fail` it names (weight only, no
    sketch coordinate), the disclosures of S (LIAR's lying with `partner` if given) and the ledger's `verdict`. A
    verdict that only records disputes aborts the round; one that convicts LIAR opens the excise phase, and the
    round then commits over S \\ {LIAR} with exactly the honest members' sum (`excise_commits`)."""
    contract, honest = c.contracts[0], sorted(c.alive - {LIAR})
    for i in honest:
        with pytest.raises(LinearIdentityFailed, match="weight"):
            c.rounds[i].try_sum(deadline_passed=False)
    (found,) = {c.rounds[i].failure_fields() for i in honest}
    assert found is not None and found[:2] == (True, None), found
    c.commit(c.tx("fail", [1, -1, found[2]], round_id))
    s = contract.state
    assert (s.phase, s.expected, s.holders) == ("blame", s.summed, ())
    if partner is not None:
        lie_about_weight_pair(c, partner)
    c.commit()
    assert set(s.disclosures) == set(s.summed), "every member of S disclosed its pair scalars"
    judged = contract.blame_judgement()
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)], round_id))
    if s.open:
        assert s.phase == "excise" and s.excised == (LIAR,) and LIAR in s.convicted
        excise_commits(c, round_id, updates)
        return s.outcomes[-1]
    outcome = s.outcomes[-1]
    assert not outcome.committed and outcome.round == round_id and not outcome.missing
    return outcome


def excise_commits(c: Cluster, round_id: int, updates: dict[int, np.ndarray]) -> None:
    """The excise phase: the excise reveals commit, every honest node's sum over S \\ {LIAR} is exactly the honest
    members', and the `result` over S \\ {LIAR} commits, keeping the verdict's conviction."""
    s = c.contracts[0].state
    c.commit()
    kept = tuple(m for m in s.summed if m != LIAR)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in kept], axis=0)
    for i in sorted(c.alive - {LIAR}):
        total = c.rounds[i].try_excised_sum()
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
    c.commit(c.tx("result", [list(kept), hashlib.sha256(b"excised").digest()], round_id))
    outcome = s.outcomes[-1]
    assert outcome.committed and outcome.round == round_id and outcome.included == kept
    assert LIAR in outcome.convicted and not outcome.missing


def honest_round_commits(c: Cluster, round_id: int, updates: dict[int, np.ndarray]) -> None:
    """`round_id` without LIAR (convicted: expected in no phase): every honest node unmasks exactly the honest
    members' sum, and the `result` commits."""
    contract = c.contracts[0]
    c.commit(c.tx("open", [contract.state.model_hash, list(range(N))], round_id))
    assert LIAR not in contract.state.expected
    c.commit(c.tx("close", ["keys"], round_id))
    c.commit(c.tx("close", ["shares"], round_id))
    for i in sorted(set(contract.state.expected) & c.alive):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    c.commit(c.tx("close", ["inputs"], round_id))
    summed = contract.state.expected
    assert summed == tuple(m for m in range(N) if m != LIAR)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in summed], axis=0)
    for i in sorted(c.alive - {LIAR}):
        total = c.rounds[i].try_sum(deadline_passed=False)
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
        assert c.rounds[i].failure_fields() is None
    c.commit(c.tx("result", [list(summed), hashlib.sha256(b"next model").digest()], round_id))
    assert contract.state.outcomes[-1].committed and contract.state.outcomes[-1].included == summed


def test_a_weight_liar_without_validation_is_convicted_and_the_next_round_commits_without_it() -> None:
    c = Cluster(N, SEED, rounds=2)
    assert not c.params.validate
    rng = np.random.default_rng(SEED)
    updates = {i: rng.normal(0, 0.3, L) for i in range(N)}
    assert LIAR in lying_round(c, 1, updates)
    outcome = blame_verdict(c, 1, updates)
    assert (outcome.committed, outcome.convicted, outcome.disputes) == (True, (LIAR,), ())
    assert c.contracts[0].state.convicted == (LIAR,) and c.contracts[0].state.suspended == {}
    honest_round_commits(c, 2, updates)


def test_a_weight_liar_lying_about_its_pairs_disputes_each_honest_partner_once_and_is_convicted_after_f_plus_1(
        ) -> None:
    """It passes its own check by moving its weight scalar with one honest partner: each verdict records that
    dispute only (the honest partner passes its own check, and is never convicted), the pair masks nothing in the
    next rounds, and the third distinct partner (f + 1 = 3 at N = 7) convicts it."""
    c = Cluster(N, SEED, rounds=4)
    rng = np.random.default_rng(SEED)
    updates = {i: rng.normal(0, 0.3, L) for i in range(N)}
    state = c.contracts[0].state
    for round_id, partner in enumerate((0, 5, 6), start=1):
        summed = lying_round(c, round_id, updates)
        assert LIAR in summed and partner in summed
        disputed = {j + 1 for pair in state.disputes for j in pair} - {LIAR + 1}
        assert not disputed & set(c.rounds[LIAR].machine.pair_seeds()), "a disputed pair still masks"
        outcome = blame_verdict(c, round_id, updates, partner)
        assert outcome.disputes == ((min(LIAR, partner), max(LIAR, partner)),)
        assert set(state.convicted) <= {LIAR}, f"round {round_id}: an honest member convicted: {state.convicted}"
    assert outcome.committed and outcome.convicted == (LIAR,) and state.convicted == (LIAR,)
    assert state.disputes == ((0, LIAR), (LIAR, 5), (LIAR, 6))
    honest_round_commits(c, 4, updates)
