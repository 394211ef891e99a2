"""`fednode cluster --validator-fault` modes (node/faults.py) played by member 3 of an in-process validated
round at N = 7 (f = 2, t_v = 2): each forgery is signed with the member's real key, and each either fails
or aborts the round with a violation or evidence, never a poisoned accept."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from node import contract as rc
from node.contract_membership import disclosure_of
from node.faults import LIE_IDENTITY_SHIFT, Faults, lying_pairs, pair_lie
from node.hooks import FaultContext
from node.secure_round import LinearIdentityFailed, SubmitTx, decide_accepted
from smpc.blame import MISSING_SHARE, PairScalars, SketchRow, decode_shares, encode_pairs
from smpc.errors import InconsistentShares, NotEnoughShares
from tests.unit.test_secure_round import CHAIN, Cluster, L

N, LIAR = 7, 3


class FaultyCluster(Cluster):
    """Member LIAR's outputs pass through `Faults`, as `RoundDriver.submit` passes them."""

    def __init__(self, mode: str, seed: int, n: int = N, validate: bool = True) -> None:
        super().__init__(n, seed, validate=validate, validation_degree=2, rounds=3)
        self.faults = Faults({"validator": mode})
        plan = SimpleNamespace(n_params=L)
        self.faults.bind(FaultContext(LIAR, n, CHAIN, self.sign(LIAR), self.contracts[0].parse, plan, None))  # type: ignore[arg-type]

    def emit(self, sender: int, outputs: list[Any]) -> None:
        if sender == LIAR:
            forged = []
            for out in map(self.faults.secure_output, outputs):
                raw = self.faults.outgoing_tx(out.raw) if isinstance(out, SubmitTx) else b""
                if not isinstance(out, SubmitTx):
                    forged.append(out)
                elif raw is not None:
                    forged.append(SubmitTx(raw))
            outputs = forged
        super().emit(sender, outputs)


    def on_event(self, i: int, event: rc.Event) -> None:
        if i == LIAR and isinstance(event, rc.BlameStarted):  # as `RoundDriver._on_blame_started`, with its hook
            self.emit(i, self.round_of(i, event.round).on_blame_started(event, self.faults.blame_disclosure))
            return
        super().on_event(i, event)


def run(mode: str | None, seed: int = 50, n: int = N, validate: bool = True
        ) -> tuple[FaultyCluster, dict[int, np.ndarray]]:
    c = FaultyCluster(mode, seed, n, validate)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    return c, updates


