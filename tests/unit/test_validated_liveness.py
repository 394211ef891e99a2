"""A member the ledger already holds as faulty costs at most one validated round (issues 14 and 15).

At N = 3f + 1 with t_v = f, the seed, sketch and validate phases of a validated round needed 2t_v + 1 + f = N
inputs: one member that never started, crashed or stayed silent aborted every validated round for ever
(it was named `missing` and became absent, yet the next round needed it again). A member absent when the
round's validation starts is counted as one of the f faulty members and left out of the round's validation:
the others hold at most f_eff = f - k faulty members, and the phases need 2t_v + 1 + f_eff inputs.

Whole validated rounds in one process (contract + `SecureRound` for every live member, blocks built by hand,
`tests.unit.test_secure_round.Cluster`); a silent member receives nothing and sends nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from consensus.block import Block
from ml.robust import RobustRule
from node import contract as rc
from node.secure_round import SendShares, SubmitTx, decide_accepted
from node.settings import censorship_bound_s
from smpc import field
from smpc.errors import InconsistentShares, SmpcError
from tests.unit import test_contract as contract_test
from tests.unit.test_secure_round import CHAIN, Cluster, L, forged_statistics


def _model(round_id: int) -> bytes:
    return hashlib.sha256(b"model %d" % round_id).digest()


class Rounds(Cluster):
    """A Cluster that drives whole validated rounds with its live members; `silent` never sends anything."""

    def __init__(self, n: int, seed: int, rounds: int, silent: set[int]) -> None:
        super().__init__(n, seed, validate=True, rounds=rounds, validation_degree=(n - 1) // 3)
        self.alive -= silent
        self.rng = np.random.default_rng(seed)
        self.base = self.rng.normal(0, 0.3, L)
        self.leave_after: dict[str, set[int]] = {}
        """phase -> members that fall silent as it closes (a crash, a stall, a lost connection)."""
        self.updates: dict[int, np.ndarray] = {}
        self.odd: dict[int, np.ndarray] = {}
        """Members whose update is this instead of one close to the others'."""

    @property
    def contract(self) -> rc.Contract:
        return self.contracts[min(self.alive)]

    def _try(self, closing: bytes) -> bool:
        """Commit the pending inputs with `closing` if the contract accepts them (the primary's shadow check);
        otherwise commit an abort, the primary's move at the phase deadline. True if it closed."""
        txs = [raw for raw in self.mempool if self.contract.tx_valid_now(self.contract.parse(raw))]
        try:
            self.contract.check_block(Block(CHAIN, self.height + 1, CHAIN, 0, 0, (*txs, closing)))
        except rc.TxError:
            self.commit(self.tx("abort", ["too few members"], self.contract.state.round))
            return False
        self.commit(closing)
        return True

    def until_statistics(self, round_id: int) -> rc.ValidationCheck | None:
        """Open `round_id` with every member and run it with the live members until every live holder's
        statistic shares are committed: what the robust rule decides on. None if the round aborted."""
        self.commit(self.tx("open", [self.contract.state.model_hash, list(range(self.n))], round_id))
        for phase in ("keys", "shares"):
            assert self._try(self.tx("close", [phase], round_id)), phase
            self._leave(phase)
        self.updates = {i: self.odd.get(i, self.base + self.rng.normal(0, 0.02, L)) for i in sorted(self.alive)}
        for i in sorted(self.alive):
            self.emit(i, self.rounds[i].set_update(self.weighting.vector(self.updates[i], 50)))
        for phase in ("inputs", "seed", "sketch"):
            if not self._try(self.tx("close", [phase], round_id)):
                return None
            self._leave(phase)
        for _ in range(3):  # statistics and complaints; answers; statistics from answered shares
            self.commit()
        return self.contract.validation_check(None)

    def _leave(self, phase: str) -> None:
        self.alive -= self.leave_after.pop(phase, set())
        self.mempool = [raw for raw in self.mempool if self.contract.parse(raw).author in self.alive]

    def round(self, round_id: int) -> rc.RoundOutcome:
        """A whole round: committed with the accepted set (every live node unmasks exactly its sum), or aborted."""
        check = self.until_statistics(round_id)
        if check is None:
            return self.contract.state.outcomes[-1]
        try:
            decision = decide_accepted(check, self.setup, self.quant)  # type: ignore[arg-type]
        except SmpcError:
            self.commit(self.tx("abort", ["statistics cannot be reconstructed"], round_id))
            return self.contract.state.outcomes[-1]
        accepted = decision.accepted
        if not self._try(self.tx("accept", decision.accept_fields(), round_id)):
            return self.contract.state.outcomes[-1]
        expected = np.sum([self.weighting.vector(self.updates[i], 50) for i in accepted], axis=0)
        for i in sorted(self.alive):
            total = self.rounds[i].try_sum(deadline_passed=True)
            assert total is not None and np.allclose(total, expected, atol=self.n / self.quant.scale), (round_id, i)
        self.commit(self.tx("result", [list(self.contract.state.expected), _model(round_id)], round_id))
        return self.contract.state.outcomes[-1]

    def comes_back(self, member: int) -> None:
        """`member` syncs the blocks it missed, as a restarted daemon does, then says `ready`
        (`RoundDriver.announce_presence`)."""
        for block in self.blocks:
            self.contracts[member].apply_block(block)
        self.alive.add(member)
        self.mempool.append(rc.make_tx(CHAIN, "ready", member, self.contract.ready_round, [], self.sign(member)))


