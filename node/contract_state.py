"""The round contract's parameters, phase table and state (module doc of `node.contract`).

Owns `ContractParams` (from genesis), `PHASES` (each mode's phases and the transaction kinds that feed and
close them) and `ContractState` (what the committed blocks have established). Plain data; may call the
secure-aggregation message types and round configuration of `smpc` and the events of `node.contract_events`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from node.contract_events import RoundOutcome
from smpc import blame
from smpc import messages as sam
from smpc.secagg import RoundConfig

PHASES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "plain": (("collect", "update", "result"),),
    "secure": (("keys", "sa", "close"), ("shares", "sa", "close"), ("inputs", "input", "close"),
               ("unmask", "", "result"), ("blame", "blame", "verdict"), ("excise", "", "result")),
    "validated": (("keys", "sa", "close"), ("shares", "sa", "close"), ("inputs", "input", "close"),
                  ("seed", "reveal", "close"), ("sketch", "dealt", "close"), ("validate", "stats", "accept"),
                  ("unmask", "", "result"), ("blame", "blame", "verdict"), ("excise", "", "result")),
}
"""mode -> its phases in order, each (phase, the input tx kind it accepts, the tx kind that closes it). A secure
round's unmask phase ends the round with its `result`, or, when the unmasked sum fails the weight check or (validated)
the linear identity, goes on to `blame` with a `fail` (`Rules._validate_failure`); the blame phase ends the round
with its `verdict`, except a verdict convicting members L of S: it opens the `excise` phase
(no phase closes into it), which ends the round with a `result` over S \\ L or an `abort` (docs/validation.md,
"Excising convicted survivors")."""

PROPOSER_DUTIES = ("open", "close", "accept", "result", "abort", "fail", "verdict")
"""Transactions only a block's proposer may author (in that block): they end phases and rounds. None of them
says that its author takes part again: an absent member that is primary stays absent however many it proposes."""
SA_MESSAGE_OF_PHASE = {"keys": sam.AdvertiseKeys, "shares": sam.ShareKeys}
"""The `sa` message each key phase takes (running ahead or not); the unmask phase's `sa` is a reveal
(`Rules.reveal_refusal`)."""


@dataclass(slots=True)
class PendingBlame:
    """A blame phase whose verdict committed with members of S that had not disclosed (suspended): all a late
    `blame` of theirs is judged on (`smpc.blame.judge_late`), from the ledger as it was in that phase."""

    summed: tuple[int, ...]
    holders: tuple[int, ...]
    disputed: tuple[tuple[int, int], ...]
    """The ledger's disputed pairs in that round: whom each member shared a mask with."""
    with_sketch: bool
    ledger: blame.Ledger
    """Its z_l[b*] are those decoded so far (`smpc.blame.decode_sketch_entries`)."""
    max_faulty: int
    """f_eff in that round: how many disclosed shares may be wrong."""
    shares: dict[int, dict[int, int]]
    """The disclosed shares of z_l[b*], holder -> owner -> share, grown by each late holder."""
    cleared: dict[int, dict[int, blame.PairScalars]]
    """The pair scalars of the members of S that passed their own check, grown by each one judged later."""
    undecided: dict[int, dict[int, blame.PairScalars]]
    """The pair scalars of the members of S whose own check waits for their z_l[b*] to decode."""
    awaiting: set[int]
    """The members still suspended for this round (silent members of S; while a member is undecided, silent
    holders too); the record is dropped once none is (what is then still undecided never decodes: more wrong
    shares than f_eff)."""

    def copy(self) -> PendingBlame:
        return PendingBlame(self.summed, self.holders, self.disputed, self.with_sketch, self.ledger, self.max_faulty,
                            {h: dict(s) for h, s in self.shares.items()},
                            {m: dict(p) for m, p in self.cleared.items()},
                            {m: dict(p) for m, p in self.undecided.items()}, set(self.awaiting))


