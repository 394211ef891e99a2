"""Complaints answered on the ledger: a sketch dealer that withholds shares, and a holder that withholds statistics.

Driven directly with signed transactions at N = 4 (f = 1, t_v = 1: every holder of V must publish). A holder
that lacks a dealer's sketch shares files `complaint` [dealer] in the validate phase; the dealer answers with
`answer` [holder, ciphertext], the ciphertext whose hash its `dealt` committed for that holder. When the
validate phase aborts for too few statistics, the abort names every dealer with an unanswered complaint (red
team v6) or answered with a bundle its holder proves bad by disclosing the channel secret it committed for that
dealer (`disclose`), and every holder without statistics that is not waiting for such a dealer (red team l4).
"""

from __future__ import annotations

import hashlib

import pytest

from node import contract as rc
from tests.unit.test_contract import CHAIN, tx, validated_contract
from tests.unit.test_contract_secure_phases import (
    ALL,
    Driver,
    _h,
    channel_keys,
    channel_secret,
    ciphertext,
    reveal_value,
)


def answer(dealer: int, holder: int) -> bytes:
    return tx("answer", dealer, 1, holder, ciphertext(dealer, holder, 1))


def complaint(holder: int, dealer: int) -> bytes:
    return tx("complaint", holder, 1, dealer)


def disclose(holder: int, dealer: int) -> bytes:
    return tx("disclose", holder, 1, dealer, channel_secret(holder, dealer, 1))


def abort() -> bytes:
    return tx("abort", 0, 1, "too few members in phase validate")


def validating() -> Driver:
    return Driver(validated_contract()).to("validate")


def test_a_dealer_that_never_answers_a_complaint_is_named_by_the_abort_and_absent_next_round() -> None:
    """Red team v6: dealer 3 committed `dealt` but sent holder 1 nothing; holder 1 complains, 3 never answers."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 2, 3)), complaint(1, 3))
    [outcome] = d.commit(abort())
    assert isinstance(outcome, rc.RoundOutcome) and not outcome.committed
    assert outcome.missing == (3,)
    assert d.s.absent == (3,)


def test_a_holder_that_withholds_its_statistics_without_complaining_is_named() -> None:
    """Red team l4: holder 2 took part in every phase but publishes no statistics and files no complaint."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 1, 3)))
    [outcome] = d.commit(abort())
    assert outcome.missing == (2,)  # type: ignore[union-attr]
    assert d.s.absent == (2,)


def test_an_answered_dealer_is_not_named_and_the_holder_can_then_publish() -> None:
    d = validating()
    d.commit(*d.inputs("validate", (0, 2, 3)), complaint(1, 3))
    events = d.commit(answer(3, 1))
    assert events == [rc.AnswerCommitted(1, 3, 1, ciphertext(3, 1, 1))]
    assert d.s.complaints == {(1, 3): "answered"}
    accept = tx("accept", 0, 1, list(ALL), [], 0)
    assert [type(c) for c in d.check(*d.inputs("validate", (1,)), accept)] == [rc.ValidationCheck]


def test_a_holder_with_an_unanswered_complaint_cannot_publish_so_a_silent_accomplice_is_named() -> None:
    """Red team r9 a2: holder 1 complains about its accomplice, dealer 3, which never answers, so the abort waits
    4 deadlines; then 1 published just before it, the accept closed the phase, and nobody was named, every round.
    Statistics from a holder whose complaint is unanswered are now refused (it lacks that dealer's shares, so an
    honest one never has them), and the abort names the silent dealer."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 2, 3)), complaint(1, 3))
    [late] = d.inputs("validate", (1,))
    assert not d.c.tx_valid_now(d.c.parse(late))
    d.refused("stats from member 1, whose complaint about dealer 3 is unanswered", late)
    [outcome] = d.commit(abort())
    assert outcome.missing == (3,)  # type: ignore[union-attr]


def test_a_holder_whose_complaint_went_unanswered_is_not_named_but_the_silent_dealer_is() -> None:
    """Dealer 3 withholds from holders 1 and 2, both complain; only 3 is named, though 1 and 2 publish nothing."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 3)), complaint(1, 3), complaint(2, 3))
    [outcome] = d.commit(abort())
    assert outcome.missing == (3,)  # type: ignore[union-attr]


def test_a_holder_answered_yet_without_statistics_is_named() -> None:
    """Red team l4 with a frivolous complaint: holder 1 complains about dealer 3, which answers; 1 could then
    publish, and does not (nor proves the answer bad): named."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 2, 3)), complaint(1, 3), answer(3, 1))
    [outcome] = d.commit(abort())
    assert outcome.missing == (1,)  # type: ignore[union-attr]


def test_a_holder_that_proves_the_answer_bad_is_not_named_and_the_dealer_is() -> None:
    """Dealer 3 commits (and answers with) a ciphertext holding no valid shares for holder 1; 1 discloses its
    channel secret for 3, every replica decrypts the answer with it and finds it bad: 3 is named, 1 is not."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 2, 3)), complaint(1, 3), answer(3, 1))
    assert d.check(disclose(1, 3)) == []
    d.commit(disclose(1, 3))
    assert d.s.complaints == {(1, 3): "bad"}
    [outcome] = d.commit(abort())
    assert outcome.missing == (3,)  # type: ignore[union-attr]