def lie_about_weight(c: FaultyCluster) -> None:
    """LIAR's pending `input` commits 1.5 times the weight it masked (re-signed: a Byzantine member's own)."""
    contract = c.contracts[0]
    for k, raw in enumerate(c.mempool):
        tx = contract.parse(raw)
        if tx.kind == "input" and tx.author == LIAR:
            fields = [tx.fields[0], int(tx.fields[1]) * 3 // 2, tx.fields[2]]  # type: ignore[call-overload]
            c.mempool[k] = rc.make_tx(CHAIN, "input", LIAR, 1, fields, c.sign(LIAR))


def test_forged_statistics_are_detected_and_decide_nothing() -> None:
    c, _ = run("forge-stats")
    with pytest.raises(InconsistentShares):
        decide_accepted(c.publish_statistics(), c.setup, c.quant)


def test_contributions_off_their_commitments_are_refused_and_name_the_dealer() -> None:
    c, _ = run("zero-offset")
    check = c.publish_statistics()
    assert LIAR not in dict(check.published) or len(check.published) < N
    for i in set(range(N)) - {LIAR}:
        assert any(v.sender == LIAR + 1 and "commitment" in v.reason for v in c.rounds[i].violations), i
    with pytest.raises(NotEnoughShares):
        decide_accepted(check, c.setup, c.quant)


def test_contributions_off_their_commitments_are_replaced_by_the_committed_answer() -> None:
    """The holders that refused the liar's shares complain on the ledger; its answers are the sealed bundles
    its `dealt` committed (the honest ones: a dealer cannot answer with anything else), so every holder then
    publishes and the statistics decide."""
    c, _ = run("zero-offset")
    c.publish_statistics()
    complaints = c.contracts[0].state.complaints
    assert complaints == {(i, LIAR): "open" for i in set(range(N)) - {LIAR}}
    c.commit()  # the answers
    c.commit()  # the statistics from the answered shares
    check = c.contracts[0].validation_check(None)
    assert sorted(dict(check.published)) == list(range(N))
    assert set(decide_accepted(check, c.setup, c.quant).accepted) <= set(range(N))
    assert set(c.contracts[0].state.complaints.values()) == {"answered"}


def test_a_withheld_seed_reveal_aborts_at_n_3f_plus_1_and_only_takes_the_member_out_above() -> None:
    """All a member can still do to the seed once the inputs are fixed is withhold its reveal. At N = 7 the
    seed phase needs every reveal (2t_v + 1 + f = 7): the round aborts, the missing reveal on the ledger.
    At N = 9 the member simply leaves the round and the others' sum is exact."""
    c, _ = run("grind-seed")
    c.commit(c.tx("close", ["inputs"]))
    c.commit()
    assert LIAR not in c.contracts[0].state.inputs and len(c.contracts[0].state.inputs) == N - 1
    with pytest.raises(rc.TxError, match="needs 7"):
        c.commit(c.tx("close", ["seed"]))
    c, updates = run("grind-seed", n=9)
    c.close_inputs()
    assert LIAR not in c.contracts[0].state.expected
    c.commit(c.tx("close", ["sketch"]))
    c.commit()
    outcome = decide_accepted(c.contracts[0].validation_check(None), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    total = c.rounds[0].try_sum(deadline_passed=False)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    assert LIAR not in outcome.accepted and total is not None and np.allclose(total, expected, atol=N / c.quant.scale)


def accept_decided(c: FaultyCluster) -> None:
    """Commit the `accept` the rule decides on the published statistics (LIAR among the accepted)."""
    c.commit(c.tx("accept", decide_accepted(c.publish_statistics(), c.setup, c.quant).accept_fields()))


def unmask_fails(c: FaultyCluster) -> None:
    """Every honest node's unmasking fails the weight check or the linear identity."""
    for i in sorted(c.alive - {LIAR}):
        with pytest.raises(LinearIdentityFailed):
            c.rounds[i].try_sum(deadline_passed=False)


def blame(c: FaultyCluster, round_id: int = 1, tamper: Callable[[FaultyCluster], None] = lambda c: None
          ) -> rc.RoundOutcome:
    """Unmasking fails at every honest node, identically: commit the `fail` they find, the disclosures the
    `BlameStarted` event made every holder submit, and the `verdict` the ledger gives (`blame_judgement`: the
    contract refuses any other). Returns the round's outcome: an abort, or, when the verdict convicts LIAR, the
    `result` over S \\ {LIAR} of the excise phase it opens (`finish_excise`)."""
    unmask_fails(c)
    c.commit(c.tx("fail", fail_fields(c), round_id))
    tamper(c)
    c.commit()
    contract = c.contracts[0]
    assert contract.state.phase == "blame" and set(contract.state.disclosures) == set(contract.state.holders)
    judged = contract.blame_judgement()
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)], round_id))
    if contract.state.open and contract.state.phase == "excise":  # LIAR convicted (its check, or f + 1 disputes)
        return finish_excise(c, round_id)
    outcome = contract.state.outcomes[-1]
    assert not outcome.committed and outcome.round == round_id
    return outcome


def finish_excise(c: FaultyCluster, round_id: int = 1) -> rc.RoundOutcome:
    """The verdict convicted LIAR of S and opened the excise phase: commit the excise reveals; every honest node's
    checked sum over S \\ {LIAR} (with validation, the linear identity over it) is the same, and the `result` over
    S \\ {LIAR} commits with the verdict's convictions and a new model (no retry from the same model)."""
    s = c.contracts[0].state
    assert s.open and s.round == round_id and s.phase == "excise" and s.excised == (LIAR,)
    kept = tuple(m for m in s.summed if m != LIAR)
    c.commit()
    totals = [c.rounds[i].try_excised_sum() for i in sorted(c.alive - {LIAR})]
    assert all(t is not None and np.array_equal(t, totals[0]) for t in totals)
    c.commit(c.tx("result", [list(kept), hashlib.sha256(b"excised %d" % round_id).digest()], round_id))
    outcome = s.outcomes[-1]
    assert outcome.committed and outcome.round == round_id and outcome.included == kept
    return outcome


def fail_fields(c: FaultyCluster) -> list[object]:
    """The `fail` every honest node's unmasking gives, identically (`FailureCheck`): weight flag, b*, bases."""
    (found,) = {c.rounds[i].failure_fields() for i in sorted(c.alive - {LIAR})}
    assert found is not None
    weight, coordinate, bases = found
    return [int(weight), -1 if coordinate is None else coordinate, bases]


