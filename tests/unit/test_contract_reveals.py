"""The unmask phase's reveals as ledger transactions (issue 14, red team rt2-1/rt2-2): the contract admits only a
member's own, allowed, committed-to shares, and decides from the committed reveals alone whether a dealer's shares
contradict its advert, convicting it then and never an honest dealer.

Real secure-aggregation messages at N = 4, t = 1 (`SecAggParticipant`, fixed seeds); member `DEALER` may deal the
shares of the holders it names off its polynomial, committing to exactly what it sends.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node import contract as rc
from node.proposer import UNMASK_MERGE_WAIT_S, Proposer, Signer
from smpc import field, shamir
from smpc import messages as sam
from smpc.prg import SeededRandomBytes
from smpc.secagg import SecAggParticipant
from smpc.signing import signing_payload
from tests.unit.test_contract import CHAIN, KEYS, tx, validated_contract, verify
from tests.unit.test_contract_secure_phases import ALL, Driver, digest, secure

DEALER = 3
"""The member (index) that may deal badly: participant id 4."""


def shifting(holders: Sequence[int]) -> Callable[..., dict[int, field.FieldArray]]:
    """A sharing that is honest but for the shares of `holders` (ids), each off the polynomial by one."""
    honest = shamir.share_secret

    def share(secret: bytes, degree: int, ids: Sequence[int], rand: field.RandomBytes) -> dict[int, field.FieldArray]:
        shares = honest(secret, degree, ids, rand)
        for holder in holders:
            shares[holder] = field.add(shares[holder], np.ones_like(shares[holder]))
        return shares
    return share


@functools.cache
def dealt(round_id: int, u1: tuple[int, ...], survivors: tuple[int, ...], shifted: tuple[int, ...] = (),
          excised: tuple[int, ...] = ()) -> tuple[dict[int, bytes], dict[int, bytes], dict[int, bytes]]:
    """Every member's encoded AdvertiseKeys, the ShareKeys of U1 = `u1` (DEALER shifting the shares of `shifted`),
    and, if `survivors` (U3) is given, every member of U1's UnmaskShares (U2 = U1); if `excised` (members of U3) is
    given too, instead every member of U1 outside it's excise reveal (`SecAggParticipant.excise_reveal`)."""
    config = validated_contract().params.round_config(round_id, ALL)
    members = [SecAggParticipant(config, i + 1, lambda b, i=i: KEYS[i].sign(b).signature,  # type: ignore[misc]
                                 lambda s, d, sig: verify(s - 1, d, sig),
                                 SeededRandomBytes(hashlib.sha256(b"reveals %d %d" % (round_id, i)).digest()))
               for i in ALL]
    adverts = [m.start() for m in members]
    for m in members:
        for a in adverts:
            if a.sender != m.me:
                m.receive(a)
    holders = frozenset(i + 1 for i in u1)
    bundles = {}
    for i in u1:
        with mock.patch.object(shamir, "share_secret", shifting(shifted) if i == DEALER else shamir.share_secret):
            bundles[i] = members[i].on_keys_committed(holders)
    reveals = {}
    if survivors:
        for i in u1:
            for bundle in bundles.values():
                if bundle is not None and bundle.sender != i + 1:
                    members[i].receive(bundle)
            members[i].on_shares_committed(holders)
        for i in u1:
            reveal = members[i].on_inputs_committed({a + 1: digest(a, round_id) for a in survivors})
            assert reveal is not None
            reveals[i] = sam.encode(reveal)
            if excised:
                excise = members[i].excise_reveal(frozenset(m + 1 for m in excised)) if i not in excised else None
                reveals[i] = sam.encode(excise) if excise is not None else b""
    return ({i: sam.encode(a) for i, a in enumerate(adverts)},
            {i: sam.encode(b) for i, b in bundles.items() if b is not None}, reveals)


class Reveals(Driver):
    """A `Driver` whose key messages come from `dealt`, with DEALER shifting the shares of `shifted`."""

    def __init__(self, c: rc.Contract, shifted: tuple[int, ...] = ()) -> None:
        super().__init__(c)
        self.shifted = shifted

    def inputs(self, phase: str, members: tuple[int, ...], round_id: int | None = None) -> list[bytes]:
        r = self.s.round
        if phase == "keys":
            return [tx("sa", a, r, dealt(r, ALL, (), self.shifted)[0][a]) for a in members]
        if phase == "shares":
            return [tx("sa", a, r, dealt(r, self.s.u1, (), self.shifted)[1][a]) for a in members]
        return super().inputs(phase, members, round_id)

    def reveal(self, author: int) -> bytes:
        """`author`'s reveal of the open round's unmask phase, as its SecureRound submits it."""
        return tx("sa", author, self.s.round, self.reveal_message(author))

    def reveal_message(self, author: int) -> bytes:
        return dealt(self.s.round, self.s.u1, self.s.expected, self.shifted)[2][author]