def test_a_disclosure_needs_an_answer_and_the_committed_channel_secret() -> None:
    d = validating()
    d.commit(complaint(1, 3))
    d.refused("not_answered", disclose(1, 3))
    d.commit(answer(3, 1))
    d.refused("wrong_channel_secret", tx("disclose", 1, 1, 3, channel_secret(1, 2, 1)))
    d.refused("not_answered", disclose(1, 2))
    d.commit(disclose(1, 3))
    d.refused("not_answered", disclose(1, 3))


def test_complaints_and_answers_need_their_window_checks() -> None:
    d = validating()
    assert d.check(complaint(1, 3)) == [rc.WindowCheck(1, "complaint")]
    d.commit(complaint(1, 3))
    assert d.check(answer(3, 1)) == [rc.WindowCheck(1, "answer")]


def test_complaints_are_bounded_one_per_holder_and_dealer_from_holders_against_dealers() -> None:
    d = validating()
    d.commit(complaint(1, 3))
    d.refused("duplicate", complaint(1, 3))
    d.refused("self", complaint(1, 1))
    d.commit(*d.inputs("validate", (0,)))
    d.refused("already_published", complaint(0, 3))
    e = validating()
    e.s.expected = (0, 1, 2)  # as if V = {0, 1, 2} (at N = 4 a smaller V never validates)
    e.refused("not_a_dealer", complaint(1, 3))
    e.refused("not_a_holder", complaint(3, 1))


def test_a_complaint_outside_the_validate_phase_is_refused() -> None:
    d = Driver(validated_contract()).to("sketch")
    d.refused("not_validating", complaint(1, 3))


def test_an_answer_must_be_the_committed_ciphertext_for_an_open_complaint() -> None:
    d = validating()
    d.refused("no_complaint", answer(3, 1))
    d.commit(complaint(1, 3))
    d.refused("wrong_ciphertext", tx("answer", 3, 1, 1, ciphertext(3, 2, 1)))
    d.refused("no_complaint", answer(2, 1))
    d.commit(answer(3, 1))
    d.refused("already_answered", answer(3, 1))


def test_dealt_must_commit_one_ciphertext_hash_per_holder_of_r() -> None:
    d = Driver(validated_contract()).to("sketch")
    d.refused("not expected", tx("dealt", 1, 1, hashlib.sha256(b"x").digest(), bytes(32 * 3)))
    assert d.check(*d.inputs("sketch", (1,))) == []


def test_complaints_reset_with_the_next_round_and_survive_copy() -> None:
    d = validating()
    d.commit(complaint(1, 3))
    copy = d.s.copy()
    d.commit(answer(3, 1))
    assert copy.complaints == {(1, 3): "open"}
    assert CHAIN and d.s.dealt_hashes[3][1] == hashlib.sha256(ciphertext(3, 1, 1)).digest()


def test_an_abort_with_an_unanswered_complaint_waits_four_phase_deadlines_and_after_answers_one_more() -> None:
    """Each step of a complaint (complain, answer, disclose) gets a whole phase deadline before an abort may
    name anyone for it: the abort's DeadlineCheck asks replicas for 4 deadlines while a complaint is unanswered
    (committed, or in the same block). Without complaints it asks for 2, so that replicas (at 0.8 of it) vote for
    the abort only after the complaint window closed: a holder whose complaint was held out for less than a
    deadline is not named before it lands (red team g8 f2: at one deadline the abort came at 0.8, inside the
    window). Once every complaint is answered, 2 again, and 1.25 after the last answer (red team g8 f3: a holder
    that complained about a dealer serving it well published just before 3.2 deadlines, every round)."""
    d = validating()
    assert d.check(abort()) == [rc.DeadlineCheck(1, "validate", rc.VALIDATE_ABORT_DEADLINES)]
    assert d.check(complaint(1, 3), abort()) == [rc.WindowCheck(1, "complaint"),
                                                 rc.DeadlineCheck(1, "validate", rc.COMPLAINT_ABORT_DEADLINES)]
    d.commit(complaint(1, 3), complaint(2, 3))
    d.commit(answer(3, 1))
    assert d.check(abort()) == [rc.DeadlineCheck(1, "validate", 4, rc.STATISTICS_AFTER_ANSWER_DEADLINES)]
    d.commit(answer(3, 2))
    assert d.check(abort()) == [rc.DeadlineCheck(1, "validate", 2, 1.25)]