def validated_round(c: FaultyCluster, round_id: int, updates: dict[int, np.ndarray]) -> tuple[int, ...]:
    """Open `round_id` (every member a participant), run it to its unmask phase with every member the contract
    expects; returns the accepted set S."""
    contract = c.contracts[0]
    c.commit(c.tx("open", [contract.state.model_hash, list(range(N))], round_id))
    c.commit(c.tx("close", ["keys"], round_id))
    c.commit(c.tx("close", ["shares"], round_id))
    for i in sorted(set(contract.state.expected) & c.alive):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    c.commit(c.tx("close", ["inputs"], round_id))
    c.commit(c.tx("close", ["seed"], round_id))
    c.commit(c.tx("close", ["sketch"], round_id))
    c.commit()
    outcome = decide_accepted(contract.validation_check(None), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields(), round_id))
    return outcome.accepted


def retry_without(c: FaultyCluster, out: int, updates: dict[int, np.ndarray]) -> None:
    """Round 2, with the convicted member `out` still a participant but expected in no phase (the contract refuses
    its input), validated and unmasked: every honest node's sum is exactly the accepted members'."""
    accepted = validated_round(c, 2, updates)
    assert out not in c.contracts[0].state.u1 and c.contracts[0].state.convicted == (out,)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in accepted], axis=0)
    for i in sorted(c.alive - {out}):
        total = c.rounds[i].try_sum(deadline_passed=False)
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i


def test_a_masked_input_contradicting_its_sketch_is_convicted_and_its_round_finishes_without_it() -> None:
    c, updates = run("lie-identity")
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    assert LIAR in outcome.accepted
    c.commit(c.tx("accept", outcome.accept_fields()))
    result = blame(c)
    assert result.committed and LIAR not in result.included
    assert (result.convicted, result.disputes, result.missing) == ((LIAR,), (), ())
    assert c.contracts[0].state.convicted == (LIAR,)
    retry_without(c, LIAR, updates)


def test_a_convicted_member_takes_one_of_the_rules_f_suspicion_places_with_it() -> None:
    """At N = 7 (f = 2, t = 4: an accepted set needs 5) with member LIAR convicted, at most f - 1 Byzantine members
    remain among the six candidates, so the rule may reject at most one on suspicion: with two honest outliers in
    the retry, one is accepted and the round can still commit (with genesis f it rejected both, and every round
    after a conviction of f members aborted)."""
    c, updates = run("lie-identity")
    accept_decided(c)
    assert blame(c).convicted == (LIAR,)
    rng = np.random.default_rng(7)
    far = {**updates, 0: rng.normal(0, 3.0, L), 1: rng.normal(0, 3.0, L)}
    accepted = validated_round(c, 2, far)
    assert len(accepted) == 5 and len({0, 1} & set(accepted)) == 1, accepted


def test_a_member_masking_another_weight_than_it_committed_is_convicted() -> None:
    c, updates = run(None)
    lie_about_weight(c)
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    assert LIAR in outcome.accepted
    c.commit(c.tx("accept", outcome.accept_fields()))
    result = blame(c)
    assert (result.convicted, result.disputes, result.missing) == ((LIAR,), (), ())
    retry_without(c, LIAR, updates)


@pytest.mark.parametrize("validate", [True, False])
def test_the_lie_weight_fault_fails_the_weight_check_alone_and_is_convicted(validate: bool) -> None:
    """`lie-weight`: LIAR masks its weight plus LIE_WEIGHT_SHIFT and commits its true weight (its `input` commits the
    forged masked input's digest, so the contract takes it). With validation the sketch, which does not cover the
    weight, still agrees; with or without it, the `fail` names the weight alone and the verdict convicts LIAR, and the
    round finishes over S \\ {LIAR} (the excise phase; with validation its sum checked by the linear identity)."""
    c, updates = run("lie-weight", validate=validate)
    contract = c.contracts[0]
    if validate:
        accept_decided(c)
    else:
        c.commit(c.tx("close", ["inputs"]))
    assert LIAR in contract.state.expected and contract.state.phase == "unmask"
    unmask_fails(c)
    fields = fail_fields(c)
    assert fields[:2] == [1, -1], fields
    c.commit(c.tx("fail", fields))
    c.commit()
    assert set(contract.state.disclosures) == set(contract.state.summed)
    judged = contract.blame_judgement()
    assert (judged.convicted, judged.disputes) == ((LIAR,), ())
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)]))
    assert contract.state.convicted == (LIAR,)
    # The round finishes over S \ {LIAR} (the excise phase): exactly the honest members' sum.
    assert contract.state.phase == "excise" and contract.state.excised == (LIAR,)
    c.commit()
    kept = tuple(m for m in contract.state.summed if m != LIAR)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in kept], axis=0)
    for i in sorted(c.alive - {LIAR}):
        total = c.rounds[i].try_excised_sum()
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
    c.commit(c.tx("result", [list(kept), b"\x01" * 32]))
    outcome = contract.state.outcomes[-1]
    assert outcome.committed and outcome.included == kept and outcome.convicted == (LIAR,)