@pytest.mark.parametrize(("n", "silent"), [(4, {3}), (7, {3}), (7, {2, 5})])
def test_members_that_never_start_cost_at_most_the_first_round(n: int, silent: set[int]) -> None:
    """Each silent member misses round 1's keys phase (one deadline), becomes absent and is left out of
    validation from then on: every round commits, with the accepted set of the present members."""
    rounds = 4
    c = Rounds(n, 70 + n + len(silent), rounds, silent)
    outcomes = [c.round(r) for r in range(1, rounds + 1)]
    present = tuple(sorted(set(range(n)) - silent))
    first = outcomes[0]
    assert first.committed or set(first.missing) == silent, first
    assert [(o.committed, o.included) for o in outcomes[1:]] == [(True, present)] * (rounds - 1), outcomes
    assert c.contract.state.absent == tuple(sorted(silent)) and c.contract.finished


@pytest.mark.parametrize("n", [4, 7, 10])
@pytest.mark.parametrize("phase", ["inputs", "seed"])
def test_a_member_that_falls_silent_during_validation_aborts_one_round_then_the_rest_commit(n: int, phase: str) -> None:
    """Red team v7: member 3 masks its round-1 input and falls silent before its seed reveal (or after it,
    before dealing its sketch). Round 1's next phase is short of 2t_v + 1 + f inputs: it aborts at its
    deadline and names member 3. From round 2 on member 3 is absent, left out, and every round commits."""
    c = Rounds(n, 80 + n, 3, set())
    c.leave_after = {phase: {3}}
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (3,))
    present = tuple(m for m in range(n) if m != 3)
    assert [(o.committed, o.included) for o in (c.round(2), c.round(3), c.round(4))] == [(True, present)] * 3


def test_a_member_back_with_ready_is_counted_and_waited_for_again() -> None:
    """Member 3 never started; rounds 1-2 commit without it. It catches up and says `ready`: round 3 counts it
    again (not excluded, so f_eff = f and every member must publish) and its keys phase waits for it."""
    n = 4
    c = Rounds(n, 90, 3, {3})
    assert [c.round(r).committed for r in (1, 2)] == [True, True]
    c.comes_back(3)
    c.commit(c.tx("open", [c.contract.state.model_hash, list(range(n))], 3))
    state = c.contract.state
    assert state.absent == () and state.excluded == ()
    others = [raw for raw in c.mempool if c.contract.parse(raw).author != 3]
    close = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*others, c.tx("close", ["keys"], 3)))
    assert rc.DeadlineCheck(3, "keys") in c.contract.check_block(close), "member 3 is awaited again"


def test_a_returning_member_contributes_to_the_next_round() -> None:
    """As above, with member 3 taking part in round 3: it commits with all four, member 3's update summed."""
    n = 4
    c = Rounds(n, 91, 3, {3})
    assert [c.round(r).committed for r in (1, 2)] == [True, True]
    c.comes_back(3)
    outcome = c.round(3)
    assert (outcome.committed, outcome.included) == (True, (0, 1, 2, 3))
    assert c.contract.state.absent == ()


def test_f_eff_is_fixed_for_the_round_so_a_member_back_mid_round_is_still_left_out() -> None:
    """Member 3, absent when round 2 opens, says `ready` during it: it is present for the next round, but this
    round's validation was reckoned without it (f_eff = 0), so it stays out of it rather than raise the
    phases' minimum above what the round can still reach, and it is not named missing for it."""
    n = 4
    c = Rounds(n, 92, 3, {3})
    assert c.round(1).committed
    c.commit(c.tx("open", [c.contract.state.model_hash, list(range(n))], 2))
    c.commit(rc.make_tx(CHAIN, "ready", 3, 2, [], c.sign(3)))
    state = c.contract.state
    assert state.absent == () and state.excluded == (3,) and c.contract.min_inputs("seed") == 3
    assert c.contract.effective_faulty == 0


def test_a_forged_statistic_share_at_n4_with_one_absent_relies_on_the_absent_member_being_the_faulty_one() -> None:
    """N = 4, f = 1, member 3 absent: f_eff = 0, and the 3 present members' degree-2 statistic shares have no
    redundancy. A forged share from member 2 is neither corrected nor detected: the reconstruction is
    unchecked and the statistics move as member 2 likes. The rule is sound only under its assumption: the
    absent member is the one faulty member (f = 1), so the 3 present ones are honest. With all 4 present
    (f_eff = 1) the same forgery is detected (the statistics are undecidable, the round aborts)."""
    n, liar = 4, 2
    c = Rounds(n, 93, 2, {3})
    assert c.round(1).committed
    check = c.until_statistics(2)
    assert check is not None and check.max_faulty == 0 and [a for a, _ in check.published] == [0, 1, 2]
    honest = decide_accepted(check, c.setup, c.quant)
    assert honest.statistics.checked is False, "3 shares of a degree-2 polynomial: nothing to cross-check"
    shift = int(c.setup.sketch.scale**2) * 10**9
    lied = decide_accepted(forged_statistics(check, liar, {0: shift}), c.setup, c.quant)
    assert lied.statistics.inconsistent_publishers == () and lied.statistics.norms_sq[1] != honest.statistics.norms_sq[1]

    full = Rounds(n, 94, 1, set())
    check = full.until_statistics(1)
    assert check is not None and check.max_faulty == 1
    with pytest.raises(InconsistentShares):
        decide_accepted(forged_statistics(check, liar, {0: shift}), full.setup, full.quant)


