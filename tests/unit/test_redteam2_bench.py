"""Red team 2 (issue 14, the bench): an honest member is made absent, and takes a strike, only by its own silence
past a deadline every replica checked (docs/threat-model.md Known limits; `Membership._missing_inputs`: "a member
back mid-round is not marked absent again for a round it was kept out of").

The adversary: member 0 of a validated consortium at N = 4 (f = 1, t = 1, `exclude_late`), with its real key, in
U1. The honest member 3 crashed before round 1's keys phase: the keys phase closes past its deadline without it
(its first strike, its own silence). It restarts during round 1; as the shell does (`RoundDriver.join_found_open`
-> `prepare_next_round`), it advertises its keys for round 2 ahead, and that `sa` commits: member 3 is present
again while round 1 is open, though round 1 keeps it out (not in U1). Member 0 then withholds its share bundle, so
the shares phase has 2 of the 3 inputs it needs and aborts past its deadline.
"""

from __future__ import annotations

from tests.unit.test_claims_bench import FLAPPER, ROUNDS, Consortium, expecting
from tests.unit.test_contract import tx, validated_contract
from tests.unit.test_contract_secure_phases import ALL, Driver

WITHHOLDER, RESTARTED = 0, 3


def _round_one_with_a_restart(back_mid_round: bool) -> Driver:
    """Round 1 up to the abort of its shares phase; member 3 back mid-round (its ahead advert committed) or not."""
    d = Driver(validated_contract())
    d.open()
    d.close("keys", (0, 1, 2))  # past the keys deadline: member 3 is silent
    assert d.s.absent == (RESTARTED,) and d.s.strikes == {RESTARTED: 1}
    if back_mid_round:
        advert = d.inputs("keys", (RESTARTED,), round_id=2)
        assert d.c.tx_valid_ahead(d.c.parse(advert[0]))
        d.commit(*advert)
        assert d.s.absent == ()
    d.commit(*d.inputs("shares", (1, 2)))  # the withholder sends no share bundle
    d.commit(tx("abort", 0, 1, "too few members in phase shares"))
    return d


def test_the_abort_names_the_withholder_and_a_member_still_absent_takes_no_second_strike() -> None:
    d = _round_one_with_a_restart(back_mid_round=False)
    assert WITHHOLDER in d.s.outcomes[-1].missing
    assert d.s.strikes == {WITHHOLDER: 1, RESTARTED: 1}


def test_a_member_back_mid_round_is_not_named_by_an_abort_of_a_phase_it_was_kept_out_of() -> None:
    d = _round_one_with_a_restart(back_mid_round=True)
    outcome = d.s.outcomes[-1]
    assert WITHHOLDER in outcome.missing
    assert RESTARTED not in outcome.missing, f"the abort names {outcome.missing}"
    assert d.s.strikes.get(RESTARTED) == 1 and RESTARTED not in d.s.absent, (d.s.strikes, d.s.absent_since)


class _AheadRounds(Consortium):
    """Validated rounds in which every member advertises the next round's keys ahead as soon as the contract takes
    them (what `prepare_next_round` does), the flapper included, and the flapper withholds its statistics whenever
    it is expected. With `close_ahead`, the primary closes the keys phase ahead once complete and the others send
    their bundles ahead (the flapper holds its bundle); without, the phase ahead is never closed (a primary's
    choice: nothing obliges it, or an honest member that crashed mid-round keeps it incomplete)."""

    def __init__(self, proposer: int, close_ahead: bool) -> None:
        super().__init__(proposer)
        self.close_ahead = close_ahead

    def _advertise_ahead(self, round_id: int) -> None:
        adverts = [a for a in self.inputs("keys", ALL, round_id=round_id) if self.c.tx_valid_ahead(self.c.parse(a))]
        self.commit(*adverts)
        if self.close_ahead and self.c.ahead_complete():
            self.commit(self.duty("close", round_id, "keys"))
            others = tuple(m for m in self.s.ahead_u1 if m != FLAPPER)
            self.commit(*self.inputs("shares", others, round_id=round_id))

    def close_phase(self, round_id: int) -> None:
        if self.s.phase == "seed" and round_id < ROUNDS:
            self._advertise_ahead(round_id + 1)
        super().close_phase(round_id)


def _expecting(close_ahead: bool) -> list[int]:
    return expecting(_AheadRounds(proposer=FLAPPER, close_ahead=close_ahead))


def test_a_withholder_whose_keys_ran_ahead_is_benched_when_the_phase_ahead_closed() -> None:
    assert _expecting(close_ahead=True) == [1, 2, 4, 8, 16]


def test_a_withholder_whose_keys_ran_ahead_is_benched_when_the_phase_ahead_stayed_open() -> None:
    assert _expecting(close_ahead=False) == [1, 2, 4, 8, 16]


def test_a_member_benched_mid_round_cannot_come_back_through_the_phase_ahead() -> None:
    d = Driver(validated_contract())
    d.s.strikes, d.s.kept = {FLAPPER: 1}, {FLAPPER: 0}  # it went absent once before
    d.open()
    d.commit(*d.inputs("keys", (FLAPPER,), round_id=2))  # its keys for round 2, ahead
    d.close("keys", (1, 2, 3))  # silent in round 1's own keys phase, past its deadline
    assert d.s.absent == (FLAPPER,) and d.s.absent_since == {FLAPPER: 3}, "strike 2: benched for round 2"
    d.commit(*d.inputs("keys", (1, 2, 3), round_id=2))
    assert d.c.ahead_complete()
    d.commit(tx("close", 0, 2, "keys"))
    bundle = d.inputs("shares", (FLAPPER,), round_id=2)[0]
    assert not d.c.tx_valid_ahead(d.c.parse(bundle)), f"ahead U1 {d.s.ahead_u1}: the benched member deals ahead"