@dataclass(frozen=True, slots=True)
class ContractParams:
    chain_id: bytes
    n: int
    rounds: int
    initial_model_hash: bytes
    min_updates: int
    secure: bool = False
    degree: int = 0
    vector_length: int = 1
    validate: bool = False
    validation_degree: int = 1
    faulty: int | None = None
    """f, the Byzantine members tolerated (genesis `f`); None: (n - 1) // 3."""
    sketch_width: int = 0
    """k, the count-sketch width (validated mode): the exact size of the sketch shares a disclosed answer must
    hold (`smpc.validation_messages.answer_fault`)."""
    exclude_late: bool = False
    """Whether a member absent or late may be counted among the f faulty, lowering f_eff (docs/validation.md,
    G7): only if the phase deadline outlasts the censoring primaries that could have held its transaction
    out (`node.settings.censorship_bound_s`). Otherwise f_eff = f and no timing assumption is made."""
    sketch_scale_ratio: float = 0.0
    """alpha = sketch scale / quantization scale (validated mode): how a blame verdict compares a member's unmasked
    sketch entry with its z_l[b*] (`smpc.blame.own_check_passes`), from the ledger alone."""
    clip_bound_micro: int = 0
    """The first round's per-round bound B in millionths (the clip C when genesis sets `clip_factor`), 0 for no
    per-round bound (`ml.robust.next_clip_bound`). Later rounds' B comes from the `accept` of the last
    validated round that committed."""

    def __post_init__(self) -> None:
        assert not self.validate or self.sketch_width > 0, "a validated contract needs the sketch width"

    @property
    def max_faulty(self) -> int:
        return (self.n - 1) // 3 if self.faulty is None else self.faulty

    @property
    def mode(self) -> str:
        return "plain" if not self.secure else "validated" if self.validate else "secure"

    def phase_info(self, phase: str) -> tuple[str, str, str]:
        """(input kind, closing kind, next phase) of `phase` in this mode; next is "" after the last."""
        phases = PHASES[self.mode]
        names = [p[0] for p in phases]
        i = names.index(phase)
        return phases[i][1], phases[i][2], names[i + 1] if i + 1 < len(names) else ""

    def round_config(self, round_id: int, participants: Sequence[int]) -> RoundConfig:
        """The secure-aggregation configuration of a round (participant ids are member index + 1)."""
        return RoundConfig(self.chain_id, round_id, tuple(i + 1 for i in participants), self.degree,
                           self.vector_length)