def test_a_forged_statistic_share_at_n7_with_one_absent_is_still_detected() -> None:
    """N = 7, f = 2, member 3 absent: f_eff = 1, the 6 present members' statistic shares need 2t_v + 1 + 1 = 6
    agreeing, so one present member's forged share leaves no decidable polynomial: the round aborts."""
    n = 7
    c = Rounds(n, 95, 2, {3})
    assert c.round(1).committed
    check = c.until_statistics(2)
    assert check is not None and check.max_faulty == 1
    shift = int(c.setup.sketch.scale**2) * 10**9
    with pytest.raises(InconsistentShares):
        decide_accepted(forged_statistics(check, 5, {0: shift}), c.setup, c.quant)


def test_a_member_absent_when_the_next_rounds_keys_closed_ahead_is_excluded_from_that_round() -> None:
    """Member 3 was absent while round 2's key phases ran ahead in round 1 (they closed without it, nobody
    waits for the absent) and said `ready` before round 2 opened. It is no longer absent, but it is outside
    round 2's U3: it was absent when round 2's keys closed, so it counts among the faulty for round 2, whose
    validation then needs 3 inputs, not the 4 that U3 could never reach (which would abort round 2, name
    member 3 missing and make it absent again, round after round)."""
    c = contract_test.validated_contract(4)
    s = c.state
    s.round, s.ahead_phase, s.ahead_u1, s.ahead_u2, s.absent = 1, "inputs", (0, 1, 2), (0, 1, 2), ()
    c.apply_block(contract_test.block(1, 0, contract_test.tx("open", 0, 2, contract_test.M0, [0, 1, 2, 3])))
    assert (s.round, s.phase, s.u1, s.excluded) == (2, "inputs", (0, 1, 2), ())
    inputs = [contract_test.tx("input", a, 2, bytes([a]) * 32, 1, bytes([a]) * 32) for a in (0, 1, 2)]
    c.apply_block(contract_test.block(2, 0, *inputs, contract_test.tx("close", 0, 2, "inputs")))
    assert (s.phase, s.expected, s.excluded) == ("seed", (0, 1, 2), (3,))
    assert c.effective_faulty == 0 and c.min_inputs("seed") == 3


@pytest.mark.parametrize(("n", "phase"), [(4, "keys"), (4, "shares"), (7, "keys"), (7, "shares")])
def test_a_member_that_stalls_before_its_masked_input_costs_a_deadline_not_the_round(n: int, phase: str) -> None:
    """Member 3 advertises its keys (or also deals its shares) and then stalls: the next phase closes at its
    deadline without it, it is outside U3, counted among the faulty and left out of the validation, and the
    round commits with the others. It is not absent (it missed no keys phase): the next round waits for it."""
    c = Rounds(n, 100 + n, 2, set())
    c.leave_after = {phase: {3}}
    outcome = c.round(1)
    assert (outcome.committed, outcome.included) == (True, tuple(m for m in range(n) if m != 3))
    assert c.contract.state.absent == ()


@pytest.mark.parametrize(("n", "excluded", "f_eff"), [
    (4, 0, 1), (4, 1, 0), (5, 1, 1), (5, 2, 0), (7, 1, 1), (7, 2, 0), (8, 1, 2), (8, 2, 1), (10, 3, 0)])
def test_f_eff_spends_the_spare_members_first(n: int, excluded: int, f_eff: int) -> None:
    """N >= 3f + 1 + k tolerates k excluded members with f_eff = f (no timing assumption needed); beyond the
    spare N - (2t_v + 1 + f), each excluded member lowers f_eff by one, so the phases need exactly the others."""
    c = contract_test.validated_contract(n)
    c.state.excluded = tuple(range(excluded))
    assert c.effective_faulty == f_eff
    assert c.min_inputs("validate") == 2 * ((n - 1) // 3) + 1 + f_eff <= n - excluded


def test_the_rule_keeps_genesis_f_so_a_suspicion_among_few_aborts_instead_of_admitting() -> None:
    """f_eff rests on the excluded members being faulty; the rule's suspicion does not, and keeps genesis f.
    At N = 4 with member 3 absent, member 1's odd update (the opposite of the others') is rejected on
    suspicion as with all four present; 2 < 3 members remain, so the round aborts (naming nobody) rather
    than sum an update the rule suspects on the strength of the timing assumption."""
    def rounds(rounds: int, silent: set[int]) -> Rounds:
        c = Rounds(4, 96, rounds, silent)
        c.setup = dataclasses.replace(c.setup, rule=RobustRule(f=1))  # type: ignore[arg-type]
        return c

    absent = rounds(2, {3})
    assert absent.round(1).committed
    absent.odd = {1: -absent.base}
    outcome = absent.round(2)
    assert (outcome.committed, outcome.missing) == (False, ())
    full = rounds(1, set())
    full.odd = {1: -full.base}
    outcome = full.round(1)
    assert (outcome.committed, outcome.included, outcome.rejected) == (True, (0, 2, 3), (1,))


def _dropping(c: Rounds, sender: int, drop) -> None:  # type: ignore[no-untyped-def]
    """Make member `sender` of cluster `c` leave out, in round 1, every output `drop(output)` is true of."""
    deliver = c.emit

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        if who == sender and c.contract.state.round == 1:
            outputs = [o for o in outputs if not drop(o)]
        deliver(who, outputs)

    c.emit = emit  # type: ignore[method-assign]


def _is_tx(c: Rounds, kind: str):  # type: ignore[no-untyped-def]
    return lambda o: isinstance(o, SubmitTx) and c.contract.parse(o.raw).kind == kind


def test_a_dealer_withholding_shares_that_answers_the_complaint_costs_nothing() -> None:
    """Dealer 6 sends no sketch shares to member 3 (a lost connection, or red team v6): 3 complains on the
    ledger, 6 answers with the ciphertext its `dealt` committed for 3, 3 takes its shares from the answer and
    publishes, and the round commits with everyone."""
    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 97, 2, set())
    _dropping(c, dealer, lambda o: isinstance(o, SendShares) and o.to == victim)
    first = c.round(1)
    assert (first.committed, first.missing) == (True, ())
    assert c.contract.state.outcomes[-1].included == tuple(range(n))


