"""Who a phase of the round contract counts and waits for (module doc of `node.contract`).

Owns the membership bookkeeping of `Contract`: the fewest members a phase may close with, the absent
members (marked when a round's first phase or an abort leaves them out, present again on any transaction
of theirs or a `ready`), the members a validated round excludes from its validation and the f_eff that
leaves (docs/validation.md, G7), and who the next round's key phases running ahead wait for. A mixin over the
contract's `params` and `state`; pure, may call `node.contract_state` and `node.contract_tx` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from node.contract_state import SA_MESSAGE_OF_PHASE, ContractParams, ContractState, PendingBlame
from node.contract_tx import Tx
from smpc import blame, secagg
from smpc import messages as sam

COMPLAINT_ABORT_DEADLINES = 4
"""Phase deadlines a validate phase with complaints waits before it may abort: complaints within the first,
answers within the second (and a little), and a disclosure still more than one before replicas (at 0.8 of
this) vote for the abort (`node.settings.WINDOWS`)."""
VALIDATE_ABORT_DEADLINES = 2
"""Phase deadlines a validate phase without complaints waits before it may abort: replicas vote for the abort
from 0.8 x 2 = 1.6 deadlines, after the complaint window (1 deadline and `WINDOW_SLACK`) closed, so a holder
whose complaint censoring primaries delayed by less than a deadline is never named for its missing statistics
before the complaint could land (red team g8 f2: with one deadline, the abort came at 0.8)."""
STATISTICS_AFTER_ANSWER_DEADLINES = 1.25
"""Phase deadlines a validate phase with answers also waits, after the last answer committed, before it may
abort: replicas vote for the abort from 0.8 x 1.25 = 1 deadline after it on their own clocks, so every holder
has a whole deadline after its last answer to publish its statistics or disclose a bad answer, and a holder that
complained about a dealer that served it well gains at most that before the abort names it (red team g8 f3:
with only `COMPLAINT_ABORT_DEADLINES`, it published at 3.2 deadlines, every round, unnamed)."""

MAX_BENCH_ROUNDS = 31
"""The longest a member that went absent again waits before it may come back (`Membership.bench_rounds`)."""
FORGIVE_AFTER = 16
"""Committed rounds that include a member with strikes, after which one of its strikes is forgiven: a member
that fails whenever it may aborts at most one round in FORGIVE_AFTER + 1 with a bench of 0, and fewer as its
strikes and bench grow; an honest member that crashes now and then is back at once."""


class Membership:
    """The membership queries and bookkeeping of `node.contract.Contract`."""

    params: ContractParams
    state: ContractState
    _sa_verified: dict[tuple[bytes, int, tuple[int, ...]], sam.Message]

    def committed_sa(self, raw: bytes) -> sam.Message:
        """An `sa` message the open round committed (verified when admitted), decoded; cached like the admission's."""
        s = self.state
        message = self._sa_verified.get((raw, s.round, s.participants))
        return message if message is not None else \
            sam.decode(raw, self.params.round_config(s.round, s.participants).limits)

    def proven_dealers(self) -> tuple[int, ...]:
        """The members (indices) the committed reveals prove to have dealt badly (`unmask_decision`)."""
        return tuple(owner - 1 for owner in self.unmask_decision().dealers)

    def unmask_decision(self) -> secagg.UnmaskDecision:
        """What the committed reveals decide (`smpc.secagg.decide_unmask`): each survivor's self seed and each
        dropped member's mask key recovered from its committed shares, missing (t or fewer), or proving its owner
        faulty (shares off one degree-t polynomial through the advertised secret); in an excise phase, each self seed of
        S \\ L and each mask key of U2 \\ S and of L, from the unmask and excise reveals. A function of the ledger alone,
        so every replica decides alike: an `abort` of the unmask phase convicts the proven dealers, and a `result`
        or `fail` is refused once any is proven (docs/validation.md, G9)."""
        s, p = self.state, self.params
        config = p.round_config(s.round, s.participants)
        if s.phase == "excise":
            # The excise phase decides from both phases' reveals: the self seeds of S \ L, the mask keys of U2 \ S
            # and of L (docs/validation.md, "Excising convicted survivors").
            survivors, excised = {a + 1 for a in s.summed}, {a + 1 for a in s.excised}
            needed = secagg.needed_secrets(survivors - excised, ({a + 1 for a in s.bundles} - survivors) | excised)
        else:
            survivors = {a + 1 for a in s.expected}
            needed = secagg.needed_secrets(survivors, {a + 1 for a in s.bundles} - survivors)
        reveals = [self.committed_sa(raw) for raw in (*s.reveals.values(), *s.excise_reveals.values())]
        return secagg.decide_unmask(
            secagg.revealed_shares(reveals), needed, p.degree,  # type: ignore[arg-type]
            lambda owner, kind, secret: secagg.matches_advert(
                config, self.committed_sa(s.adverts[owner - 1]), kind, secret))  # type: ignore[arg-type]

    @property
    def min_members(self) -> int:
        """Fewest members a phase may close with: enough updates, and t+1 for secure aggregation."""
        return max(self.params.min_updates, self.params.degree + 1 if self.params.secure else 1)

    def min_inputs(self, phase: str) -> int:
        """Fewest inputs that may close `phase`: statistics need 2t_v + 1 + f_eff publishers, so that a
        polynomial agreeing with that many is the true one whatever f_eff of them publish
        (`smpc.shamir.reconstruct`). The publishers are holders of V, so the sketch phase needs as many dealers:
        a smaller V could never validate, and its abort at the sketch deadline names the missing dealers
        instead of nobody later."""
        if phase in ("seed", "sketch", "validate"):
            return 2 * self.params.validation_degree + 1 + self.effective_faulty
        if phase == "blame":
            return 0  # the verdict is decided on whatever was disclosed; who did not disclose is named
        return self.min_members

    def abort_wait(self) -> tuple[int, float]:
        """How long an abort of the open phase waits, in phase deadlines: since the phase started, and since the
        round's last committed answer (0: no answer). One since the phase started, but in a validate phase
        `VALIDATE_ABORT_DEADLINES` (past the complaint window), and while a complaint is unanswered
        `COMPLAINT_ABORT_DEADLINES`, so that its dealer has a whole deadline to answer and its holder one to
        disclose a bad answer; once complaints were answered, also `STATISTICS_AFTER_ANSWER_DEADLINES` after the
        last answer, so that its holder has a whole deadline to publish or disclose (docs/validation.md, G8). A
        deadline is the span genesis makes longer than censoring primaries can hold a transaction out when it
        lets named members lower f_eff."""
        s = self.state
        if s.phase != "validate":
            return 1, 0.0
        since_phase = COMPLAINT_ABORT_DEADLINES if "open" in s.complaints.values() else VALIDATE_ABORT_DEADLINES
        return since_phase, STATISTICS_AFTER_ANSWER_DEADLINES if s.answered_height else 0.0

    @property
    def effective_faulty(self) -> int:
        """f_eff: how many of the open round's validation participants may be faulty. f bounds all faulty
        members, crashed or Byzantine; the k members the ledger holds as faulty (`ContractState.excluded`) are
        among them (if absent members are faulty: docs/validation.md) and take no part in the validation, so
        at most f - k of the others are faulty. The first N - (2t_v + 1 + f) excluded members are spare
        (the others can still publish 2t_v + 1 + f shares), so f_eff = f - max(0, k - spare), at least 0: the
        timing assumption is relied on only where the round could not go on without it, and only where genesis
        makes the phase deadline long enough for it (`ContractParams.exclude_late`; otherwise only the convicted
        count). The convicted members (`ContractState.convicted`) are proven faulty, so they always count. The
        suspended (`ContractState.suspended`), which owe a blame disclosure and are kept out until they give it,
        count like the excluded, only under `exclude_late`: a disclosure that misses the verdict may be an honest
        one that censoring primaries held out (red team, claims: at N = 4 with a short deadline a censoring primary
        got an honest discloser suspended and f_eff = 0 while it published)."""
        p, s = self.params, self.state
        counted = len(s.convicted) + ((len(s.suspended) + len(s.excluded)) if p.exclude_late else 0)
        spare = max(0, p.n - (2 * p.validation_degree + 1 + p.max_faulty))
        return max(0, p.max_faulty - max(0, counted - spare))

    def ahead_complete(self) -> bool:
        """Whether the phase running ahead holds every expected member's message but the absent ones', so it
        may close."""
        s = self.state
        return self._ahead_open() and set(s.ahead_inputs) >= set(self.awaited(self._ahead_expected()))

    def awaited(self, expected: Iterable[int]) -> tuple[int, ...]:
        """The members of `expected` a phase waits for: all but the absent (the proposer's and replicas' rule)."""
        return tuple(m for m in expected if m not in self.state.absent)

    def _ahead_open(self) -> bool:
        return self.params.secure and self.state.open and self.state.ahead_phase in SA_MESSAGE_OF_PHASE

    def _convict(self, convicted: tuple[int, ...], disputes: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """Record a verdict: its disputes join the ledger's, and the convicted are its convicted plus every member
        now in disputes with more than f distinct members (an honest member only disputes with Byzantine ones,
        at most f). Returns the newly convicted."""
        s = self.state
        s.disputes = tuple(sorted(set(s.disputes) | set(disputes)))
        partners: dict[int, set[int]] = {}
        for i, j in s.disputes:
            partners.setdefault(i, set()).add(j)
            partners.setdefault(j, set()).add(i)
        over = {m for m, others in partners.items() if len(others) > self.params.max_faulty}
        new = tuple(sorted((set(convicted) | over) - set(s.convicted)))
        s.convicted = tuple(sorted(set(s.convicted) | set(new)))
        s.absent = self.eligible(s.absent)
        for m in new:
            self._release(m)
        return new

    def _release(self, member: int) -> None:
        """`member` owes no disclosure any more (it gave it, or was convicted): drop it from its pending record,
        and the record once nobody is awaited."""
        s = self.state
        round_id = s.suspended.pop(member, None)
        if round_id is not None:
            s.pending[round_id].awaiting.discard(member)
            if not s.pending[round_id].awaiting:
                del s.pending[round_id]

    def blame_judgement(self, extra: Mapping[int, tuple[bytes, bytes]] | None = None) -> blame.Verdict:
        """`smpc.blame.verdict` on the open blame phase's committed disclosures (and `extra`, the proposer's
        pending ones), from the ledger alone: what a `verdict` must name."""
        s = self.state
        disclosed = {**s.disclosures, **(extra or {})}
        disclosures = {a: disclosure_of(a, *disclosed[a], s.summed, s.disputes) for a in sorted(disclosed)}
        return blame.verdict(self.blame_ledger(disclosures), {a: d.pairs for a, d in disclosures.items()
                                                              if a in s.summed})

    def blame_ledger(self, disclosures: Mapping[int, blame.Disclosure]) -> blame.Ledger:
        """The `fail`'s base scalars, the committed weights, alpha, and the z_l[b*] that decode from the holders'
        shares (None when only the weight failed)."""
        s = self.state
        ledger = blame.Ledger(blame.decode_pairs(s.bases, s.summed), {m: s.weights[m] for m in s.summed}, None,
                              self.params.sketch_scale_ratio)
        shares = {a: d.shares for a, d in disclosures.items() if d.shares}
        return self._with_entries(ledger, shares, s.holders, s.failure[1] >= 0, self.effective_faulty)

    def _with_entries(self, ledger: blame.Ledger, shares: Mapping[int, Mapping[int, int]], holders: tuple[int, ...],
                      with_sketch: bool, max_faulty: int) -> blame.Ledger:
        if not with_sketch:
            return ledger
        entries = blame.decode_sketch_entries(shares, {m: m + 1 for m in holders}, ledger.bases,
                                              self.params.validation_degree, max_faulty)
        return dataclasses.replace(ledger, sketch_entries=entries)

    def pending_record(self, disclosures: Mapping[int, blame.Disclosure], judged: blame.Verdict) -> PendingBlame:
        """What judging the verdict's silent and undecided members later needs (`ContractState.pending`): the
        silent members of S owe their disclosure, and while a member is undecided, every holder that did not
        disclose owes its shares."""
        s = self.state
        owing = set(judged.absent) | ({h for h in s.holders if h not in disclosures} if judged.undecided else set())
        return PendingBlame(s.summed, s.holders, s.disputes, s.failure[1] >= 0, self.blame_ledger(disclosures),
                            self.effective_faulty, {a: dict(d.shares) for a, d in disclosures.items() if d.shares},
                            {a: dict(d.pairs) for a, d in disclosures.items()
                             if a in s.summed and a not in judged.convicted + judged.undecided},
                            {a: dict(disclosures[a].pairs) for a in judged.undecided}, owing)

    def settle_late(self, record: PendingBlame, author: int, disclosure: blame.Disclosure) -> blame.Verdict:
        """A late `blame` of `author` joins `record`: its shares may decode undecided members' z_l[b*], and it (if
        in S) and every undecided member whose entry now decodes is judged (`smpc.blame.judge_late`). Returns the
        convicted and disputes; mutates the record."""
        if disclosure.shares:
            record.shares[author] = dict(disclosure.shares)
        if author in record.summed:
            record.undecided[author] = dict(disclosure.pairs)
        record.ledger = self._with_entries(record.ledger, record.shares, record.holders, record.with_sketch,
                                           record.max_faulty)
        convicted: list[int] = []
        disputes: set[tuple[int, int]] = set()
        for member, pairs in sorted(record.undecided.items()):
            judged = blame.judge_late(member, record.ledger, pairs, record.cleared)
            if judged.undecided:
                continue
            del record.undecided[member]
            convicted += judged.convicted
            disputes |= set(judged.disputes)
            if not judged.convicted:
                record.cleared[member] = pairs
        return blame.Verdict(tuple(convicted), tuple(sorted(disputes)), ())

    def _ahead_expected(self) -> tuple[int, ...]:
        s = self.state
        members = tuple(range(self.params.n)) if s.ahead_phase == "keys" else s.ahead_u1
        return self.takes_part(members, s.round + 1)

    def takes_part(self, members: Iterable[int], round_id: int) -> tuple[int, ...]:
        """The members round `round_id`'s first phase expects: `eligible`, and not on the bench (absent, with
        `absent_since` after `round_id`). A benched member is still among the absent, so it counts as
        excluded (`ContractState.excluded`), and its `ready` is refused until its bench is over."""
        s = self.state
        return tuple(m for m in self.eligible(members)
                     if m not in s.absent or s.absent_since.get(m, 0) <= round_id)

    @staticmethod
    def bench_rounds(strikes: int) -> int:
        """Rounds a member sits out after going absent with `strikes` strikes (this one included) before its
        `ready` may bring it back: 0 the first time, then 1, 3, 7, 15, ... up to `MAX_BENCH_ROUNDS`. So a
        member that comes back and fails again (withholds its statistics, stays silent in a phase) aborts
        O(log R) of R rounds instead of every other one (docs/validation.md, G7), while a member that crashed
        once is back at once."""
        return min((1 << (strikes - 1)) - 1, MAX_BENCH_ROUNDS) if strikes > 0 else 0

    def _forgive(self, included: Iterable[int]) -> None:
        """A round committed with `included`: each of them with strikes gets one forgiven every
        `FORGIVE_AFTER` such rounds."""
        s = self.state
        for m in included:
            if m not in s.strikes:
                continue
            s.kept[m] = s.kept.get(m, 0) + 1
            if s.kept[m] >= FORGIVE_AFTER:
                s.kept[m] = 0
                s.strikes[m] -= 1
                if not s.strikes[m]:
                    del s.strikes[m], s.kept[m]

    def eligible(self, members: Iterable[int]) -> tuple[int, ...]:
        """`members` but the convicted and the suspended: a round's participants are every member, but its first
        phase expects (and accepts) nothing from a convicted or suspended one, so it is in no later set (U1, ...,
        S) of any round."""
        return tuple(m for m in members if m not in self.state.convicted and m not in self.state.suspended)

    def _ready_valid(self, tx: Tx) -> bool:
        """From an absent member, for a round after the one it went missing in, up to the next round: a member
        that lags a round or two behind still comes back, and a `ready` from before it went missing cannot be
        replayed."""
        s = self.state
        return tx.author in s.absent and s.absent_since.get(tx.author, 0) <= tx.round <= s.round + 1

    def late_disclosure(self, tx: Tx) -> bool:
        """Whether `tx` is a suspended member's `blame` for the round it owes one: valid in any later block, like a
        `ready` (`Transitions._judge_late`)."""
        return tx.kind == "blame" and self.state.suspended.get(tx.author, -1) == tx.round

    @property
    def ready_round(self) -> int:
        """The round id a `ready` names: the open round, or the next one between rounds."""
        return self.state.round if self.state.open else self.state.round + 1

    def _mark_absent(self, missing: tuple[int, ...]) -> None:
        """Absent until back (`ready`), and a member newly absent takes a strike and, where genesis lets the
        absent count as faulty (`ContractParams.exclude_late`: a phase deadline longer than censoring primaries
        can hold a transaction out, so that they cannot make an honest member absent, and a benched member
        does not veto the validated rounds it misses), its bench (`bench_rounds`); the convicted are out for
        good and counted as such, never as absent."""
        s = self.state
        missing = self.eligible(missing)
        for m in missing:
            if m in s.absent:
                continue
            s.strikes[m] = s.strikes.get(m, 0) + 1
            s.kept[m] = 0
            s.absent_since[m] = s.round + 1 + (self.bench_rounds(s.strikes[m]) if self.params.exclude_late else 0)
        s.absent = tuple(sorted(set(s.absent) | set(missing)))

    def _fix_excluded(self, u3: tuple[int, ...]) -> None:
        """Validation starts (U3 is fixed): the round's participants outside U3 join the excluded, and the set is
        fixed for the rest of the round. Each was absent when a phase closed without it (no phase waits for
        the absent; a phase running ahead closes only with every member not absent) or missed the phase's
        deadline, which the replicas checked on their own clocks before voting for the close."""
        s = self.state
        s.excluded = tuple(sorted(set(s.excluded) | set(self.eligible(set(s.participants) - set(u3)))))

    def _missing_reveals(self) -> tuple[int, ...]:
        """The members of U1 an unmask (excise) phase expected a reveal from, without one committed: the unconvicted
        holders of U2's shares, but not the excluded (a member the round kept out, or back mid-round, is not named
        again). Each had the phase's deadline to reveal, as a member has in any phase for its input."""
        s = self.state
        revealed = s.excise_reveals if s.phase == "excise" else s.reveals
        return tuple(a for a in s.u1 if a not in revealed and a not in s.convicted and a not in s.excluded)

    def _missing_inputs(self) -> tuple[int, ...]:
        """Whom an abort for too few inputs waited for in vain: the round's participants without an input in
        the phase it aborted in (also those left out earlier, e.g. U3 members without a seed reveal when the
        sketch phase aborts), but not the excluded, whom the phase did not count on (a member back mid-round
        is not marked absent again for a round it was kept out of). Only inputs a member produces on its own
        name it. In the validate phase (`_missing_in_validation`) a holder's statistics wait for every
        dealer's shares, so a holder is named only if it never said it lacked any. In the unmask (excise) phase,
        whose abort past its deadline means fewer than t + 1 members revealed (with t + 1 committed reveals, each
        opening its commitment, every replica's unmasking has a result or a failure), the members of U1 expected
        to reveal without a committed reveal (`_missing_reveals`). None for an abort with enough inputs
        (statistics every holder published but nobody can decide)."""
        s = self.state
        if s.phase in ("unmask", "excise"):
            return self._missing_reveals()
        if len(s.inputs) >= self.min_inputs(s.phase):
            return ()
        if s.phase == "validate":
            return self._missing_in_validation()
        return tuple(a for a in s.participants if a not in s.inputs and a not in s.excluded)

    def _missing_in_validation(self) -> tuple[int, ...]:
        """The validate phase aborts with too few statistics: it names every dealer with a complaint it did not
        answer (the complaint came within its window, `WindowCheck`, so it had time; red team v6) or answered
        with a bundle its holder proved bad (`disclose`), and every holder without statistics except those
        waiting for such a dealer (red team l4): a holder that lacked nothing, or whose answers were good, had
        everything it needed to publish. An honest holder is never named by a dealer's choice: it complains
        about every missing or bad bundle within the window and discloses every bad answer."""
        s = self.state
        faulty_dealers = {dealer for (_, dealer), state in s.complaints.items() if state != "answered"}
        excused = {holder for (holder, _), state in s.complaints.items() if state != "answered"}
        silent_holders = {h for h in s.expected if h not in s.inputs and h not in excused}
        return tuple(sorted(faulty_dealers | silent_holders))


def disclosure_of(author: int, pairs: bytes, shares: bytes, summed: tuple[int, ...],
                  disputed: tuple[tuple[int, int], ...]) -> blame.Disclosure:
    """A `blame`'s fields as a `smpc.blame.Disclosure` (member indices); raises MalformedMessage on sizes other
    than S needs."""
    others = blame.paired_with(author, summed, disputed)
    return blame.Disclosure(blame.decode_pairs(pairs, others), blame.decode_shares(shares, summed if shares else ()))
