"""The round contract's excise phase (docs/validation.md, "Excising convicted survivors"; module doc of
`node.contract`): without validation, a `verdict` convicting members L of S opens it instead of aborting; every
member of U1 but the convicted reveals its shares of L's mask keys (`sa` [UnmaskShares], refused with a typed
reason), and the round ends with a `result` over S \\ L, checked on exactly the committed reveals of both phases, or
an `abort`, both keeping the verdict's convictions.

Real secure-aggregation messages at N = 4, t = 1, min_members = 3 (`tests.unit.test_contract_reveals.dealt`); the
`fail`'s base scalars make member 2 fail its own check (`tests.unit.test_contract_blame.fail`).
"""

from __future__ import annotations

import dataclasses
import hashlib

import trio

from node import contract as rc
from smpc import messages as sam
from smpc.signing import signing_payload
from tests.unit.test_blame_shell import work_pending
from tests.unit.test_contract import CHAIN, KEYS, M0, tx
from tests.unit.test_contract_blame import disclosure, fail
from tests.unit.test_contract_reveals import DEALER, Reveals, _primary, dealt, refusal, unmasking
from tests.unit.test_contract_secure_phases import ALL

LIAR = 2
KEPT = (0, 1, 3)
M1 = hashlib.sha256(b"excised model").digest()


def judged(convicted: tuple[int, ...] = (LIAR,)) -> tuple[Reveals, list[rc.Event]]:
    """Round 1 unmasked over S = every member (all reveals committed), failed the weight check, every member of S
    disclosed, and the verdict convicting `convicted` committed: the driver and the verdict's events."""
    d = unmasking()
    d.commit(*(d.reveal(a) for a in ALL))
    d.commit(fail(d, 1, -1, off=convicted))
    d.commit(*(disclosure(a, ALL, with_sketch=False) for a in ALL))
    assert d.c.blame_judgement().convicted == convicted
    return d, d.commit(tx("verdict", 0, 1, list(convicted), b""))


def excise_reveal(d: Reveals, author: int, excised: tuple[int, ...] = (LIAR,)) -> bytes:
    """`author`'s excise reveal of L = `excised`, as its SecureRound submits it."""
    return tx("sa", author, 1, dealt(1, ALL, ALL, (), excised)[2][author])


def excise_message(d: Reveals, author: int) -> sam.UnmaskShares:
    message = sam.decode(dealt(1, ALL, ALL, (), (LIAR,))[2][author], d.c.params.round_config(1, ALL).limits)
    assert isinstance(message, sam.UnmaskShares)
    return message


def resigned_excise(d: Reveals, author: int, **changes: object) -> bytes:
    """`author`'s excise reveal with `changes`, signed again with its own key (a Byzantine member's own message)."""
    forged = dataclasses.replace(excise_message(d, author), **changes)  # type: ignore[arg-type]
    body = signing_payload(CHAIN, forged.signed_body())
    return tx("sa", author, 1, sam.encode(dataclasses.replace(forged, signature=KEYS[author].sign(body).signature)))


def test_a_convicting_verdict_without_validation_opens_the_excise_phase_and_records_the_convictions() -> None:
    d, events = judged()
    assert events == [rc.ExciseStarted(1, ALL, (LIAR,), d.s.height)]
    assert (d.s.open, d.s.phase, d.s.excised, d.s.expected) == (True, "excise", (LIAR,), KEPT)
    assert (d.s.convicted, d.s.outcomes) == ((LIAR,), []), "convicted at once; the round has no outcome yet"
    assert d.s.survivor_entries() == tuple((a, d.s.digests[a], 0) for a in KEPT)


def test_a_verdict_leaving_too_few_of_s_still_aborts_the_round() -> None:
    d, events = judged((1, LIAR))
    assert events == [rc.RoundOutcome(1, False, (), M0, d.s.height, convicted=(1, LIAR))]
    assert not d.s.open and d.s.convicted == (1, LIAR)


def test_excise_reveals_are_refused_with_a_typed_reason() -> None:
    d, _ = judged()
    assert refusal(d, tx("sa", 0, 1, b"\x92junk")) == "malformed"
    assert refusal(d, d.reveal(0)) == "not_allowed", "an unmask-phase reveal: self seeds of S"
    (share,) = (s for _, s in excise_message(d, 0).mask_key_shares)
    # A Byzantine holder reveals an honest member's mask key along with the liar's, or a self seed: refused.
    assert refusal(d, resigned_excise(d, 0, mask_key_shares=((2, share), (LIAR + 1, share)))) == "not_allowed"
    assert refusal(d, resigned_excise(d, 0, self_seed_shares=((LIAR + 1, share),))) == "not_allowed"
    assert refusal(d, tx("sa", LIAR, 1, dealt(1, ALL, ALL, (), (1,))[2][LIAR])) == "not_a_holder", "convicted"
    off = resigned_excise(d, 0, mask_key_shares=((LIAR + 1, bytes([share[0] ^ 1]) + share[1:]),))
    assert refusal(d, off) == "off_commitment"
    d.commit(excise_reveal(d, 0))
    assert refusal(d, excise_reveal(d, 0)) == "duplicate"


def test_an_excise_reveal_in_the_unmask_phase_is_refused_as_not_excising() -> None:
    d = unmasking()
    assert refusal(d, excise_reveal(d, 0)) == "not_excising"