def test_a_dealer_withholding_shares_and_its_answer_is_named_not_its_victim() -> None:
    """Red teams L2 and v6: at N = 7, Byzantine dealer 6 sends no sketch shares to honest member 3 and does
    not answer 3's complaint, so 3 cannot publish statistics and round 1 aborts at the validate deadline.
    The abort names the dealer (an unanswered complaint), never its victim (which complained): in round 2,
    6 is absent and excluded, 3 is not, and f_eff = 1 (spare 0 at N = 7)."""
    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 97, 2, set())
    _dropping(c, dealer, lambda o: (isinstance(o, SendShares) and o.to == victim) or _is_tx(c, "answer")(o))
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (dealer,))
    c.commit(c.tx("open", [c.contract.state.model_hash, list(range(n))], 2))
    state = c.contract.state
    assert state.absent == (dealer,) and state.excluded == (dealer,) and c.contract.effective_faulty == 1


def test_a_named_dealer_that_proposes_the_abort_and_the_next_open_is_still_excluded() -> None:
    """The withholding dealer 6 is the primary when round 1 aborts: it proposes (and signs) the abort that
    names it and the open of round 2. A block's own `open`, `close`, `abort` or `result` is the proposer's
    duty, not a sign that it takes part again: 6 stays absent, and excluded from round 2's validation."""
    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 97, 2, set())
    _dropping(c, dealer, lambda o: (isinstance(o, SendShares) and o.to == victim) or _is_tx(c, "answer")(o))
    assert c.until_statistics(1) is not None
    c.commit(c.tx("abort", ["too few members"], 1, author=dealer),
             c.tx("open", [c.contract.state.model_hash, list(range(n))], 2, author=dealer), proposer=dealer)
    state = c.contract.state
    assert state.outcomes[-1].missing == (dealer,)
    assert (state.round, state.absent, state.excluded) == (2, (dealer,), (dealer,))


def test_a_holder_withholding_only_its_statistics_is_named() -> None:
    """Red team l4: member 2 takes part in every phase but never publishes statistics nor complains: round 1
    aborts at the validate deadline naming it, and round 2 excludes it."""
    n, withholder = 7, 2
    c = Rounds(n, 96, 2, set())
    _dropping(c, withholder, _is_tx(c, "stats"))
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (withholder,))
    c.commit(c.tx("open", [c.contract.state.model_hash, list(range(n))], 2))
    assert c.contract.state.excluded == (withholder,)


def _junk_for(c: Rounds, dealer: int, victim: int) -> None:
    """Dealer `dealer` of cluster `c` deals junk to `victim` in round 1: its `dealt` commits the hash of a junk
    "sealed bundle" for it, its direct message is junk, and it answers the complaint with that junk (all
    signed with its real key, as a Byzantine member would)."""
    deliver = c.emit
    junk = hashlib.sha256(b"junk").digest() * 40

    def forged(out):  # type: ignore[no-untyped-def]
        if isinstance(out, SendShares) and out.to == victim:
            return SendShares(victim, b"junk")
        if not isinstance(out, SubmitTx):
            return out
        tx = c.contract.parse(out.raw)
        if tx.kind == "dealt":
            hashes = bytearray(tx.fields[1])  # type: ignore[arg-type]
            at = 32 * c.contract.state.expected.index(victim)
            hashes[at : at + 32] = hashlib.sha256(junk).digest()
            return SubmitTx(c.tx("dealt", [tx.fields[0], bytes(hashes)], 1, author=dealer))
        if tx.kind == "answer" and tx.fields[0] == victim:
            return SubmitTx(c.tx("answer", [victim, junk], 1, author=dealer))
        return out

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        deliver(who, [forged(o) for o in outputs] if who == dealer and c.contract.state.round == 1 else outputs)

    c.emit = emit  # type: ignore[method-assign]