@dataclass
class ContractState:
    round: int = 0
    open: bool = False
    phase: str = ""
    model_hash: bytes = b""
    participants: tuple[int, ...] = ()
    inputs: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    """This phase's inputs: author -> (hash or encoded message, n_samples)."""
    expected: tuple[int, ...] = ()
    """Who may submit in this phase: the participants, then U1, then U2; the survivors U3 in unmask."""
    u1: tuple[int, ...] = ()
    adverts: dict[int, bytes] = field(default_factory=dict)
    """The open round's committed AdvertiseKeys of U1, by author: what a reconstructed secret must match."""
    bundles: dict[int, bytes] = field(default_factory=dict)
    """The open round's committed ShareKeys of U2, by author: the per-share commitments a reveal must open."""
    reveals: dict[int, bytes] = field(default_factory=dict)
    """The unmask phase's committed reveals (UnmaskShares) of U1, by author, one each: what unmasking is decided
    on (`Membership.unmask_decision`)."""
    digests: dict[int, bytes] = field(default_factory=dict)
    weights: dict[int, int] = field(default_factory=dict)
    """The committed weight of each member whose masked input is in the round (the `input` tx's second field)."""
    seed_commitments: dict[int, bytes] = field(default_factory=dict)
    """Each member's commitment to its sketch-seed reveal (the `input` tx's third field)."""
    rejected: tuple[int, ...] = ()
    rejections: dict[int, int] = field(default_factory=dict)
    """How many rounds each member's update was rejected by validation (the ledger's flag)."""
    outcomes: list[RoundOutcome] = field(default_factory=list)
    height: int = 0
    ahead_phase: str = ""
    """Round `round + 1`'s key phase running ahead: "keys", "shares", "inputs" once both closed, "" none."""
    ahead_inputs: dict[int, bytes] = field(default_factory=dict)
    """The committed `sa` messages of the phase running ahead, by author."""
    ahead_u1: tuple[int, ...] = ()
    ahead_u2: tuple[int, ...] = ()
    ahead_adverts: dict[int, bytes] = field(default_factory=dict)
    ahead_bundles: dict[int, bytes] = field(default_factory=dict)
    """The key messages of the phases that closed ahead (`adverts`, `bundles` once round + 1 opens)."""
    absent: tuple[int, ...] = ()
    """Members missing when a round's first phase closed, with no committed transaction since: not waited for."""
    absent_since: dict[int, int] = field(default_factory=dict)
    """Absent member -> the round after the one it went missing in: its `ready` must name that round or a later
    one (a `ready` for the round it went missing in may predate its absence), later by its bench
    (`Membership.bench_rounds`): until then no round expects it."""
    strikes: dict[int, int] = field(default_factory=dict)
    """Member -> how many times it went absent, less one for every `FORGIVE_AFTER` committed rounds that included
    it since (`kept`): what sets its bench when it goes absent again."""
    kept: dict[int, int] = field(default_factory=dict)
    """Member with strikes -> committed rounds that included it since its last strike or forgiveness."""
    excluded: tuple[int, ...] = ()
    """The open round's members the ledger holds as faulty: absent when it opened, and, once its inputs phase closed, every participant outside U3 (absent when a phase closed
    without it, or past a phase deadline). Counted among the f faulty members and kept out of the round's
    validation (no reveal, no sketch, no statistics), so the rest hold fewer faulty ones
    (`Membership.effective_faulty`). Fixed when the inputs phase closes, as validation starts; a member back
    mid-round stays excluded until the round ends."""
    dealt_hashes: dict[int, dict[int, bytes]] = field(default_factory=dict)
    """Each dealer's committed hash of the ciphertext of every holder's sketch shares (its `dealt` tx, in the
    order of the holders R it dealt to): dealer -> holder -> hash. What an `answer` must match."""
    dealt_digests: dict[int, bytes] = field(default_factory=dict)
    """Each dealer's committed hash of its PRZS commitments (its `dealt` tx's first field)."""
    channel_keys: dict[int, bytes] = field(default_factory=dict)
    """Each revealer's channel public keys, one per member (its `reveal` tx): a dealer seals the sketch shares
    for that holder to the holder's key for it (`smpc.validation_messages.seal`)."""
    complaints: dict[tuple[int, int], str] = field(default_factory=dict)
    """The validate phase's complaints, (holder, dealer) -> "open", "answered", or "bad" (the holder disclosed
    its channel secret and the answer holds no valid shares): at most one per pair (|V|^2 in all)."""
    answers: dict[tuple[int, int], bytes] = field(default_factory=dict)
    """The committed answers' sealed bundles, (holder, dealer) -> bytes: what a disclosure is judged on."""
    liars: tuple[int, ...] = ()
    """The statistics publishers whose shares the open round's `accept` found off the decided polynomial
    (docs/validation.md G3): each lied, or one of its dealers dealt it shares off a polynomial, which nothing
    proves (red team r9 a1), so they are recorded, not excluded."""
    answered_height: int = 0
    """The height of the block that carried the open round's last committed answer (0: none yet). An abort of the
    validate phase waits a while after it (`Membership.abort_wait`), never rides in that block, and each replica
    times that wait from when it saw the answer committed (`Timings.phase_started`, key "answered")."""
    evals: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    """The committed `eval`s of the rounds still taking them (`EVAL_WINDOW`): round -> author -> (correct, total)."""
    eval_rows: dict[int, int] = field(default_factory=dict)
    """Each member's held-out rows, as its first committed `eval` declared them: its later evals must match."""
    clip_bound_micro: int = 0
    """B of the open round (and of the next, until a validated round commits), in millionths; 0: members clip
    to C alone. Set from `ContractParams.clip_bound_micro` at genesis, then from each committed round's `accept`."""
    holders: tuple[int, ...] = ()
    """R, the open round's holders of sketch shares (the seed phase's close): who discloses in a validated round's
    blame phase (without validation, nobody holds sketch shares and S's members disclose)."""
    summed: tuple[int, ...] = ()
    """In a blame phase: S, the members whose masked inputs were unmasked."""
    failure: tuple[int, int] = (0, -1)
    """In a blame phase: what the `fail` named: (1 if the weight check failed else 0, b* or -1 for none)."""
    disclosures: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    """In a blame phase: each discloser's committed `blame` [pair scalars, sketch shares] (`smpc.blame`)."""
    bases: bytes = b""
    """In a blame phase: the `fail`'s public base scalars of each member of S (`smpc.blame.base_scalars`)."""
    suspended: dict[int, int] = field(default_factory=dict)
    """Member -> the round whose blame phase it owes a disclosure: a member of S that had not disclosed when
    the verdict committed. Like the convicted, no later phase expects or accepts its input, it counts among the
    f faulty, and `ready` does not clear it; only its own `blame` for that round does (`PendingBlame`)."""
    pending: dict[int, PendingBlame] = field(default_factory=dict)
    """Round -> what judging its suspended members' late disclosures needs, while any is still suspended. At most
    one per suspended member (a suspended member is in no later S), so at most N."""
    convicted: tuple[int, ...] = ()
    """Members a blame verdict convicted (their own disclosures contradict their input), or in disputes with more
    than f distinct members: no later phase expects or accepts their input (`Membership.eligible`), and they count
    among the f faulty. Never cleared."""
    disputes: tuple[tuple[int, int], ...] = ()
    """Pairs (i < j) a blame verdict found disagreeing about their pairwise mask (one of the two lied): they
    exchange no pairwise mask in later rounds (`smpc.secagg.RoundConfig.disputed`). Never cleared."""
    excised: tuple[int, ...] = ()
    """In an excise phase: L, the members of S (`summed`) its verdict convicted; the round finishes over S \\ L."""
    excise_reveals: dict[int, bytes] = field(default_factory=dict)
    """In an excise phase: the committed excise reveals (UnmaskShares of L's mask keys), by author, one each."""
    verdict: RoundOutcome | None = None
    """In an excise phase: the outcome its verdict would have had as an abort (missing, convicted, disputes): the
    round's `result` or `abort` keeps them."""
    next_clip_bound_micro: int = 0
    """The bound the last `accept` named for the next round: B once that round's result commits (a result always
    follows its round's accept in a validated round; an aborted round's is overwritten by the retry's accept)."""

    def committed_model(self, round_id: int) -> bytes | None:
        """The model round `round_id` committed, or None (aborted, still open, or not reached)."""
        for outcome in reversed(self.outcomes):
            if outcome.round == round_id:
                return outcome.model_hash if outcome.committed else None
            if outcome.round < round_id:
                return None
        return None

    def survivor_entries(self) -> tuple[tuple[int, bytes, int], ...]:
        """In a secure round's unmask phase, what its `result` aggregates: (author, masked-input digest, 0)
        for each survivor (the `included` of its `AggregateCheck`); in an excise phase, for each member of S \\ L."""
        return tuple((a, self.digests[a], 0) for a in self.summed_members())

    def summed_members(self) -> tuple[int, ...]:
        """The members a secure round's `result` sums: the survivors U3 (S) in the unmask phase, S \\ L in an
        excise phase."""
        if self.phase == "excise":
            return tuple(a for a in self.summed if a not in self.excised)
        return self.expected

    def copy(self) -> ContractState:
        return ContractState(round=self.round, open=self.open, phase=self.phase, model_hash=self.model_hash,
                             participants=self.participants, inputs=dict(self.inputs), expected=self.expected,
                             u1=self.u1, adverts=dict(self.adverts), bundles=dict(self.bundles),
                             reveals=dict(self.reveals), ahead_adverts=dict(self.ahead_adverts),
                             ahead_bundles=dict(self.ahead_bundles), digests=dict(self.digests), weights=dict(self.weights),
                             seed_commitments=dict(self.seed_commitments), rejected=self.rejected,
                             rejections=dict(self.rejections), outcomes=list(self.outcomes), height=self.height,
                             ahead_phase=self.ahead_phase, ahead_inputs=dict(self.ahead_inputs),
                             ahead_u1=self.ahead_u1, ahead_u2=self.ahead_u2, absent=self.absent,
                             absent_since=dict(self.absent_since), strikes=dict(self.strikes), kept=dict(self.kept),
                             evals={r: dict(e) for r, e in self.evals.items()}, eval_rows=dict(self.eval_rows),
                             excluded=self.excluded, dealt_hashes=dict(self.dealt_hashes),
                             complaints=dict(self.complaints), channel_keys=dict(self.channel_keys),
                             dealt_digests=dict(self.dealt_digests),
                             answers=dict(self.answers), answered_height=self.answered_height,
                             liars=self.liars, clip_bound_micro=self.clip_bound_micro,
                             next_clip_bound_micro=self.next_clip_bound_micro, holders=self.holders,
                             summed=self.summed, failure=self.failure, disclosures=dict(self.disclosures),
                             convicted=self.convicted, disputes=self.disputes, bases=self.bases,
                             suspended=dict(self.suspended), excised=self.excised,
                             excise_reveals=dict(self.excise_reveals), verdict=self.verdict,
                             pending={r: rec.copy() for r, rec in self.pending.items()})