def lie_about_pair(c: Cluster, liar: int, partner: int) -> None:
    """`liar`'s pending `blame` shifts its sketch scalar with `partner` by what its masked input's lie added to row
    b* (a `lie-identity` member passing its own check), re-signed with its key."""
    contract = c.contracts[0]
    row = SketchRow.of(c.rounds[liar]._sketch, contract.state.failure[1])  # type: ignore[arg-type]
    for k, raw in enumerate(c.mempool):
        tx = contract.parse(raw)
        if tx.kind == "blame" and tx.author == liar:
            disclosure = disclosure_of(liar, tx.fields[0], tx.fields[1], contract.state.summed,  # type: ignore[arg-type]
                                       contract.state.disputes)
            pairs = pair_lie(liar, partner, disclosure.pairs, row)
            c.mempool[k] = rc.make_tx(CHAIN, "blame", liar, tx.round, [encode_pairs(pairs), tx.fields[1]],
                                      c.sign(liar))


def lie_to(partner: int) -> Callable[[FaultyCluster], None]:
    """LIAR lies about its pair scalar with `partner` (`lie_about_pair`)."""
    return lambda c: lie_about_pair(c, LIAR, partner)


def test_a_liar_about_pair_masks_disputes_each_honest_partner_once_and_is_convicted_after_f_plus_1() -> None:
    """`lie-identity` member 3 passes its own check each round by lying about its mask with one honest partner:
    each verdict records that dispute, the pair masks nothing in the next rounds (the same lie is impossible),
    and the third distinct partner (f + 1 = 3 at N = 7) convicts it, its round then finishing over the others."""
    c, updates = run("lie-identity")
    accept_decided(c)
    partners = iter((0, 5, 6))
    outcome = blame(c, 1, lie_to(next(partners)))
    assert (outcome.convicted, outcome.disputes) == ((), ((0, LIAR),))
    for round_id, partner in ((2, 5), (3, 6)):
        accepted = validated_round(c, round_id, updates)
        assert LIAR in accepted and partner in accepted
        disputed = {j + 1 for pair in c.contracts[0].state.disputes for j in pair} - {LIAR + 1}
        assert not disputed & set(c.rounds[LIAR].machine.pair_seeds()), "a disputed pair still masks"
        outcome = blame(c, round_id, lie_to(next(partners)))
        assert outcome.disputes == ((LIAR, partner),)
    assert outcome.convicted == (LIAR,)
    assert c.contracts[0].state.disputes == ((0, LIAR), (LIAR, 5), (LIAR, 6))


def test_the_lie_disclosure_fault_disputes_a_new_honest_partner_each_round_and_is_convicted_after_f_plus_1() -> None:
    """`lie-disclosure` (what `--validator-fault` plays on real daemons): LIAR masks as `lie-identity` and its
    disclosure lies about its pair scalar with its lowest undisputed partner, so it passes its own check: each verdict
    records one dispute with an honest member never disputed before, and the third (f + 1 = 3 at N = 7) convicts it,
    its round finishing over the others. No honest member is convicted or disputed with another."""
    c, updates = run("lie-disclosure")
    accept_decided(c)
    outcome = blame(c, 1)
    assert (outcome.convicted, outcome.disputes) == ((), ((0, LIAR),))
    for round_id, partner in ((2, 1), (3, 2)):
        accepted = validated_round(c, round_id, updates)
        assert LIAR in accepted and partner in accepted
        outcome = blame(c, round_id)
        assert outcome.disputes == ((min(partner, LIAR), max(partner, LIAR)),), (round_id, outcome)
    assert outcome.committed and outcome.convicted == (LIAR,) and LIAR not in outcome.included
    assert c.contracts[0].state.disputes == ((0, LIAR), (1, LIAR), (2, LIAR))
    assert c.contracts[0].state.convicted == (LIAR,)