def test_a_dealer_answering_with_junk_is_proven_and_named_not_its_victim() -> None:
    """Dealer 6 commits and answers a sealed bundle for honest holder 3 that holds no valid shares. Holder 3
    discloses its channel secret for 6 (only that channel), every replica finds the answer bad, and the abort
    names 6, not 3."""
    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 95, 2, set())
    _junk_for(c, dealer, victim)
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (dealer,))
    assert any(c.contract.parse(raw).kind == "disclose" for b in c.blocks for raw in b.txs)


def test_a_holder_disclosing_a_good_answer_is_refused_and_named() -> None:
    """Red team l4 with a frivolous complaint and a false disclosure: holder 2 complains about honest dealer 5,
    which answers; 2 then claims the answer bad (discloses its channel secret for 5) and withholds its
    statistics. The disclosure is refused (the answer is good: `answer_valid`) and the abort names 2."""
    n, liar, dealer = 7, 2, 5
    c = Rounds(n, 94, 2, set())
    deliver = c.emit
    lied: list[rc.TxError] = []

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        if who == liar and c.contract.state.round == 1:
            outputs = [o for o in outputs if not _is_tx(c, "stats")(o)]
            complaint = c.tx("complaint", [dealer], 1, author=liar)
            if (c.contract.state.phase == "validate" and (liar, dealer) not in c.contract.state.complaints
                    and complaint not in c.mempool):
                outputs.append(SubmitTx(complaint))
            secret = c.rounds[liar]._channel_secrets.get(dealer)
            if c.contract.state.complaints.get((liar, dealer)) == "answered" and secret is not None:
                claim = c.tx("disclose", [dealer, secret], 1, author=liar)
                try:
                    c.contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (claim,)))
                except rc.TxError as exc:
                    lied.append(exc)
        deliver(who, outputs)

    c.emit = emit  # type: ignore[method-assign]
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (liar,))
    assert lied and all(isinstance(e, rc.ComplaintRefused) and e.reason == "answer_valid" for e in lied)


def test_a_member_silent_after_dealing_aborts_one_round_and_is_named() -> None:
    """Member 3 deals its sketch and dies before publishing statistics: round 1's validate phase is short and
    aborts, naming it (it filed no complaint, so it lacked no dealer's shares). Round 2 opens with it absent
    and excluded, and rounds 2 and 3 commit with the others."""
    n = 4
    c = Rounds(n, 98, 3, set())
    c.leave_after = {"sketch": {3}}
    first = c.round(1)
    assert (first.committed, first.missing) == (False, (3,))
    assert [(o.committed, o.included) for o in (c.round(2), c.round(3))] == [(True, (0, 1, 2))] * 2


def test_without_a_deadline_that_outlasts_censorship_nobody_lowers_f_eff() -> None:
    """A member misses a deadline also when censoring primaries hold its transaction out: up to f of them in
    a row, each replaced after `request_timeout_factor` doubling view timeouts. Genesis lets absent or late
    members lower f_eff only when the phase deadline is longer than that (`censorship_bound_s`): with the
    defaults (30 s, 2 s view timeouts, factor 2) at N = 4 and N = 7, not at N = 10 (60 s needed)."""
    assert [censorship_bound_s(f, 2000, 2) for f in (1, 2, 3)] == [12.0, 28.0, 60.0]
    c = contract_test.validated_contract(4)
    c.params = dataclasses.replace(c.params, exclude_late=False)
    c.state.excluded = (3,)
    assert c.effective_faulty == 1 and c.min_inputs("seed") == 4



def test_a_holder_cannot_publish_a_channel_key_its_dealers_cannot_seal_to() -> None:
    """Red team g8 f1: holder 6 puts the low-order point 0 in its `reveal` as its channel key for honest dealer
    5. Had the contract taken it, 5 could seal nothing to it, commit the hash of nothing, and leave 6's complaint
    unanswered: 6 withholds its statistics, and the abort names 5. Every replica refuses such a reveal, so 6
    has none on the ledger, and the seed phase (which needs all 7 at N = 3f + 1) aborts naming 6 alone."""
    n, holder, victim = 7, 6, 5
    c = Rounds(n, 97, 2, set())
    refused: list[bytes] = []
    deliver = c.emit

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        if who == holder and c.contract.state.round == 1:
            kept = []
            for o in outputs:
                if not _is_tx(c, "reveal")(o):
                    kept.append(o)
                    continue
                tx = c.contract.parse(o.raw)
                keys = bytearray(tx.fields[1])  # type: ignore[arg-type]
                keys[32 * victim : 32 * victim + 32] = bytes(32)
                forged = c.tx("reveal", [tx.fields[0], bytes(keys)], 1, author=holder)
                with pytest.raises(rc.TxError, match=f"channel key for member {victim} is of low order"):
                    c.contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (forged,)))
                refused.append(forged)
            outputs = kept
        deliver(who, outputs)

    c.emit = emit  # type: ignore[method-assign]
    first = c.round(1)
    assert refused and (first.committed, first.missing) == (False, (holder,))


