"""What the round contract hands the shell: checks to perform before voting, events after a commit.

Owns the result and outcome records of a round (`AggregateCheck`, `ValidationCheck`, `DeadlineCheck`;
`RoundOpened`, `SecAggCommitted`, `PhaseClosed`, `RoundOutcome`, `EvalCommitted`). Plain data; calls nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AggregateCheck:
    """Before voting: the round's aggregate applied to the global model must hash to `new_model_hash`.

    Plain mode: `included` lists (author, update_hash, n_samples). Secure mode: the survivors U3 with
    their masked-input digests and n_samples 0; the shell unmasks the sum with its secure-aggregation core.
    """

    round: int
    global_model_hash: bytes
    included: tuple[tuple[int, bytes, int], ...]
    new_model_hash: bytes
    reveals: tuple[bytes, ...] | None = None
    """Secure mode: the unmask phase's reveals (`sa` [UnmaskShares], by author) committed as of this transaction,
    earlier in its block included: what this replica unmasks from (the contract verified each on admission), so a
    block may carry the reveals and the result together. None: the reveals this node's round saw committed."""
    excised: tuple[int, ...] = ()
    """An excise phase's result: the convicted members L of S (indices) the sum leaves out, `included` being S \\ L
    (docs/validation.md, "Excising convicted survivors"); empty otherwise."""
    excise_reveals: tuple[bytes, ...] = ()
    """An excise phase's result: its committed excise reveals (`sa` [UnmaskShares] of L's mask keys), by author,
    as of this transaction; unmasked from together with `reveals`."""


@dataclass(frozen=True, slots=True)
class ValidationCheck:
    """Before voting: the robust rule on the statistics reconstructed from `published` must accept `accepted`.

    `accepted` None checks an `abort` of the validate phase once every holder published: the statistics
    must be beyond reconstruction (more wrong shares than the code corrects) or accept too few members.
    Every replica can see that from the committed shares at once, so such an abort needs no deadline,
    and the published shares stay on the ledger as the evidence.
    """

    round: int
    candidates: tuple[int, ...]
    published: tuple[tuple[int, bytes], ...]
    accepted: tuple[int, ...] | None
    max_faulty: int
    """f_eff: how many publishers may lie (the contract's `effective_faulty` for the round, fixed by the ledger;
    f less the members it holds as faulty and kept out of the validation)."""
    weights: tuple[tuple[int, int], ...] = ()
    """Each candidate's committed weight (its quantized weight coordinate, from its `input` tx)."""
    history: tuple[tuple[int, int], ...] = ()
    """Each candidate's rejections in earlier rounds (the ledger's count): the rule's tie-breaker."""
    liars: tuple[int, ...] = ()
    """With `accepted`: the publishers the `accept` names as inconsistent, which must be exactly those whose
    shares are off the decided polynomial (`ValidationOutcome.agrees`)."""
    clip_bound_micro: int = 0
    """The round's bound B in millionths (0: none): an update longer than B is rejected outright."""
    next_clip_bound_micro: int = 0
    """The next round's B the `accept` names (`ml.robust.next_clip_bound` of this decision, in millionths)."""
    proven_faulty: int = 0
    """Members the ledger convicted (docs/validation.md, the blame phase): Byzantine by proof, so at most f less
    this many remain among the candidates, and the rule's suspicion is left that many places."""


@dataclass(frozen=True, slots=True)
class DeadlineCheck:
    """Before voting: `phase` of `round` must have been open on this node's clock past `deadlines` times its
    deadline (more than one in a validate phase: `Membership.abort_wait`), and the round's last answer committed
    past `after_answer` times it (0: no answer to wait after)."""

    round: int
    phase: str
    deadlines: int = 1
    after_answer: float = 0.0


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """Before voting for a `complaint` or an `answer` (`kind`): the validate phase of `round` must still be
    within that kind's window on this node's clock (`node.settings.WINDOWS`, in phase deadlines): a dealer then
    has a phase deadline to answer, and a holder one to disclose a bad answer, before an abort may name them."""

    round: int
    kind: str


@dataclass(frozen=True, slots=True)
class FailureCheck:
    """Before voting for a `fail` closing the unmask phase: unmasking S must fail here too, exactly so: the weight
    check iff `weight`, and b*, the failing sketch coordinate of largest |deviation| (`smpc.blame.locate_failure`),
    equal to `coordinate` (None: the sketch identity held), and the base scalars of each member of S
    (`smpc.blame.base_scalars`, encoded like pair scalars in increasing member order) equal to `bases`: the verdict
    is then computed from the ledger alone. A replica that has not unmasked yet waits, as for a `result`."""

    round: int
    global_model_hash: bytes
    included: tuple[tuple[int, bytes, int], ...]
    weight: bool
    coordinate: int | None
    bases: bytes
    reveals: tuple[bytes, ...] | None = None
    """The reveals to unmask from, as `AggregateCheck.reveals`."""


@dataclass(frozen=True, slots=True)
class UnmaskAbortCheck:
    """Before voting for an `abort` of a secure round's unmask phase (past its deadline): this replica's own
    unmasking of S (`included`, as a `result` would aggregate it) must have neither a result to commit nor a
    failure a `fail` would name, so a primary cannot turn a due `result` or `fail` into an unnamed abort."""

    round: int
    global_model_hash: bytes
    included: tuple[tuple[int, bytes, int], ...]
    reveals: tuple[bytes, ...] | None = None
    """The reveals to unmask from, as `AggregateCheck.reveals`."""
    excised: tuple[int, ...] = ()
    """An excise phase's abort: as `AggregateCheck.excised` (its excision must have no result here either)."""
    excise_reveals: tuple[bytes, ...] = ()
    """As `AggregateCheck.excise_reveals`."""


