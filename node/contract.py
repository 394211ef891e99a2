"""The round contract: a deterministic function of the committed blocks, like an ABCI application.

Every node applies the same committed blocks in the same order, so every node holds the same contract
state: which round is open, which phase it is in, which members count in each phase, which global model
is current. The contract is pure: it never trains, fetches or hashes model bytes. Where a transaction's
validity depends on heavy work (the new model hash of a round result), `check_block` returns that work as
a `Check` and the shell performs it before voting; a replica votes for a block only if every check
matches its own computation.

Transactions are signed by their author, so a Byzantine primary cannot forge another member's input:

    tx   = codec [body_bytes, ed25519_signature(body_bytes)]
    body = codec [kind, chain_id, author, round, *fields]

Phases of a round, per mode (`PHASES` is the transition table; the mode comes from genesis:
`plain` without secure aggregation, `secure` with it, `validated` with it and validation on shares):

| phase    | modes           | inputs accepted (one per author)            | closed by                  |
|----------|-----------------|----------------------------------------------|----------------------------|
| collect  | plain           | `update` [update_hash, n_samples]            | `result` [included, model] |
| keys     | secure, valid.  | `sa` [AdvertiseKeys] from participants       | `close` ["keys"]   -> U1   |
| shares   | secure, valid.  | `sa` [ShareKeys] from U1                     | `close` ["shares"] -> U2   |
| inputs   | secure, valid.  | `input` [masked_input_digest, weight,        | `close` ["inputs"] -> U3   |
|          |                 | H(seed reveal)] from U2                      |                            |
| seed     | validated       | `reveal` [seed reveal, channel keys] from U3 | `close` ["seed"] -> R      |
| sketch   | validated       | `dealt` [H(PRZS commitments), H(sealed       | `close` ["sketch"] -> V    |
|          |                 | shares) per holder] from R once its sketch   |                            |
|          |                 | shares went to every holder                  |                            |
| validate | validated       | `stats` [shares of norms and distances]      | `accept` [S ⊆ V, L] -> S   |
|          |                 | over V, from holders; `complaint` [dealer],  |                            |
|          |                 | `answer` [holder, sealed], `disclose`        |                            |
|          |                 | [dealer, channel secret] (below)             |                            |
| unmask   | secure, valid.  | `sa` [UnmaskShares] from U1 (below)          | `result` [S or U3, model]; |
|          |                 |                                              | or `fail` [weight failed,  |
|          |                 |                                              | b*, bases] (secure: [1, -1,|
|          |                 |                                              | bases])                    |
| blame    | secure, valid.  | `blame` [pair scalars, shares of z_l[b*]]    | `verdict` [convicted,      |
|          |                 | from R (secure: pair scalars from S) (below) | disputes (2 bytes a pair)]:|
|          |                 |                                              | the round aborts, or       |
|          |                 |                                              | -> excise if it convicts   |
|          |                 |                                              | members L of S             |
| excise   | secure, valid.  | `sa` [UnmaskShares] of L's mask keys from U1 | `result` [S \\ L, model];  |
|          |                 | but the convicted (below)                    | or `abort`                 |

**Unmasking is decided on the ledger** (docs/validation.md, G9). Each member of U1
reveals its shares of the survivors' self seeds and the dropped members' mask keys in an `sa` [UnmaskShares]
transaction: one per member, each share opening the commitment its owner's committed ShareKeys made to it, none it
must not reveal (`Rules.reveal_refusal`, refused with a `RevealRefusal` reason). Nodes unmask from the committed
reveals only, and `Membership.unmask_decision` decides from them alone: once they prove a dealer faulty (its shares
off one degree-t polynomial through its advertised secret), no `result` or `fail` is valid, and an `abort`, valid at
once, convicts it.

`open` [model_hash, participants] starts a round when none is open and fewer than `rounds` rounds have
committed; it must name the current global model.

**The next round's key phases run ahead** (secure modes). While round r is open, blocks may also carry round
r + 1's `sa` AdvertiseKeys from every member, then `close` ["keys"] for r + 1, then its `sa` ShareKeys
from that U1 and `close` ["shares"] for r + 1 (`ContractState.ahead_*`). Neither phase depends on the
model, so they need no block of their own: the primary adds them to the blocks round r commits anyway, and
round r + 1 opens in its inputs phase, its members masking as soon as they have trained. A phase ahead
closes only with every expected member: a close without all of them needs a `DeadlineCheck`, which only an
open round's phase gets. Whatever is incomplete when r + 1 opens carries over as that round's own keys or
shares phase, under the usual rule; each replica's deadline clock for it started when the phase began,
ahead (`Timings.phase_started`), so a member that never sends its shares costs the wait only once. An
`open` naming participants other than every member discards the phases ahead.

**A member that misses a round is not waited for in the next.** A participant missing when a round's first
phase closes (the keys phase of a secure round, the updates of a plain one), or named in the `missing` of a
round that aborted for too few inputs (a silent member in a validated round at N = 3f + 1), becomes *absent*
(`ContractState.absent`). Rounds still open with every member, but no phase, running ahead or not, waits
for an absent member: its close needs no `DeadlineCheck`, so an offline member costs the others one phase
deadline, not one per round. A member is present again as soon as any transaction it signed, other than an
`eval` (which is about a past round) or, as the block's proposer, an `open`, `close`, `abort` or `result` (its
duty as primary: a member named by the abort it proposes stays absent), is committed;
a member that comes back says so with `ready` [] (for a round after the one it went missing in, up to the next
one, so that a `ready` from before cannot be replayed), and the phases after that wait for it again.

**Each member's evaluation goes on the ledger.** After a round's `result` commits, every member evaluates the
new global model on its own held-out rows and submits `eval` [model_hash, correct, total] for that round: one
per member per committed round, naming the model the round committed, for the last `EVAL_WINDOW` round ids
only, and with the held-out rows its first committed eval declared (`node.contract_evals`). An `eval` needs
no open round and no block of its own: it rides in the blocks the rounds commit anyway, and after the last
round the primary proposes blocks for the pending ones. The consortium accuracy of a round is the pooled
sum of its evals (`node.consortium`).

**A member the ledger holds as faulty is left out of a validated round's validation.** The round's excluded
members (`ContractState.excluded`) are those absent when it opens, the publishers L the previous round's `accept`
proved to lie (statistic shares off the decided polynomial, which every replica recomputes before voting; they are
absent from that accept on) and, once its inputs phase closes, every participant outside U3 (absent when a phase
closed without it, or past a deadline). They neither reveal,
deal nor publish, and count among the f faulty members, so the seed, sketch and validate phases need
2t_v + 1 + f_eff inputs, f_eff = f - max(0, k - (N - 2t_v - 1 - f)) (`Membership.effective_faulty`), and
the statistics tolerate f_eff liars (`ValidationCheck.max_faulty`). Sound if the absent and late members
are faulty (docs/validation.md, G7).

**A withholding dealer or holder is named by the validate phase's abort** (docs/validation.md, G8). A holder of V
that lacks a dealer's valid sketch shares files `complaint` [dealer] (a `WindowCheck`: early in the phase); the
dealer answers with `answer` [holder, sealed], the bundle whose hash its `dealt` committed for that holder (also a
`WindowCheck`); a holder whose answer holds no valid shares proves it with `disclose` [dealer, channel secret], the
secret of the key it published for that dealer in its `reveal`, with which every replica opens the answer and finds
the fault (`smpc.validation_messages.answer_fault`). An abort for too few statistics names the dealers with a
complaint unanswered or disproved, and the holders without statistics waiting for no such dealer; it waits past
each step's window, and after answers also past a window for the statistics measured from the last one
(`Membership.abort_wait`), never riding in an answer's block. Bad ones are refused with a `ComplaintRefused` reason.

**A member whose masked input contradicts its sketch or weight is convicted** (docs/validation.md, "Blame after a
failed identity"). When unmasking S fails the weight check or the linear identity, the primary proposes `fail`
[1 if the weight failed else 0, b* or -1, base scalars of each member of S] instead of a `result` (without
validation there is no sketch: only the weight can fail, the `fail` is [1, -1, bases], and the blame phase expects
the members of S alone, disclosing their pair scalars; red team B13) (a
`FailureCheck`: every replica confirms failure and scalars with its own unmasking; an `abort` of the unmask phase
comes with an `UnmaskAbortCheck`: a replica votes for it only with neither a result nor a failure of its own). In
the blame phase each member
of S discloses the scalars its pairwise masks with the other members of S add to the failed checks, and each holder
of R its shares of z_l[b*] (`blame`, `smpc.blame.disclose`); the `verdict` [convicted, disputes] is what the
contract computes from the ledger alone (`Membership.blame_judgement`), and a blame phase is never aborted. The
verdict aborts the round (the model is unchanged; holders outside S that did not disclose become absent, members
of S that did not are suspended, `ContractState.suspended`, until their late `blame`, valid in any later block,
is judged: `LateVerdict`); the convicted, and every member in disputes with more than f distinct members, are
`ContractState.convicted`: rounds still name every member as a participant, but no phase of a later round (nor
of the key phases running ahead) expects or accepts anything from a convicted one (`Membership.eligible`), and they
count among the f faulty (`Membership.effective_faulty`); the disputed pairs (`ContractState.disputes`) exchange
no pairwise mask in later rounds (`smpc.secagg.SecAggParticipant.exclude_pairs`).

**A secure round finishes without the members of S its verdict convicts** (docs/validation.md,
"Excising convicted survivors"; red team B5). Such a verdict, L = its convicted in S, with at least `min_members`
of S left, records the convictions, disputes and suspensions as above but opens the `excise` phase instead of
aborting (`ExciseStarted`): every member of U1 but the convicted submits its shares of L's mask keys as an `sa`
[UnmaskShares] (`Rules.reveal_refusal`, `smpc.secagg.allowed_excise_reveal`, refused with a `RevealRefusal`
reason); `Membership.unmask_decision` decides from the committed reveals of both phases, and the phase ends with
`result` [S \\ L, model] (an `AggregateCheck` naming L and the excise reveals) or `abort` (at once, convicting, when
the excise reveals prove a dealer faulty; otherwise past the deadline with an `UnmaskAbortCheck`); both outcomes
keep the verdict's convicted and disputes. In a validated round the sum over S \\ L must also pass the linear
identity over S \\ L, from the holders' shares of the sum of the sketches of S \\ L, sent off the ledger
(`SecureRound._share_excised_sketch_sum`).

`open`, `close`, `result`, `fail`, `verdict` and `abort` [reason] are authored by the block's proposer. A `close` or
`result` that leaves out expected members, and any `abort`, come with a `DeadlineCheck`: time never enters the contract (applying blocks must be
deterministic), so whether a phase may end early is a judgement each replica makes on its own clock
before voting. A primary that closes phases early gathers no quorum and is replaced by a view change.
A phase cannot close with fewer than `min_members` members: the primary must abort instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.block import Block
from node.contract_evals import EVAL_WINDOW
from node.contract_events import (
    AggregateCheck,
    AnswerCommitted,
    BlameStarted,
    Check,
    ComplaintCommitted,
    DeadlineCheck,
    EvalCommitted,
    Event,
    ExciseStarted,
    FailureCheck,
    LateVerdict,
    PhaseClosed,
    RoundOpened,
    RoundOutcome,
    SecAggCommitted,
    UnmaskAbortCheck,
    ValidationCheck,
    WindowCheck,
)
from node.contract_membership import (
    COMPLAINT_ABORT_DEADLINES,
    STATISTICS_AFTER_ANSWER_DEADLINES,
    VALIDATE_ABORT_DEADLINES,
)
from node.contract_rules import Rules
from node.contract_state import PHASES, SA_MESSAGE_OF_PHASE, ContractParams, ContractState
from node.contract_transitions import Transitions
from node.contract_tx import (
    COMPLAINT_REFUSALS,
    MAX_ANSWER_BYTES,
    MAX_EVAL_ROWS,
    MAX_PARTICIPANTS,
    MAX_STATS_BYTES,
    MAX_TX_BODY_BYTES,
    PARSE_CACHE_BYTES,
    PARSE_CACHE_ENTRIES,
    REVEAL_REFUSALS,
    BoundedMemo,
    ComplaintRefused,
    RevealRefusal,
    Tx,
    TxError,
    Verify,
    clip_bound_value,
    encode_disputes,
    make_tx,
    parse_tx,
    referenced_blobs,
)
from smpc import messages as sam

__all__ = [
    "COMPLAINT_ABORT_DEADLINES",
    "COMPLAINT_REFUSALS",
    "EVAL_WINDOW",
    "MAX_ANSWER_BYTES",
    "MAX_EVAL_ROWS",
    "MAX_PARTICIPANTS",
    "MAX_STATS_BYTES",
    "MAX_TX_BODY_BYTES",
    "PARSE_CACHE_BYTES",
    "PARSE_CACHE_ENTRIES",
    "PHASES",
    "REVEAL_REFUSALS",
    "SA_MESSAGE_OF_PHASE",
    "STATISTICS_AFTER_ANSWER_DEADLINES",
    "VALIDATE_ABORT_DEADLINES",
    "AggregateCheck",
    "AnswerCommitted",
    "BlameStarted",
    "BoundedMemo",
    "Check",
    "ComplaintCommitted",
    "ComplaintRefused",
    "Contract",
    "ContractParams",
    "ContractState",
    "DeadlineCheck",
    "EvalCommitted",
    "Event",
    "ExciseStarted",
    "FailureCheck",
    "LateVerdict",
    "PhaseClosed",
    "RevealRefusal",
    "RoundOpened",
    "RoundOutcome",
    "SecAggCommitted",
    "Tx",
    "TxError",
    "UnmaskAbortCheck",
    "ValidationCheck",
    "Verify",
    "WindowCheck",
    "clip_bound_value",
    "encode_disputes",
    "make_tx",
    "parse_tx",
    "referenced_blobs",
]


class Contract(Rules, Transitions):
    """Holds the contract state and applies committed blocks to it. Deterministic; no I/O."""

    def __init__(self, params: ContractParams, verify: Verify) -> None:
        self.params = params
        self.verify = verify
        self.state = ContractState(model_hash=params.initial_model_hash, clip_bound_micro=params.clip_bound_micro)
        self._parsed: BoundedMemo[bytes, Tx] = BoundedMemo(len)
        """Transactions already parsed and authenticated, by raw bytes (shared with shadows; see `parse`)."""
        self._sa_verified: BoundedMemo[tuple[bytes, int, tuple[int, ...]], sam.Message] = BoundedMemo(
            lambda key: len(key[0]))
        """Secure-aggregation messages already decoded and verified, by (bytes, round, participants)."""

    def parse(self, raw: bytes) -> Tx:
        """`parse_tx`, remembered: a transaction is parsed on arrival, when proposed, checked and applied,
        each time with an Ed25519 verification, and `parse_tx` is a pure function of the bytes."""
        tx = self._parsed.get(raw)
        if tx is None:
            tx = parse_tx(raw, self.params.chain_id, self.params.n, self.verify)
            self._parsed.put(raw, tx)
        return tx

    def check_block(self, block: Block) -> list[Check]:
        """Validate a proposed block against a copy of the state; raise TxError on the first invalid tx.

        Returns the checks the shell must perform before it may vote for the block.
        """
        shadow = self.shadow()
        checks: list[Check] = []
        for raw in block.txs:
            tx = shadow.parse(raw)
            checks.extend(shadow._validate(tx, block.proposer))
            shadow._apply(tx, block.height)
        return checks

    def shadow(self) -> Contract:
        """A copy to try transactions on (a proposal being built, a block being checked)."""
        copy = Contract(self.params, self.verify)
        copy.state = self.state.copy()
        copy._parsed, copy._sa_verified = self._parsed, self._sa_verified
        return copy

    def extend(self, txs: Sequence[Tx], proposer: int) -> None:
        """Validate and apply `txs` in order as if `proposer` proposed them (used on a shadow); TxError stops."""
        for tx in txs:
            self._validate(tx, proposer)
            self._apply(tx, self.state.height + 1)

    def apply_block(self, block: Block) -> list[Event]:
        """Apply a committed block and return what happened, in order.

        Committed blocks were validated by a quorum, which holds more honest validators than faulty ones;
        an invalid transaction inside one is still skipped deterministically rather than trusted, so every
        node's state stays identical.
        """
        events: list[Event] = []
        for raw in block.txs:
            try:
                tx = self.parse(raw)
                self._validate(tx, block.proposer)
            except TxError:
                continue
            events.extend(self._apply(tx, block.height))
        self.state.height = block.height
        return events

    def committed_sa_messages(self, round_id: int) -> list[tuple[int, bytes]]:
        """The `sa` messages already committed in `round_id`'s current key phase (running ahead or not), by
        author: what a node that prepares for the round only now must be told, as if it had seen them
        committed (a node that restarted, or caught up, after some members' keys went ahead)."""
        s = self.state
        if round_id == s.round + 1 and self._ahead_open():
            return sorted(s.ahead_inputs.items())
        if round_id == s.round and s.open and s.phase in SA_MESSAGE_OF_PHASE:
            return sorted((a, m) for a, (m, _) in s.inputs.items())  # type: ignore[misc]
        return []

    def admissible(self, txs: Sequence[Tx]) -> tuple[list[Tx], list[tuple[Tx, TxError]]]:
        """Split candidate transactions into those a block may carry, in order, and the invalid ones.

        The primary checks its proposal exactly as the backups will (`check_block`), so that one bad
        transaction in its mempool costs that transaction, not a rejected block and a view change.
        """
        shadow = self.shadow()
        valid: list[Tx] = []
        invalid: list[tuple[Tx, TxError]] = []
        for tx in txs:
            try:
                shadow._validate(tx, proposer=-1)
            except TxError as exc:
                invalid.append((tx, exc))
                continue
            shadow._apply(tx, self.state.height + 1)
            valid.append(tx)
        return valid, invalid