def test_an_abort_without_complaints_waits_past_the_complaint_window() -> None:
    """Red team g8 f2: dealer 6 sends honest holder 3 nothing, and censoring primaries keep 3's complaint out
    of the blocks. With a one-deadline abort, replicas voted for it at 0.8 D, inside the complaint window
    (1.05 D on their clocks), and it named 3, not 6. Replicas now vote for it only from 1.6 D."""
    from types import SimpleNamespace

    from node.block_validation import BlockValidator
    from node.settings import WINDOW_SLACK, WINDOWS
    from node.timings import Timings

    n, dealer, victim, deadline = 7, 6, 3, 30.0
    c = Rounds(n, 97, 2, set())
    _dropping(c, dealer, lambda o: (isinstance(o, SendShares) and o.to == victim) or _is_tx(c, "answer")(o))
    deliver = c.emit
    c.emit = lambda who, outputs: deliver(who, [o for o in outputs if who != victim  # type: ignore[method-assign]
                                                or not _is_tx(c, "complaint")(o)])
    assert c.until_statistics(1) is not None and not c.contract.state.complaints
    block = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (c.tx("abort", ["too few members in phase validate"], 1),))
    checks = [ch for ch in c.contract.check_block(block) if isinstance(ch, rc.DeadlineCheck)]
    window_end = (WINDOWS["complaint"] + WINDOW_SLACK) * deadline

    def votes_at(elapsed_s: float) -> bool:
        timings = Timings()
        timings.round_opened_at[1] = timings.phase_started[(1, "validate")] = 0.0
        replica = SimpleNamespace(timings=SimpleNamespace(phase_elapsed_s=lambda r, p: elapsed_s),
                                  settings=SimpleNamespace(phase_deadline_s=deadline))
        return all(BlockValidator._deadline_ok(replica, block, ch) for ch in checks)  # type: ignore[arg-type]

    assert checks and not votes_at(window_end) and votes_at(2 * deadline)


def test_a_late_direct_message_off_the_dealers_commitments_is_refused_so_the_abort_names_the_dealer() -> None:
    """Red team g8 f7: dealer 6 withholds its shares from holder 3 until 3's complaint is committed, then sends
    them directly, signed, with PRZS commitments other than those its `dealt` committed, and never answers. Had
    3 taken them, its statistic share would fit no one else's, the round would abort with every statistic
    published and nobody named. 3 refuses a message off the ledger's commitments and keeps waiting for the
    answer, so the abort names 6."""
    from smpc import przs
    from smpc import validation_messages as vm

    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 97, 2, set())
    held: list[bytes] = []
    deliver = c.emit

    def forged(payload: bytes) -> bytes:
        r = c.rounds[dealer]
        m = vm.decode_shares(payload, r._vlimits)  # type: ignore[arg-type]
        parts = sorted(r.config_members)
        commits = dict(zip(przs.dealt_subsets(parts, r.validation.degree, dealer), m.commitment_list()))  # type: ignore[union-attr]
        for subset in przs.shared_subsets(parts, r.validation.degree, dealer, victim):  # type: ignore[union-attr]
            commits[subset] = przs.commitment(c.params.chain_id, 1, subset, dealer, bytes(32))
        return vm.sign_shares(c.params.chain_id, c.sign(dealer), 1, dealer, victim, m.share,
                              bytes(len(m.contributions)), b"".join(commits.values()))

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        s = c.contract.state
        if who == dealer and s.round == 1:
            held.extend(o.payload for o in outputs if isinstance(o, SendShares) and o.to == victim)
            outputs = [o for o in outputs if not (isinstance(o, SendShares) and o.to == victim)
                       and not _is_tx(c, "answer")(o)]
        deliver(who, outputs)
        if s.round == 1 and s.phase == "validate" and held and (victim, dealer) in s.complaints:
            deliver(dealer, [SendShares(victim, forged(held.pop()))])

    c.emit = emit  # type: ignore[method-assign]
    first = c.round(1)
    assert not held and (first.committed, first.missing) == (False, (dealer,))


def _complaining(c: Rounds, holder: int, dealer: int) -> None:
    """Holder `holder` of cluster `c` complains in round 1 about `dealer` (which served it well) as soon as V is
    fixed, and keeps its statistics back: red team g8 f3's frivolous complaint, before the holder publishes late."""
    deliver = c.emit

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        s = c.contract.state
        if who == holder and s.round == 1:
            outputs = [o for o in outputs if not _is_tx(c, "stats")(o)]
            complaint = c.tx("complaint", [dealer], 1, author=holder)
            if s.phase == "validate" and (holder, dealer) not in s.complaints and complaint not in c.mempool:
                outputs.append(SubmitTx(complaint))
        deliver(who, outputs)

    c.emit = emit  # type: ignore[method-assign]


def _first_vote_deadlines(c: Rounds, block: Block, answered_at: float) -> float:
    """The earliest time, in phase deadlines D since the validate phase started on a replica's clock, at which it
    votes for `block`'s deadline checks, if it saw the round's last answer committed at `answered_at` D (5 if it
    never does within 5 D). Found on a grid of D / 100."""
    from types import SimpleNamespace

    from node.block_validation import BlockValidator

    deadline = 30.0
    checks = [ch for ch in c.contract.check_block(block) if isinstance(ch, rc.DeadlineCheck)]
    assert checks

    def votes_at(t: float) -> bool:
        stamps = {"validate": 0.0, "answered": answered_at}
        elapsed = lambda r, p: (t - stamps[p]) * deadline if p in stamps and t >= stamps[p] else -1.0
        replica = SimpleNamespace(timings=SimpleNamespace(phase_elapsed_s=elapsed),
                                  settings=SimpleNamespace(phase_deadline_s=deadline))
        return all(BlockValidator._deadline_ok(replica, block, ch) for ch in checks)  # type: ignore[arg-type]

    return next((k / 100 for k in range(500) if votes_at(k / 100)), 5.0)