def test_an_abort_never_rides_in_the_block_of_an_answer() -> None:
    """The holder of an answer committed with the abort had no time to publish or disclose; a replica's clock
    for the last answer would be an earlier answer's."""
    d = validating()
    d.commit(*d.inputs("validate", (0, 3)), complaint(1, 3), complaint(2, 3))
    d.commit(answer(3, 1))
    d.refused("in the block of an answer", answer(3, 2), abort())
    d.commit(answer(3, 2), abort())
    assert d.s.open and d.s.complaints == {(1, 3): "answered", (2, 3): "answered"}, "the abort was skipped"
    [outcome] = d.commit(abort())
    assert outcome.missing == (1, 2)  # type: ignore[union-attr]


def refusal_message(d: Driver, *txs: bytes) -> str:
    with pytest.raises(rc.TxError) as refused:
        d.check(*txs)
    return str(refused.value)


def smaller_v() -> Driver:
    d = validating()
    d.s.expected = (0, 1, 2)  # as in test_complaints_are_bounded_...: V = {0, 1, 2}
    return d


REFUSAL_MESSAGES = [
    (lambda: Driver(validated_contract()).to("sketch"), (), complaint(1, 3),
     "not_validating: round 1 is not validating"),
    (smaller_v, (), complaint(3, 1), "not_a_holder: member 3 holds no shares of V"),
    (smaller_v, (), complaint(1, 3), "not_a_dealer: member 3 dealt no sketch of V"),
    (validating, (), complaint(1, 1), "self: member 1 about itself"),
    (validating, (complaint(1, 3),), complaint(1, 3), "duplicate: member 1 already complained about 3"),
    (validating, ("inputs 0",), complaint(0, 3), "already_published: member 0 published its statistics"),
    (validating, (), answer(3, 1), "no_complaint: member 1 did not complain about 3"),
    (validating, (complaint(1, 3), answer(3, 1)), answer(3, 1), "already_answered: member 3 already answered 1"),
    (validating, (complaint(1, 3),), tx("answer", 3, 1, 1, ciphertext(3, 2, 1)),
     "wrong_ciphertext: member 3 committed another ciphertext for 1"),
    (validating, (complaint(1, 3),), disclose(1, 3), "not_answered: member 3 has no answer to member 1 to disprove"),
    (validating, (complaint(1, 3), answer(3, 1)), tx("disclose", 1, 1, 3, channel_secret(1, 2, 1)),
     "wrong_channel_secret: member 1 committed another key for 3"),
]


@pytest.mark.parametrize(("setup", "before", "refused", "message"), REFUSAL_MESSAGES,
                         ids=[message.split(":")[0] for *_, message in REFUSAL_MESSAGES])
def test_each_complaint_refusal_names_its_reason_and_the_members_concerned(setup, before, refused, message) -> None:
    d = setup()
    for item in before:
        d.commit(*(d.inputs("validate", (0,)) if item == "inputs 0" else [item]))
    assert refusal_message(d, refused) == message


def test_the_mempool_filter_takes_complaints_answers_and_disclosures_on_their_state_alone() -> None:
    """`tx_valid_now` runs the complaint rules without judging a disclosure's secret or the answer it opens."""
    d = validating()

    def pending(raw: bytes) -> bool:
        return d.c.tx_valid_now(d.c.parse(raw))

    assert pending(complaint(1, 3)) and not pending(complaint(1, 1))
    d.commit(complaint(1, 3))
    assert pending(answer(3, 1)) and not pending(answer(2, 1)) and not pending(disclose(1, 3))
    d.commit(answer(3, 1))
    wrong_secret = tx("disclose", 1, 1, 3, channel_secret(1, 2, 1))
    assert pending(wrong_secret) and pending(disclose(1, 3))
    assert refusal_message(d, wrong_secret).startswith("wrong_channel_secret:")


def test_a_disclosure_about_a_dealer_other_than_the_last_reads_that_dealers_channel_key() -> None:
    d = validating()
    d.commit(*d.inputs("validate", (0, 3)), complaint(1, 2), answer(2, 1))
    assert d.check(disclose(1, 2)) == []
    d.commit(disclose(1, 2))
    assert d.s.complaints == {(1, 2): "bad"}


def test_a_reveal_with_a_low_order_key_for_another_dealer_is_refused_and_its_own_slot_is_free() -> None:
    d = Driver(validated_contract()).to("seed")
    keys = channel_keys(2, 1)
    low_for_1 = keys[:32] + bytes(32) + keys[64:]
    assert refusal_message(d, tx("reveal", 2, 1, reveal_value(2, 1), low_for_1)) == (
        "reveal from member 2: its channel key for member 1 is of low order")
    low_for_itself = keys[:64] + bytes(32) + keys[96:]
    assert d.check(tx("reveal", 2, 1, reveal_value(2, 1), low_for_itself)) == []


def test_a_committed_complaint_is_an_event_naming_round_holder_and_dealer_and_dealt_keeps_its_digest() -> None:
    d = validating()
    assert d.commit(complaint(1, 3)) == [rc.ComplaintCommitted(1, 1, 3)]
    assert d.s.dealt_digests == {dealer: _h("dealt", dealer, 1) for dealer in ALL}, "the commitments' digest"