def unmasking(shifted: tuple[int, ...] = (), survivors: tuple[int, ...] = ALL) -> Reveals:
    """A secure round in its unmask phase, U1 = U2 = every member, U3 = `survivors`."""
    d = Reveals(secure(), shifted)
    d.to("unmask", {"inputs": survivors})
    assert d.s.phase == "unmask" and d.s.expected == survivors
    return d


def refusal(d: Reveals, raw: bytes) -> str:
    with pytest.raises(rc.RevealRefusal) as refused:
        d.check(raw)
    assert refused.value.reason in rc.REVEAL_REFUSALS
    return refused.value.reason


def resigned(d: Reveals, author: int, **changes: object) -> bytes:
    """`author`'s reveal with `changes`, signed again with its own key (a Byzantine member's own message)."""
    message = sam.decode(d.reveal_message(author), d.c.params.round_config(1, ALL).limits)
    forged = dataclasses.replace(message, **changes)  # type: ignore[arg-type]
    body = signing_payload(CHAIN, forged.signed_body())
    return tx("sa", author, 1, sam.encode(dataclasses.replace(forged, signature=KEYS[author].sign(body).signature)))


def test_a_reveal_is_a_transaction_of_the_unmask_phase_and_every_node_sees_it_committed() -> None:
    d = unmasking()
    raw = d.reveal(1)
    assert d.check(raw) == []
    assert d.commit(raw) == [rc.SecAggCommitted(1, 1, d.reveal_message(1))]
    assert d.s.reveals == {1: d.reveal_message(1)}
    assert d.c.unmask_decision().missing, "one reveal: t + 1 = 2 shares of each self seed needed"


def test_junk_oversized_duplicate_and_forbidden_reveals_are_refused_with_a_typed_reason() -> None:
    d = unmasking(survivors=(0, 1, 2))
    d.commit(d.reveal(1))
    message = sam.decode(d.reveal_message(2), d.c.params.round_config(1, ALL).limits)
    assert isinstance(message, sam.UnmaskShares)
    seed_shares = message.self_seed_shares
    shifted = bytes([seed_shares[0][1][0] ^ 1]) + seed_shares[0][1][1:]
    assert refusal(d, d.reveal(1)) == "duplicate"
    assert refusal(d, tx("sa", 2, 1, b"junk")) == "malformed"
    assert refusal(d, resigned(d, 2, self_seed_shares=((1, bytes(4096)),))) == "malformed"  # oversized share
    assert refusal(d, tx("sa", 2, 1, d.reveal_message(0))) == "malformed"  # another member's reveal
    assert refusal(d, resigned(d, 2, mask_key_shares=seed_shares[:1])) == "not_allowed"  # a survivor's mask key
    assert refusal(d, resigned(d, 2, self_seed_shares=((1, shifted), *seed_shares[1:]))) == "off_commitment"
    stale = d.c.reveal_refusal(d.c.parse(tx("sa", 2, 2, d.reveal_message(2))))
    assert stale is not None and stale.reason == "not_unmasking"
    with pytest.raises(rc.TxError, match="malformed tx"):
        d.check(tx("sa", 2, 1, bytes(rc.MAX_TX_BODY_BYTES)))
    assert not d.c.tx_valid_now(d.c.parse(d.reveal(1))), "the mempool drops a second reveal as well"


def test_a_member_outside_u1_cannot_reveal() -> None:
    d = Reveals(secure())
    d.to("unmask", {"keys": (0, 1, 2)})
    assert DEALER not in d.s.u1
    raw = tx("sa", DEALER, 1, dealt(1, ALL, ALL)[2][DEALER])
    assert refusal(d, raw) == "not_a_holder"


def test_a_bad_dealer_is_convicted_by_the_abort_and_no_result_is_valid_once_its_reveals_are_committed() -> None:
    d = unmasking(shifted=(2, 3))
    d.commit(*(d.reveal(a) for a in ALL))
    assert d.c.unmask_decision().dealers == (DEALER + 1,) and d.c.proven_dealers() == (DEALER,)
    with pytest.raises(rc.TxError, match="prove members \\[3\\] dealt badly"):
        d.check(tx("result", 0, 1, list(ALL), bytes(32)))
    abort = tx("abort", 0, 1, "committed reveals prove a dealer faulty")
    assert d.check(abort) == [], "a proof on the ledger: no deadline, no replica's own unmasking"
    [outcome] = d.commit(abort)
    assert isinstance(outcome, rc.RoundOutcome)
    assert (outcome.committed, outcome.convicted, outcome.missing) == (False, (DEALER,), ())
    assert d.s.convicted == (DEALER,)