@pytest.mark.parametrize("answered_at", [0.02, 1.05])
def test_a_frivolous_complaint_delays_a_round_by_at_most_a_deadline_after_its_answer_then_names_the_complainer(
        answered_at: float) -> None:
    """Red team g8 f3: holder 2 lacks nothing, complains about honest dealer 5 (at once, or as late as a replica
    takes a complaint, 1.05 D), gets its answer at once, and keeps its statistics back. Replicas voted for the
    abort only from 3.2 D, so 2 published just before and the round committed with everyone, nobody named,
    3.2 D late, every round. Now the statistics' deadline runs from the last answer on the ledger: replicas
    vote for the abort a whole D after it (and past the complaint window, 1.6 D), never later, so the
    complainer gains at most that, and the abort then names it."""
    n, liar, dealer = 7, 2, 5
    c = Rounds(n, 94, 2, set())
    _complaining(c, liar, dealer)
    assert c.until_statistics(1) is not None
    state = c.contract.state
    assert state.complaints == {(liar, dealer): "answered"} and set(state.inputs) == set(range(n)) - {liar}
    abort = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (c.tx("abort", ["too few members in phase validate"], 1),))
    first_vote = _first_vote_deadlines(c, abort, answered_at)
    assert answered_at + 1.0 <= first_vote <= max(1.6, answered_at + 1.0) + 0.02, first_vote
    c.commit(*abort.txs)
    assert (state.outcomes[-1].committed, state.outcomes[-1].missing) == (False, (liar,))


def _lying_statistics(c: Rounds, liar: int) -> None:
    """Member `liar` of cluster `c` publishes, in every round, statistic shares off the polynomial the others'
    lie on: its first statistic shifted (a Byzantine holder moving a norm, signed with its real key)."""
    deliver = c.emit

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        if who == liar:
            outputs = [_shifted(c, liar, o) if _is_tx(c, "stats")(o) else o for o in outputs]
        deliver(who, outputs)

    c.emit = emit  # type: ignore[method-assign]


def _shifted(c: Rounds, liar: int, out: SubmitTx) -> SubmitTx:
    tx = c.contract.parse(out.raw)
    vector = np.frombuffer(tx.fields[0], dtype="<u8").copy()  # type: ignore[arg-type]
    vector[0] = (int(vector[0]) + 10**12) % ((1 << 61) - 1)
    return SubmitTx(c.tx("stats", [vector.astype("<u8").tobytes()], tx.round, author=liar))


def test_an_inconsistent_publisher_is_recorded_every_round_and_not_excluded() -> None:
    """At N = 5 (f = 1, t_v = 1) the statistics need 4 agreeing shares of 5, so one lying holder is corrected. The
    accept records it (L), every replica checks that, and it stays in the next rounds: a holder off the decided
    polynomial may be the victim of a dealer (see the next test), so L is evidence, not a reason to exclude."""
    n, liar = 5, 4
    c = Rounds(n, 110, 3, set())
    _lying_statistics(c, liar)
    for round_id in (1, 2, 3):
        outcome = c.round(round_id)
        assert (outcome.committed, outcome.included, outcome.liars) == (True, tuple(range(n)), (liar,)), round_id
        assert c.contract.state.excluded == () and liar not in c.contract.state.absent


def test_a_dealer_that_deals_an_honest_holder_off_its_polynomial_does_not_get_it_excluded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Red team r9 a1: dealer 4 signs and commits everything correctly but shifts the share values it sends honest
    holder 0 (share values carry no commitment). Holder 0's statistic shares then fall off the decided
    polynomial and the accept records it; when L excluded its members, one dealer removed an honest member from
    every other round. Now holder 0 stays in: round 2 includes it."""
    import node.secure_sketch as sketch_module

    n, dealer, victim = 5, 4, 0
    c = Rounds(n, 905, 2, set())
    honest_share_sketch = sketch_module.share_sketch

    def framing(z, degree, holders, rand):  # type: ignore[no-untyped-def]
        shares = honest_share_sketch(z, degree, holders, rand)
        if rand is c.rounds[dealer]._rand:
            shares[victim + 1] = field.add(shares[victim + 1], np.full(shares[victim + 1].shape, 12345, np.uint64))
        return shares

    monkeypatch.setattr(sketch_module, "share_sketch", framing)
    first = c.round(1)
    assert first.committed and first.liars == (victim,), "the victim is off the decided polynomial"
    assert c.contract.state.excluded == () and victim not in c.contract.state.absent
    monkeypatch.setattr(sketch_module, "share_sketch", honest_share_sketch)
    second = c.round(2)
    assert second.committed and victim in second.included and second.liars == ()


def _replica_votes_for(c: Rounds, closing: bytes) -> bool:
    """Whether a replica votes for a block carrying `closing` (an `accept`) on the committed statistics: the
    contract's checks, then `BlockValidator._validation_ok` with the robust decision as its aggregator makes it."""
    from types import SimpleNamespace

    from node.block_validation import BlockValidator

    block = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (closing,))
    [check] = c.contract.check_block(block)
    assert isinstance(check, rc.ValidationCheck)
    counter = SimpleNamespace(inc=lambda: None)
    replica = SimpleNamespace(
        aggregator=SimpleNamespace(validation_outcome=lambda ch: decide_accepted(ch, c.setup, c.quant)),
        metrics=SimpleNamespace(rejected=SimpleNamespace(labels=lambda reason: counter)), contract=c.contract)
    return BlockValidator._validation_ok(replica, block, check)  # type: ignore[arg-type]