def test_the_result_is_over_s_without_l_checked_on_both_phases_committed_reveals_and_keeps_the_convictions() -> None:
    d, _ = judged()
    excise = [excise_reveal(d, a) for a in KEPT]
    d.commit(*excise[:2])
    unmask = tuple(dealt(1, ALL, ALL)[2][a] for a in ALL)
    ours = tuple(dealt(1, ALL, ALL, (), (LIAR,))[2][a] for a in KEPT)
    entries = tuple((a, d.s.digests[a], 0) for a in KEPT)
    d.refused("exactly the round's committed inputs", tx("result", 0, 1, list(ALL), M1))
    d.refused("outside a secure round's unmask phase", tx("fail", 0, 1, 1, -1, b""))
    assert d.check(excise[2], tx("result", 0, 1, list(KEPT), M1)) == [
        rc.AggregateCheck(1, M0, entries, M1, unmask, (LIAR,), ours)]
    assert d.commit(excise[2], tx("result", 0, 1, list(KEPT), M1))[-1] == rc.RoundOutcome(
        1, True, KEPT, M1, d.s.height, convicted=(LIAR,))
    assert (d.s.open, d.s.model_hash, d.s.convicted) == (False, M1, (LIAR,))
    d.open(2)
    assert LIAR not in d.s.expected


def test_an_abort_of_the_excise_phase_waits_for_the_deadline_and_a_replica_without_excision_and_keeps_the_verdict(
        ) -> None:
    d, _ = judged()
    d.commit(excise_reveal(d, 0))
    entries = tuple((a, d.s.digests[a], 0) for a in KEPT)
    unmask = tuple(dealt(1, ALL, ALL)[2][a] for a in ALL)
    assert d.check(tx("abort", 0, 1, "too few")) == [
        rc.DeadlineCheck(1, "excise"),
        rc.UnmaskAbortCheck(1, M0, entries, unmask, (LIAR,), (dealt(1, ALL, ALL, (), (LIAR,))[2][0],))]
    assert d.commit(tx("abort", 0, 1, "too few")) == [
        rc.RoundOutcome(1, False, (), M0, d.s.height, missing=(1, 3), convicted=(LIAR,))]
    assert (d.s.open, d.s.convicted, d.s.model_hash, d.s.absent) == (False, (LIAR,), M0, (1, 3)), \
        "who did not reveal by the deadline is named and absent, as in the unmask phase"


def test_the_primary_proposes_the_excise_reveals_and_the_result_over_s_without_l_excised_from_them() -> None:
    """`Proposer._unmask_step` serves the excise phase: the pending excise reveals and, in the same block, the
    `result` its own excision of exactly them gives (asked with L and those reveals), never a `fail`."""
    d, _ = judged()
    excise = [excise_reveal(d, a) for a in KEPT]
    proposer, _ = _primary(d, excise, failure=(True, None, bytes(32)))
    asked: list[rc.AggregateCheck] = []

    async def aggregate(check: rc.AggregateCheck, wait_s: float) -> bytes:
        asked.append(check)
        return M1

    proposer.aggregator.aggregate = aggregate  # type: ignore[attr-defined]
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    ours = tuple(dealt(1, ALL, ALL, (), (LIAR,))[2][a] for a in KEPT)
    assert advanced and txs[:-1] == excise
    result = d.c.parse(txs[-1])
    assert (result.kind, result.fields) == ("result", (KEPT, M1))
    [check] = asked
    assert (check.included, check.excised, check.excise_reveals) == (d.s.survivor_entries(), (LIAR,), ours)
    assert d.commit(*txs)[-1] == rc.RoundOutcome(1, True, KEPT, M1, d.s.height, convicted=(LIAR,))


def test_the_primary_without_an_excision_proposes_no_fail_in_the_excise_phase() -> None:
    d, _ = judged()
    proposer, _ = _primary(d, [excise_reveal(d, a) for a in KEPT], failure=(True, None, bytes(32)))
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    assert not advanced and all(d.c.parse(raw).kind == "sa" for raw in txs)


def test_excise_reveals_proving_a_convicted_dealer_faulty_make_its_abort_valid_and_due_at_once() -> None:
    """DEALER (convicted) dealt member 2 a share of its secrets off its polynomial; the unmask phase committed the
    reveals of 0, 1 and 3 only, which fit. The excise reveals of 0, 1 and 2 put member 2's share of DEALER's mask key
    on the ledger: no `result` is valid any more, the `abort` needs no check and is pending work at once."""
    d = unmasking(shifted=(3,))
    d.commit(*(d.reveal(a) for a in (0, 1, 3)))
    assert not d.c.proven_dealers()
    d.commit(fail(d, 1, -1, off=(DEALER,)))
    d.commit(*(disclosure(a, ALL, with_sketch=False) for a in ALL))
    d.commit(tx("verdict", 0, 1, [DEALER], b""))
    assert d.s.phase == "excise" and d.s.excised == (DEALER,)
    reveals = [tx("sa", a, 1, dealt(1, ALL, ALL, (3,), (DEALER,))[2][a]) for a in (0, 1, 2)]
    d.commit(*reveals[:2])
    assert not d.c.proven_dealers() and not work_pending(d.c)
    d.commit(reveals[2])
    assert d.c.proven_dealers() == (DEALER,) and work_pending(d.c)
    d.refused("prove members", tx("result", 0, 1, [0, 1, 2], M1))
    assert d.check(tx("abort", 0, 1, "proven")) == []
    assert d.commit(tx("abort", 0, 1, "proven")) == [rc.RoundOutcome(1, False, (), M0, d.s.height,
                                                                      convicted=(DEALER,))]