@settings(max_examples=40, deadline=None)
@given(shifted=st.sets(st.sampled_from((1, 2, 3))), revealers=st.sets(st.sampled_from(ALL)),
       dealer_dropped=st.booleans())
def test_the_contract_convicts_exactly_a_dealer_whose_committed_shares_contradict_its_advert(
        shifted: set[int], revealers: set[int], dealer_dropped: bool) -> None:
    """Whatever reveals the ledger commits: DEALER's secret that unmasking needs (its self seed as a survivor, its
    mask key once dropped) is proven bad iff at least t + 1 = 2 of its shares are committed and one of them is
    shifted (the shifted shares lie on the polynomial plus one, through another secret); no other member, all
    honest, is ever named."""
    survivors = (0, 1, 2) if dealer_dropped else ALL
    d = unmasking(tuple(sorted(shifted)), survivors)
    d.commit(*(d.reveal(a) for a in sorted(revealers)))
    holders = {a + 1 for a in revealers}
    proven = len(holders) >= 2 and bool(holders & shifted)
    decision = d.c.unmask_decision()
    assert decision.dealers == ((DEALER + 1,) if proven else ())
    checks = d.check(tx("abort", 0, 1, "x"))
    assert (checks == []) == proven
    if decision.complete:
        assert isinstance(d.check(tx("result", 0, 1, list(survivors), bytes(32)))[0], rc.AggregateCheck)


class _Mempool:
    """What `Proposer` reads of the mempool: pending txs, their arrival, and `drop`."""

    def __init__(self, c: rc.Contract, raws: Sequence[bytes]) -> None:
        self.txs = {hashlib.sha256(raw).digest(): c.parse(raw) for raw in raws}
        self.arrival = dict.fromkeys(self.txs, 0.0)
        self.dropped: list[str] = []

    def drop(self, tx: rc.Tx, why: Exception) -> None:
        del self.txs[hashlib.sha256(tx.raw).digest()]
        self.dropped.append(getattr(why, "reason", ""))


def _primary(d: Reveals, pending: Sequence[bytes], failure: tuple[bool, int | None, bytes] | None = None
             ) -> tuple[Proposer, _Mempool]:
    """Member 0 as primary, at the start of the unmask phase (no deadline passed), unable to unmask yet (or whose
    unmasking found `failure`, as `Aggregator.known_failure` gives it)."""
    mempool = _Mempool(d.c, pending)

    async def aggregate(check: object, wait_s: float) -> None:
        return None

    settings = SimpleNamespace(phase_deadline_s=30.0, batch_window_s=1.0, contract=d.c.params)
    aggregator = SimpleNamespace(aggregate=aggregate, known_failure=lambda round_id: failure)
    timings = SimpleNamespace(phase_elapsed_s=lambda round_id, phase: 0.0)
    me = Signer(CHAIN, len(ALL), 0, lambda b: KEYS[0].sign(b).signature)
    return Proposer(d.c, settings, mempool, aggregator, timings, me, lambda: False, lambda: 0, 0), mempool  # type: ignore[arg-type]


def test_the_primary_proposes_the_reveals_then_the_convicting_abort_and_drops_a_junk_reveal() -> None:
    d = unmasking(shifted=(2, 3))
    junk = resigned(d, 1, self_seed_shares=((1, bytes(40)),))
    proposer, mempool = _primary(d, [junk] + [d.reveal(a) for a in ALL])
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    assert mempool.dropped == ["off_commitment"]
    reveals, abort = txs[:-1], d.c.parse(txs[-1])
    assert advanced and sorted(reveals) == sorted(d.reveal(a) for a in ALL) and abort.kind == "abort"
    assert d.check(*txs) == []
    [outcome] = [e for e in d.commit(*txs) if isinstance(e, rc.RoundOutcome)]
    assert outcome.convicted == (DEALER,)


def test_without_validation_the_primary_proposes_the_fail_its_unmasking_found() -> None:
    """Red team B13: a secure round without validation whose unmasked weight contradicts the committed ones is
    closed with `fail` [1, -1, bases] (the blame phase names the liar), not left to an unnamed abort."""
    d = unmasking()
    assert not d.c.params.validate
    bases = bytes(8 * len(ALL))
    proposer, _ = _primary(d, [d.reveal(a) for a in ALL], failure=(True, None, bases))
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    failing = d.c.parse(txs[-1])
    assert advanced and (failing.kind, failing.fields) == ("fail", (1, -1, bases))
    assert [type(check) for check in d.check(*txs)] == [rc.FailureCheck]
    assert isinstance(d.commit(*txs)[-1], rc.BlameStarted) and d.s.phase == "blame"