@dataclass(frozen=True, slots=True)
class BlameStarted:
    """A `fail` closed the unmask phase: S's members disclose their pair scalars, R's holders their shares of
    z_l[b*] (`smpc.blame.disclose`)."""

    round: int
    survivors: tuple[int, ...]
    holders: tuple[int, ...]
    weight: bool
    coordinate: int | None
    height: int


@dataclass(frozen=True, slots=True)
class ExciseStarted:
    """A blame verdict convicted members L of S: the round is not aborted but finished over S \\ L (docs/validation.md,
    "Excising convicted survivors"). Every member of U1 but the convicted reveals its shares of L's mask keys
    (`smpc.secagg.SecAggParticipant.excise_reveal`); with validation every holder of R but L also sends its share
    of the sum of the sketches of S \\ L (`SecureRound._share_excised_sketch_sum`)."""

    round: int
    survivors: tuple[int, ...]
    """S, the members whose masked inputs were unmasked."""
    excised: tuple[int, ...]
    """L, the members of S the verdict convicted."""
    height: int


Check = AggregateCheck | ValidationCheck | DeadlineCheck | WindowCheck | FailureCheck | UnmaskAbortCheck


@dataclass(frozen=True, slots=True)
class RoundOpened:
    round: int
    participants: tuple[int, ...]
    model_hash: bytes
    height: int
    disputes: tuple[tuple[int, int], ...] = ()
    """The ledger's disputed pairs at the open: no pairwise mask between them in this round, whenever a node
    handles the event (red team B12)."""


@dataclass(frozen=True, slots=True)
class SecAggCommitted:
    """A secure-aggregation message (AdvertiseKeys or ShareKeys) became part of the ledger."""

    round: int
    author: int
    message: bytes


@dataclass(frozen=True, slots=True)
class ComplaintCommitted:
    """A holder's complaint that it lacks `dealer`'s sketch shares is on the ledger: the dealer must answer."""

    round: int
    holder: int
    dealer: int


@dataclass(frozen=True, slots=True)
class AnswerCommitted:
    """A dealer's answer to a complaint is on the ledger: `ciphertext` is the one its `dealt` committed for
    `holder`, the holder's sketch shares encrypted to it alone."""

    round: int
    dealer: int
    holder: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class PhaseClosed:
    round: int
    phase: str
    members: tuple[int, ...]
    digests: tuple[tuple[int, bytes], ...]
    height: int
    weights: tuple[tuple[int, int], ...] = ()
    """With `digests`: each member's committed weight (quantized), which its masked weight coordinate must equal."""
    payloads: tuple[tuple[int, bytes], ...] = ()
    """The closed phase's committed inputs that later steps need, by member: the seed phase's reveals, the
    sketch phase's hashes of each dealer's PRZS commitments (`dealt` tx)."""
    channel_keys: tuple[tuple[int, bytes], ...] = ()
    """The seed phase's: each revealer's channel public keys, 32 bytes per member (`reveal` tx)."""


@dataclass(frozen=True, slots=True)
class LateVerdict:
    """A suspended member disclosed for the blame phase of `round` it owed (`smpc.blame.judge_late`): it is
    released, or convicted (`convicted`), with the disputes its pairs show."""

    round: int
    member: int
    convicted: tuple[int, ...]
    disputes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    round: int
    committed: bool
    included: tuple[int, ...]
    model_hash: bytes
    height: int
    rejected: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    """An aborted round's participants without an input in the phase that had too few (a seed reveal, a
    `dealt`, a key message...): who the round waited for in vain, on the ledger; they become absent
    (`ContractState.absent`). For an abort in the validate phase: the dealers with a complaint they did not
    answer and the holders without statistics that filed no complaint (a holder that complained waited for a
    dealer, which chose that, unless the dealer's answer came and the holder could not prove it bad,
    `Membership._missing_inputs`). For an abort of the unmask (excise) phase past its deadline: the members of
    U1 without a committed reveal (none when the committed reveals prove a dealer faulty, an abort at once).
    Empty for an abort with enough inputs (statistics every holder published that nobody can decide)."""
    liars: tuple[int, ...] = ()
    """The statistics publishers whose shares the round's `accept` found off the decided polynomial (G3): they
    lied, or a dealer dealt them inconsistent shares; evidence on the ledger, not an exclusion."""
    convicted: tuple[int, ...] = ()
    """A blame verdict's convicted members (and those it put in disputes with more than f members): excluded from
    every later round."""
    disputes: tuple[tuple[int, int], ...] = ()
    """A blame verdict's disputed pairs: no pairwise mask between them in later rounds."""


@dataclass(frozen=True, slots=True)
class EvalCommitted:
    """A member's evaluation of a committed round's model on its own held-out rows became part of the ledger."""

    round: int
    author: int
    correct: int
    total: int
    height: int


Event = (RoundOpened | SecAggCommitted | PhaseClosed | RoundOutcome | EvalCommitted | ComplaintCommitted
         | AnswerCommitted | BlameStarted | ExciseStarted | LateVerdict)