def test_an_accept_must_name_exactly_the_proven_liars() -> None:
    """A Byzantine primary that names an honest publisher as inconsistent would put false evidence on the ledger;
    one that leaves the inconsistent publisher out would hide it. Every replica recomputes the list from the same
    committed shares and refuses both; the contract alone refuses more than a decided polynomial leaves room for
    (at N = 5, one)."""
    n, liar = 5, 4
    c = Rounds(n, 111, 1, set())
    _lying_statistics(c, liar)
    check = c.until_statistics(1)
    assert check is not None
    decision = decide_accepted(check, c.setup, c.quant)
    assert decision.liars == (liar,)

    def accept(liars: list[int]) -> bytes:
        return c.tx("accept", [list(decision.accepted), liars, 0], 1)

    assert _replica_votes_for(c, accept([liar]))
    assert not _replica_votes_for(c, accept([0])), "an honest publisher named"
    assert not _replica_votes_for(c, accept([])), "the proven liar left out"
    for liars in ([0, liar], [1, 2, 3, 4]):
        with pytest.raises(rc.TxError, match="not publishers the statistics can be decided without"):
            c.contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (accept(liars),)))


@pytest.mark.parametrize("how", ["equivocated", "late"])
def test_a_holder_whose_statistics_were_dropped_publishes_again_once_its_complaint_is_answered(how: str) -> None:
    """Member 3 publishes statistics that the primary drops, because 3's complaint about dealer 6 is ahead of them
    ("stats from a holder whose complaint is unanswered"), and 6 answers; 3 must publish again, from the answered
    shares, or the round aborts at the validate deadline naming 3, an honest member. Seen on real daemons under
    `--shell-fault all` (round 6 of a CI run: `missing [0]`), where the attacker's own connection resets delayed its
    shares. `equivocated`: 6's shares to 3 carry a commitment 3 cannot check (of a subset holding 3) other than its
    `dealt` commits; 3 publishes before V is fixed, then finds the mismatch and complains. `late`: 6's shares reach
    3 only after 3 complained about lacking them, and 3 publishes on their arrival."""
    n, dealer, victim = 7, 6, 3
    c = Rounds(n, 97, 2, set())
    deliver = c.emit
    dropped: list[SubmitTx] = []
    held: list[SendShares] = []

    def emit(who: int, outputs: list) -> None:  # type: ignore[type-arg]
        if c.contract.state.round != 1:
            return deliver(who, outputs)
        if who == dealer and how == "equivocated":
            outputs = [_equivocated(c, o) if isinstance(o, SendShares) and o.to == victim else o for o in outputs]
        if who == dealer and how == "late":
            held.extend(o for o in outputs if isinstance(o, SendShares) and o.to == victim)
            outputs = [o for o in outputs if not (isinstance(o, SendShares) and o.to == victim)]
        if who == victim and not dropped:
            txs = [o for o in outputs if isinstance(o, SubmitTx)]
            kinds = [c.contract.parse(o.raw).kind for o in txs]
            if "stats" in kinds and ("complaint" not in kinds or how == "late"):
                dropped.extend(o for o in txs if c.contract.parse(o.raw).kind == "stats")
                outputs = [o for o in outputs if o not in dropped]
        deliver(who, outputs)
        if who == victim and held and any(isinstance(o, SubmitTx) and c.contract.parse(o.raw).kind == "complaint"
                                          for o in outputs):
            late = held.pop()
            emit(victim, c.rounds[victim].on_sketch_shares(dealer, late.payload))
        return None

    c.emit = emit  # type: ignore[method-assign]
    first = c.round(1)
    assert dropped, "the victim published statistics that the primary dropped"
    assert (first.committed, first.missing) == (True, ())
    assert c.contract.state.outcomes[-1].included == tuple(range(n))


def _equivocated(c: Rounds, out: SendShares) -> SendShares:
    """`out`, re-signed by its dealer with one commitment changed: one of a subset holding the holder, which the
    holder cannot check (it gets no contribution for it), so only the `dealt` hash on the ledger shows it."""
    from smpc import przs
    from smpc import validation_messages as vm

    limits = c.rounds[out.to]._vlimits
    assert limits is not None
    message = vm.decode_shares(out.payload, limits)
    dealt = przs.dealt_subsets(sorted(limits.participants), limits.degree, message.dealer)
    k = next(i for i, subset in enumerate(dealt) if message.holder in subset)
    commitments = bytearray(message.commitments)
    commitments[32 * k] ^= 1
    return SendShares(out.to, vm.sign_shares(CHAIN, c.sign(message.dealer), message.round_id, message.dealer,
                                            message.holder, message.share, message.contributions, bytes(commitments)))