def test_the_primary_waits_for_every_holders_reveal_within_the_batch_window() -> None:
    d = unmasking()
    proposer, _ = _primary(d, [d.reveal(a) for a in (0, 1, 2)])
    proposer.mempool.arrival = dict.fromkeys(proposer.mempool.txs, time.monotonic())  # type: ignore[attr-defined]
    assert trio.run(proposer._phase_txs, d.c.shadow()) == ([], False)
    last = hashlib.sha256(d.reveal(3)).digest()
    proposer.mempool.txs[last] = d.c.parse(d.reveal(3))  # type: ignore[index]
    proposer.mempool.arrival[last] = time.monotonic()  # type: ignore[attr-defined]
    assert trio.run(proposer._phase_txs, d.c.shadow()) == ([], False), \
        "every secret recovered: held for the primary's unmasking, to share a block with the result"
    arrival = proposer.mempool.arrival  # type: ignore[attr-defined]
    proposer.mempool.arrival = {digest: at - UNMASK_MERGE_WAIT_S for digest, at in arrival.items()}  # type: ignore[attr-defined]
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    assert not advanced and sorted(txs) == sorted(d.reveal(a) for a in ALL), "then the reveals alone"


def test_the_primary_proposes_the_reveals_and_the_result_unmasked_from_them_in_one_block() -> None:
    d = unmasking()
    proposer, _ = _primary(d, [d.reveal(a) for a in ALL])
    asked: list[object] = []

    async def aggregate(check: rc.AggregateCheck, wait_s: float) -> bytes:
        asked.append(check.reveals)
        return b"h" * 32

    proposer.aggregator.aggregate = aggregate  # type: ignore[attr-defined]
    txs, advanced = trio.run(proposer._phase_txs, d.c.shadow())
    reveals = tuple(d.reveal_message(a) for a in ALL)
    assert advanced and txs[:-1] == [d.reveal(a) for a in ALL] and d.c.parse(txs[-1]).kind == "result"
    assert asked == [reveals], "unmasked from the reveals the block commits, none committed before"
    assert d.check(*txs) == [rc.AggregateCheck(1, d.s.model_hash, d.s.survivor_entries(), b"h" * 32, reveals)]


def test_an_unmask_abort_past_its_deadline_names_the_members_of_u1_that_withheld_their_reveals() -> None:
    """The attack: members of U1 withhold their reveals so that fewer than t + 1 are committed and the round aborts
    at the unmask deadline, with every masked input committed. The abort names exactly the members of U1 without a
    committed reveal: they become absent and take a strike (a bench with `exclude_late`), as a withholder of any
    other phase's input does, so they cannot abort the next round the same way; the member that revealed is not
    named."""
    d = unmasking()
    d.commit(d.reveal(1))
    abort = tx("abort", 0, 1, "too few reveals by the deadline")
    assert [type(check) for check in d.check(abort)] == [rc.DeadlineCheck, rc.UnmaskAbortCheck]
    [outcome] = d.commit(abort)
    assert isinstance(outcome, rc.RoundOutcome)
    assert (outcome.committed, outcome.missing, outcome.convicted) == (False, (0, 2, 3), ())
    assert d.s.absent == (0, 2, 3) and all(d.s.strikes[m] == 1 for m in (0, 2, 3))
    assert 1 not in d.s.strikes


def test_a_validated_unmask_abort_does_not_name_a_member_the_round_excluded() -> None:
    """Member 3 sent no masked input: validation started without it (excluded), so the unmask phase does not count
    on its reveal either."""
    d = Driver(validated_contract()).to("unmask", {"inputs": (0, 1, 2)})
    assert d.s.excluded == (3,) and d.s.u1 == ALL
    [outcome] = d.commit(tx("abort", 0, 1, "too few reveals by the deadline"))
    assert isinstance(outcome, rc.RoundOutcome) and outcome.missing == (0, 1, 2)


def test_an_abort_proving_a_bad_dealer_names_nobody_absent() -> None:
    """Committed reveals that prove a dealer faulty make the abort valid at once, before the deadline: the members
    that had not revealed yet had no time to, and are not named."""
    d = unmasking(shifted=(2,))
    d.commit(d.reveal(0), d.reveal(1))
    assert d.c.proven_dealers() == (DEALER,)
    [outcome] = d.commit(tx("abort", 0, 1, "committed reveals prove a dealer faulty"))
    assert isinstance(outcome, rc.RoundOutcome)
    assert (outcome.missing, outcome.convicted, d.s.absent) == ((), (DEALER,), ())