def test_the_lie_disclosure_fault_passes_its_own_check_only_by_its_lie() -> None:
    """Without the lie in its disclosure (the honest hook), the same masked input convicts LIAR at once: the lie is
    what turns a conviction into a dispute."""
    c, _ = run("lie-disclosure")
    c.faults.behaviour = {"validator": "lie-identity"}  # the same masked input; the disclosure passes unchanged
    accept_decided(c)
    assert (blame(c).convicted, c.contracts[0].state.disputes) == ((LIAR,), ())


def test_lying_pairs_shifts_the_lowest_partners_sketch_scalar_with_its_mask_sign() -> None:
    row = SketchRow(0, np.arange(5), np.arange(5, 7))  # R(shift on every coordinate) = 3 shifts
    pairs = {j: PairScalars(10 + j, 20 + j) for j in (2, 5, 6)}
    partner, lied = lying_pairs(4, pairs, row)
    assert partner == 2 and lied[2] == PairScalars(12, (22 - 3 * LIE_IDENTITY_SHIFT) % 2**32)
    assert {j: lied[j] for j in (5, 6)} == {j: pairs[j] for j in (5, 6)}
    partner, lied = lying_pairs(1, pairs, row)
    assert partner == 2 and lied[2] == PairScalars(12, 22 + 3 * LIE_IDENTITY_SHIFT)


def test_the_contract_refuses_a_verdict_naming_an_honest_member_or_omitting_the_culprit() -> None:
    c, _ = run("lie-identity")
    accept_decided(c)
    unmask_fails(c)
    c.commit(c.tx("fail", fail_fields(c)))
    c.commit()
    for convicted, disputes in [((), ()), ((0,), ()), ((0, LIAR), ()), ((), ((0, LIAR),))]:
        with pytest.raises(rc.TxError, match="not the ledger's"):
            c.commit(c.tx("verdict", [list(convicted), rc.encode_disputes(disputes)]))
    c.commit(c.tx("verdict", [[LIAR], b""]))
    assert c.contracts[0].state.convicted == (LIAR,)


def test_a_replica_that_restarted_after_the_fail_computes_the_same_verdict() -> None:
    """Red team B10: the verdict needs no unmasking state, only the ledger (here a copy of the contract state
    with no secure round behind it)."""
    c, _ = run("lie-identity")
    accept_decided(c)
    unmask_fails(c)
    c.commit(c.tx("fail", fail_fields(c)))
    c.commit()
    restarted = rc.Contract(c.contracts[0].params, c.contracts[0].verify)
    restarted.state = c.contracts[0].state.copy()
    assert restarted.blame_judgement().convicted == (LIAR,)


def test_junk_reveals_are_refused_by_the_contract_and_the_sum_unmasked_without_them() -> None:
    """The liar's reveal tx holds shares off their owners' commitments: the contract refuses it with a typed reason,
    so the ledger never holds it, and every honest node unmasks from the committed (honest) reveals once late."""
    c, updates = run("lie-reveal")
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    assert [(tx.author, exc.reason) for tx, exc in c.refused] == [(LIAR, "off_commitment")]  # type: ignore[attr-defined]
    assert LIAR not in c.contracts[0].state.reveals
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    for i in set(range(N)) - {LIAR}:
        total = c.rounds[i].try_sum(deadline_passed=c.rounds[i].enough_reveals)
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
        assert c.rounds[i].result.lying_revealers == frozenset()  # type: ignore[union-attr]


def test_a_holder_lacking_the_liars_sketch_shares_still_discloses_and_the_liar_is_convicted() -> None:
    """Red team B4 at the shell: honest holder 0 never got LIAR's shares. Its `blame` still carries its pair
    scalars and the shares it has (`MISSING_SHARE` for LIAR's), so it is neither absent nor suspended."""
    c, _ = run("lie-identity")
    accept_decided(c)
    unmask_fails(c)
    c.rounds[0]._dealt.pop(LIAR)
    c.commit(c.tx("fail", fail_fields(c)))
    c.commit()
    state = c.contracts[0].state
    assert 0 in state.disclosures and decode_shares(state.disclosures[0][1], state.summed)[LIAR] == MISSING_SHARE
    judged = c.contracts[0].blame_judgement()
    assert (judged.convicted, judged.absent, judged.undecided) == ((LIAR,), (), ())
