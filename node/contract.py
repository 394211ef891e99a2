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
| seed     | validated       | `reveal` [seed reveal] from U3               | `close` ["seed"] -> R      |
| sketch   | validated       | `dealt` [H(PRZS commitments)] from R once    | `close` ["sketch"] -> V    |
|          |                 | its sketch shares went to every holder       |                            |
| validate | validated       | `stats` [shares of norms and distances]      | `accept` [S ⊆ V] -> S      |
|          |                 | over V, from holders                         |                            |
| unmask   | secure, valid.  | (reveals travel by gossip, not the ledger)   | `result` [S or U3, model]  |

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
deadline, not one per round. A member is present again as soon as any transaction it signed is committed;
a member that comes back says so with `ready` [] (for a round after the one it went missing in, up to the next
one, so that a `ready` from before cannot be replayed), and the phases after that wait for it again.

`open`, `close`, `result` and `abort` [reason] are authored by the block's proposer. A `close` or `result`
that leaves out expected members, and any
`abort`, come with a `DeadlineCheck`: time never enters the contract (applying blocks must be
deterministic), so whether a phase may end early is a judgement each replica makes on its own clock
before voting. A primary that closes phases early gathers no quorum and is replaced by a view change.
A phase cannot close with fewer than `min_members` members: the primary must abort instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from consensus import codec
from consensus.block import HASH_BYTES, Block
from smpc import messages as sam
from smpc.errors import ProtocolViolation
from smpc.field import vector_from_bytes as field_vector_from_bytes
from smpc.secagg import RoundConfig, check_bundle_recipients, verify_message
from smpc.validation import seed_commitment

MAX_TX_BODY_BYTES = 64 * 1024
PARSE_CACHE_ENTRIES = 4096
"""Parsed transactions (and verified secure-aggregation messages) a contract remembers; a round has a few
per member, so this spans many rounds, and it bounds what a flood of distinct valid transactions can pin."""
MAX_PARTICIPANTS = 256

Verify = Callable[[int, bytes, bytes], bool]

PHASES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "plain": (("collect", "update", "result"),),
    "secure": (("keys", "sa", "close"), ("shares", "sa", "close"), ("inputs", "input", "close"),
               ("unmask", "", "result")),
    "validated": (("keys", "sa", "close"), ("shares", "sa", "close"), ("inputs", "input", "close"),
                  ("seed", "reveal", "close"), ("sketch", "dealt", "close"), ("validate", "stats", "accept"),
                  ("unmask", "", "result")),
}
"""mode -> its phases in order, each (phase, the input tx kind it accepts, the tx kind that closes it)."""

SA_MESSAGE_OF_PHASE = {"keys": sam.AdvertiseKeys, "shares": sam.ShareKeys}
MAX_STATS_BYTES = 8 * (MAX_PARTICIPANTS + MAX_PARTICIPANTS * (MAX_PARTICIPANTS - 1) // 2)


class TxError(ValueError):
    """A transaction is malformed, badly signed or not valid in the current contract state."""


@dataclass(frozen=True, slots=True)
class Tx:
    kind: str
    author: int
    round: int
    fields: tuple[object, ...]
    raw: bytes = field(compare=False, repr=False)


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
    weights: tuple[tuple[int, int], ...] = ()
    """Each candidate's committed weight (its quantized weight coordinate, from its `input` tx)."""
    history: tuple[tuple[int, int], ...] = ()
    """Each candidate's rejections in earlier rounds (the ledger's count): the rule's tie-breaker."""


@dataclass(frozen=True, slots=True)
class DeadlineCheck:
    """Before voting: `phase` of `round` must have been open on this node's clock past its deadline."""

    round: int
    phase: str


Check = AggregateCheck | ValidationCheck | DeadlineCheck


@dataclass(frozen=True, slots=True)
class RoundOpened:
    round: int
    participants: tuple[int, ...]
    model_hash: bytes
    height: int


@dataclass(frozen=True, slots=True)
class SecAggCommitted:
    """A secure-aggregation message (AdvertiseKeys or ShareKeys) became part of the ledger."""

    round: int
    author: int
    message: bytes


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
    `dealt`, statistic shares...): who the round waited for in vain, on the ledger; they become absent
    (`ContractState.absent`). Empty for an abort in the unmask phase, whose reveals travel by gossip, and
    for an abort with enough inputs (statistics every holder published that nobody can decide)."""


Event = RoundOpened | SecAggCommitted | PhaseClosed | RoundOutcome


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
    absent: tuple[int, ...] = ()
    """Members missing when a round's first phase closed, with no committed transaction since: not waited for."""
    absent_since: dict[int, int] = field(default_factory=dict)
    """Absent member -> the round after the one it went missing in: its `ready` must name that round or a later
    one (a `ready` for the round it went missing in may predate its absence)."""

    def survivor_entries(self) -> tuple[tuple[int, bytes, int], ...]:
        """In a secure round's unmask phase, what its `result` aggregates: (author, masked-input digest, 0)
        for each survivor (the `included` of its `AggregateCheck`)."""
        return tuple((a, self.digests[a], 0) for a in self.expected)

    def copy(self) -> ContractState:
        return ContractState(round=self.round, open=self.open, phase=self.phase, model_hash=self.model_hash,
                             participants=self.participants, inputs=dict(self.inputs), expected=self.expected,
                             u1=self.u1, digests=dict(self.digests), weights=dict(self.weights),
                             seed_commitments=dict(self.seed_commitments), rejected=self.rejected,
                             rejections=dict(self.rejections), outcomes=list(self.outcomes), height=self.height,
                             ahead_phase=self.ahead_phase, ahead_inputs=dict(self.ahead_inputs),
                             ahead_u1=self.ahead_u1, ahead_u2=self.ahead_u2, absent=self.absent,
                             absent_since=dict(self.absent_since))


def make_tx(chain_id: bytes, kind: str, author: int, round_id: int, fields: Sequence[object],
            sign: Callable[[bytes], bytes]) -> bytes:
    body = codec.encode([kind, chain_id, author, round_id, *fields])
    return codec.encode([body, sign(body)])


_FIELD_COUNTS = {"open": 2, "update": 2, "result": 2, "abort": 1, "sa": 1, "input": 3, "close": 1, "stats": 1,
                 "accept": 1, "dealt": 1, "reveal": 1, "ready": 0}


def parse_tx(raw: bytes, chain_id: bytes, n: int, verify: Verify) -> Tx:
    """Decode and authenticate a transaction; raise TxError (a peer's fault) on anything wrong."""
    try:
        body, signature = codec.expect_list(codec.decode(raw, max_bytes=MAX_TX_BODY_BYTES + 128), 2, "tx")
        codec.expect_bytes(body, "tx.body", max_len=MAX_TX_BODY_BYTES)
        codec.expect_bytes(signature, "tx.signature", 64)
        fields = codec.decode(body, max_bytes=MAX_TX_BODY_BYTES, max_items=MAX_PARTICIPANTS + 8)
        if not isinstance(fields, list) or len(fields) < 4:
            raise codec.DecodeError("tx body: too few fields")
        kind = codec.expect_str(fields[0], "tx.kind", 16)
        if kind not in _FIELD_COUNTS or len(fields) != 4 + _FIELD_COUNTS[kind]:
            raise codec.DecodeError(f"tx: unknown kind or wrong field count for {kind!r}")
        if codec.expect_bytes(fields[1], "tx.chain_id", HASH_BYTES) != chain_id:
            raise TxError("tx for another chain")
        author = codec.expect_int(fields[2], "tx.author", hi=n - 1)
        round_id = codec.expect_int(fields[3], "tx.round", lo=1, hi=1 << 31)
        parsed = Tx(kind, author, round_id, tuple(_parse_fields(kind, fields[4:], n)), raw)
    except codec.DecodeError as exc:
        raise TxError(f"malformed tx: {exc}") from None
    if not verify(author, body, signature):
        raise TxError(f"bad signature on {kind} tx from member {author}")
    return parsed


def _parse_fields(kind: str, fields: list[object], n: int) -> list[object]:
    if kind == "open":
        return [codec.expect_bytes(fields[0], "open.model_hash", HASH_BYTES),
                _member_list(fields[1], n, "open.participants")]
    if kind == "update":
        return [codec.expect_bytes(fields[0], "update.hash", HASH_BYTES),
                codec.expect_int(fields[1], "update.n_samples", lo=1, hi=1 << 40)]
    if kind == "result":
        return [_member_list(fields[0], n, "result.included"),
                codec.expect_bytes(fields[1], "result.model_hash", HASH_BYTES)]
    if kind == "sa":
        return [codec.expect_bytes(fields[0], "sa.message", max_len=MAX_TX_BODY_BYTES)]
    if kind == "input":
        return [codec.expect_bytes(fields[0], "input.digest", HASH_BYTES),
                codec.expect_int(fields[1], "input.weight", lo=-(1 << 31), hi=(1 << 31) - 1),
                codec.expect_bytes(fields[2], "input.seed_commitment", HASH_BYTES)]
    if kind == "close":
        return [codec.expect_str(fields[0], "close.phase", 16)]
    if kind == "stats":
        return [codec.expect_bytes(fields[0], "stats.shares", max_len=MAX_STATS_BYTES)]
    if kind == "accept":
        return [_member_list(fields[0], n, "accept.accepted")]
    if kind == "ready":
        return []
    if kind == "dealt":
        return [codec.expect_bytes(fields[0], "dealt.commitments", HASH_BYTES)]
    if kind == "reveal":
        return [codec.expect_bytes(fields[0], "reveal.value", HASH_BYTES)]
    return [codec.expect_str(fields[0], "abort.reason", 200)]


def _member_list(value: object, n: int, what: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise codec.DecodeError(f"{what}: expected a list")
    members = tuple(codec.expect_int(v, what, hi=n - 1) for v in value)
    if list(members) != sorted(set(members)):
        raise codec.DecodeError(f"{what}: must be sorted and distinct")
    return members


class Contract:
    """Holds the contract state and applies committed blocks to it. Deterministic; no I/O."""

    def __init__(self, params: ContractParams, verify: Verify) -> None:
        self.params = params
        self.verify = verify
        self.state = ContractState(model_hash=params.initial_model_hash)
        self._parsed: dict[bytes, Tx] = {}
        """Transactions already parsed and authenticated, by raw bytes (shared with shadows; see `parse`)."""
        self._sa_verified: dict[tuple[bytes, int, tuple[int, ...]], sam.Message] = {}
        """Secure-aggregation messages already decoded and verified, by (bytes, round, participants)."""

    @property
    def min_members(self) -> int:
        """Fewest members a phase may close with: enough updates, and t+1 for secure aggregation."""
        return max(self.params.min_updates, self.params.degree + 1 if self.params.secure else 1)

    def min_inputs(self, phase: str) -> int:
        """Fewest inputs that may close `phase`: statistics need 2t_v + 1 + f publishers, so that a polynomial
        agreeing with that many is the true one whatever f of them publish (`smpc.shamir.reconstruct`). The
        publishers are holders of V, so the sketch phase needs as many dealers: a smaller V could never
        validate, and its abort at the sketch deadline names the missing dealers instead of nobody later."""
        if phase in ("seed", "sketch", "validate"):
            return 2 * self.params.validation_degree + 1 + self.params.max_faulty
        return self.min_members

    @property
    def committed_rounds(self) -> int:
        return sum(1 for o in self.state.outcomes if o.committed)

    @property
    def finished(self) -> bool:
        """True once `rounds` rounds have committed; an aborted round is retried under the next round id."""
        return not self.state.open and self.committed_rounds >= self.params.rounds

    def parse(self, raw: bytes) -> Tx:
        """`parse_tx`, remembered: a transaction is parsed on arrival, when proposed, checked and applied,
        each time with an Ed25519 verification, and `parse_tx` is a pure function of the bytes."""
        tx = self._parsed.get(raw)
        if tx is None:
            tx = parse_tx(raw, self.params.chain_id, self.params.n, self.verify)
            if len(self._parsed) >= PARSE_CACHE_ENTRIES:
                self._parsed.clear()
            self._parsed[raw] = tx
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

    def tx_valid_now(self, tx: Tx) -> bool:
        """Whether a member's pending input would be valid in the next block (mempool filtering).

        Also cheap checks of the payload's kind: an `sa` message of the phase's type, `stats` of the length
        for the candidates V (a holder publishes over U3 before V is fixed, `SecureRound`; if V came out
        smaller, those statistics wait here, never proposed, until the round's end prunes them).
        """
        s = self.state
        if tx.kind == "ready":
            return self._ready_valid(tx)
        return (s.open and tx.round == s.round and tx.kind == self.params.phase_info(s.phase)[0]
                and tx.author in s.expected and tx.author not in s.inputs
                and (tx.kind != "sa" or sam.peek_tag(tx.fields[0]) == SA_MESSAGE_OF_PHASE[s.phase].TAG)  # type: ignore[arg-type]
                and (tx.kind != "stats" or len(tx.fields[0]) == 8 * self._statistics_count()))  # type: ignore[arg-type]

    def tx_valid_ahead(self, tx: Tx) -> bool:
        """Whether a member's pending `sa` tx for the next round would be valid in the next block, as part of
        that round's key phases running ahead (cheap checks, like `tx_valid_now`)."""
        s = self.state
        return (self._ahead_open() and tx.round == s.round + 1 and tx.kind == "sa"
                and tx.author in self._ahead_expected() and tx.author not in s.ahead_inputs
                and sam.peek_tag(tx.fields[0]) == SA_MESSAGE_OF_PHASE[s.ahead_phase].TAG)  # type: ignore[arg-type]

    def ahead_complete(self) -> bool:
        """Whether the phase running ahead holds every expected member's message but the absent ones', so it
        may close."""
        s = self.state
        return self._ahead_open() and set(s.ahead_inputs) >= set(self.awaited(self._ahead_expected()))

    def awaited(self, expected: Iterable[int]) -> tuple[int, ...]:
        """The members of `expected` a phase waits for: all but the absent (the proposer's and replicas' rule)."""
        return tuple(m for m in expected if m not in self.state.absent)

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

    def _ahead_open(self) -> bool:
        return self.params.secure and self.state.open and self.state.ahead_phase in SA_MESSAGE_OF_PHASE

    def _ahead_expected(self) -> tuple[int, ...]:
        s = self.state
        return tuple(range(self.params.n)) if s.ahead_phase == "keys" else s.ahead_u1

    def _ready_valid(self, tx: Tx) -> bool:
        """From an absent member, for a round after the one it went missing in, up to the next round: a member
        that lags a round or two behind still comes back, and a `ready` from before it went missing cannot be
        replayed."""
        s = self.state
        return tx.author in s.absent and s.absent_since.get(tx.author, 0) <= tx.round <= s.round + 1

    @property
    def ready_round(self) -> int:
        """The round id a `ready` names: the open round, or the next one between rounds."""
        return self.state.round if self.state.open else self.state.round + 1

    def _statistics_count(self) -> int:
        """Statistics of the validate phase: every candidate's norm and every pair's distance."""
        return len(self.state.expected) * (len(self.state.expected) + 1) // 2

    def validation_check(self, accepted: tuple[int, ...] | None) -> ValidationCheck:
        """What the robust rule decides on in the validate phase: the published statistic shares so far,
        the candidates' committed weights and their earlier rejections (the primary proposes from this;
        a replica checks an `accept` or `abort` against it)."""
        s = self.state
        assert s.open and s.phase == "validate", "validation_check outside the validate phase"
        return ValidationCheck(s.round, s.expected, tuple((a, s.inputs[a][0]) for a in sorted(s.inputs)),  # type: ignore[misc]
                               accepted, tuple((a, s.weights[a]) for a in s.expected),
                               tuple((a, s.rejections.get(a, 0)) for a in s.expected))

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

    # ------------------------------------------------------------------ validation

    def _validate(self, tx: Tx, proposer: int) -> list[Check]:
        s, p = self.state, self.params
        if tx.kind in ("open", "close", "result", "abort") and tx.author != proposer:
            raise TxError(f"{tx.kind} tx must be authored by the block proposer")
        if tx.kind == "open":
            model_hash, participants = tx.fields
            if s.open or tx.round != s.round + 1 or self.finished:
                raise TxError(f"cannot open round {tx.round} (current {s.round}, open={s.open})")
            if model_hash != s.model_hash:
                raise TxError("open names a model other than the current global model")
            if len(participants) < self.min_members:  # type: ignore[arg-type]
                raise TxError("too few participants to ever complete the round")
            return []
        if tx.kind in ("sa", "close") and tx.round == s.round + 1 and self._ahead_open():
            return self._validate_ahead(tx)
        if tx.kind == "ready":
            if not self._ready_valid(tx):
                raise TxError(f"ready from member {tx.author} for round {tx.round}: it is not absent, or the "
                              f"round is before it went missing or after {s.round + 1}")
            return []
        if not s.open or tx.round != s.round:
            raise TxError(f"{tx.kind} for round {tx.round}, but round {s.round} open={s.open}")
        if tx.kind == "abort":
            if s.phase == "validate" and len(s.inputs) == len(s.expected):
                return [self.validation_check(None)]
            return [DeadlineCheck(tx.round, s.phase)]
        _, closing_kind, _ = p.phase_info(s.phase)
        if tx.kind in ("close", "result", "accept"):
            if tx.kind != closing_kind or (tx.kind == "close" and tx.fields[0] != s.phase):
                raise TxError(f"{tx.kind} cannot end phase {s.phase}")
            return self._validate_closing(tx)
        if not self.tx_valid_now(tx):
            why = "a second input" if tx.author in s.inputs else "not expected"
            raise TxError(f"{tx.kind} from member {tx.author} for round {tx.round}: {why} in phase {s.phase}")
        if tx.kind == "sa":
            self._check_sa_message(tx, s.round, s.participants, s.phase, s.u1)
        if tx.kind == "stats":
            self._check_statistics(tx)
        if tx.kind == "reveal" and seed_commitment(p.chain_id, s.round, tx.author, tx.fields[0]) != \
                s.seed_commitments[tx.author]:  # type: ignore[arg-type]
            raise TxError(f"reveal from member {tx.author} does not open its committed seed commitment")
        return []

    def _validate_ahead(self, tx: Tx) -> list[Check]:
        """The next round's key phases, while this round is open (module doc)."""
        s = self.state
        if tx.kind == "close":
            if tx.fields[0] != s.ahead_phase:
                raise TxError(f"close {tx.fields[0]!r} for round {tx.round}, whose phase ahead is {s.ahead_phase}")
            if not self.ahead_complete():
                raise TxError(f"phase {s.ahead_phase} of round {tx.round} closes ahead only with every member "
                              f"present")
            return []
        if not self.tx_valid_ahead(tx):
            why = "a second input" if tx.author in s.ahead_inputs else "not expected"
            raise TxError(f"sa from member {tx.author} for round {tx.round}: {why} in phase {s.ahead_phase} ahead")
        self._check_sa_message(tx, tx.round, tuple(range(self.params.n)), s.ahead_phase, s.ahead_u1)
        return []

    def _check_statistics(self, tx: Tx) -> None:
        """Statistic shares must be one GF(p) element per statistic of the round's candidates."""
        try:
            field_vector_from_bytes(tx.fields[0], self._statistics_count())  # type: ignore[arg-type]
        except ValueError as exc:
            raise TxError(f"stats from member {tx.author}: {exc}") from None

    def _validate_closing(self, tx: Tx) -> list[Check]:
        s = self.state
        members = tuple(sorted(s.inputs)) if s.phase != "unmask" else s.expected
        if len(members) < self.min_inputs(s.phase):
            raise TxError(f"phase {s.phase} has {len(members)} inputs, needs {self.min_inputs(s.phase)}: abort")
        checks: list[Check] = []
        if tx.kind == "accept":
            accepted = tuple(tx.fields[0])  # type: ignore[arg-type]
            if not set(accepted) <= set(s.expected) or len(accepted) < self.min_members:
                raise TxError(f"accepted set {accepted} is not a large enough subset of {s.expected}")
            checks.append(self.validation_check(accepted))
        if tx.kind == "result":
            if tuple(tx.fields[0]) != members:  # type: ignore[arg-type]
                raise TxError("result must include exactly the round's committed inputs")
            included = tuple((a, *s.inputs[a]) for a in members) if s.phase == "collect" else s.survivor_entries()
            checks.append(AggregateCheck(tx.round, s.model_hash, included, tx.fields[1]))  # type: ignore[arg-type]
        if s.phase != "unmask" and not set(members) >= set(self.awaited(s.expected)):
            checks.append(DeadlineCheck(tx.round, s.phase))
        return checks

    def _check_sa_message(self, tx: Tx, round_id: int, participants: tuple[int, ...], phase: str,
                          u1: tuple[int, ...]) -> None:
        config = self.params.round_config(round_id, participants)
        key = (tx.fields[0], round_id, participants)
        try:
            message = self._sa_verified.get(key)  # type: ignore[arg-type]
            if message is None:
                message = sam.decode(tx.fields[0], config.limits)  # type: ignore[arg-type]
                verify_message(message, config, lambda i, data, sig: self.verify(i - 1, data, sig))
                if len(self._sa_verified) >= PARSE_CACHE_ENTRIES:
                    self._sa_verified.clear()
                self._sa_verified[key] = message  # type: ignore[index]
            if type(message) is not SA_MESSAGE_OF_PHASE[phase] or message.sender != tx.author + 1:
                raise TxError(f"sa tx carries the wrong message for phase {phase}")
            if isinstance(message, sam.ShareKeys):
                check_bundle_recipients(message, frozenset(i + 1 for i in u1))
        except ProtocolViolation as exc:
            raise TxError(f"invalid secure-aggregation message from member {tx.author}: {exc}") from None

    # ------------------------------------------------------------------ transitions

    def _apply_ahead(self, tx: Tx, height: int) -> list[Event]:
        s = self.state
        if tx.kind == "sa":
            s.ahead_inputs[tx.author] = tx.fields[0]  # type: ignore[assignment]
            return [SecAggCommitted(tx.round, tx.author, tx.fields[0])]  # type: ignore[arg-type]
        members = tuple(sorted(s.ahead_inputs))
        closed = PhaseClosed(tx.round, s.ahead_phase, members, (), height)
        if s.ahead_phase == "keys":
            s.ahead_u1, s.ahead_phase = members, "shares"
        else:
            s.ahead_u2, s.ahead_phase = members, "inputs"
        s.ahead_inputs = {}
        return [closed]

    def _mark_absent(self, missing: tuple[int, ...]) -> None:
        s = self.state
        for m in missing:
            s.absent_since.setdefault(m, s.round + 1)
        s.absent = tuple(sorted(set(s.absent) | set(missing)))

    def _missing_inputs(self) -> tuple[int, ...]:
        """Whom an abort for too few inputs waited for in vain: the round's participants without an input in
        the phase it aborted in (also those left out earlier, e.g. absent at its keys phase, since the phase
        needed them). None for an abort with enough inputs (statistics every holder published but nobody can
        decide) or in the unmask phase, whose reveals travel by gossip."""
        s = self.state
        if s.phase == "unmask" or len(s.inputs) >= self.min_inputs(s.phase):
            return ()
        return tuple(a for a in s.participants if a not in s.inputs)

    def _apply(self, tx: Tx, height: int) -> list[Event]:
        s, p = self.state, self.params
        if tx.author in s.absent:
            s.absent = tuple(m for m in s.absent if m != tx.author)
            s.absent_since.pop(tx.author, None)
        if tx.kind == "ready":
            return []
        if tx.kind in ("sa", "close") and tx.round == s.round + 1 and self._ahead_open():
            return self._apply_ahead(tx, height)
        if tx.kind == "open":
            s.round, s.open, s.phase = tx.round, True, PHASES[p.mode][0][0]
            s.participants = s.expected = tx.fields[1]  # type: ignore[assignment]
            s.inputs, s.digests, s.weights, s.u1, s.rejected = {}, {}, {}, (), ()
            s.seed_commitments = {}
            if s.ahead_phase and s.participants == tuple(range(p.n)):
                # The key phases that ran ahead become this round's: it opens in the first incomplete one.
                s.phase = s.ahead_phase
                s.u1 = s.ahead_u1
                s.expected = {"keys": s.participants, "shares": s.ahead_u1, "inputs": s.ahead_u2}[s.ahead_phase]
                s.inputs = {a: (m, 0) for a, m in s.ahead_inputs.items()}
            s.ahead_phase, s.ahead_inputs, s.ahead_u1, s.ahead_u2 = ("keys" if p.secure else ""), {}, (), ()
            return [RoundOpened(s.round, s.participants, s.model_hash, height)]
        if tx.kind == "update":
            s.inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            return []
        if tx.kind == "input":
            s.inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            s.seed_commitments[tx.author] = tx.fields[2]  # type: ignore[assignment]
            return []
        if tx.kind in ("sa", "stats", "dealt", "reveal"):
            s.inputs[tx.author] = (tx.fields[0], 0)  # type: ignore[assignment]
            return [SecAggCommitted(s.round, tx.author, tx.fields[0])] if tx.kind == "sa" else []  # type: ignore[arg-type]
        if tx.kind in ("close", "accept"):
            members = tuple(sorted(s.inputs)) if tx.kind == "close" else tuple(tx.fields[0])  # type: ignore[arg-type]
            if s.phase == "keys":
                s.u1 = members
                self._mark_absent(tuple(m for m in s.participants if m not in members))
            if s.phase == "inputs":
                s.digests = {a: s.inputs[a][0] for a in members}
                s.weights = {a: s.inputs[a][1] for a in members}
            if tx.kind == "accept":
                s.rejected = tuple(a for a in s.expected if a not in members)
                for a in s.rejected:
                    s.rejections[a] = s.rejections.get(a, 0) + 1
                s.digests = {a: d for a, d in s.digests.items() if a in members}
                s.weights = {a: w for a, w in s.weights.items() if a in members}
            with_inputs = s.phase in ("inputs", "validate")
            digests = tuple((a, s.digests[a]) for a in members) if with_inputs else ()
            weights = tuple((a, s.weights[a]) for a in members) if with_inputs else ()
            payloads = tuple((a, s.inputs[a][0]) for a in members) if s.phase in ("seed", "sketch") else ()
            closed = PhaseClosed(s.round, s.phase, members, digests, height, weights, payloads)  # type: ignore[arg-type]
            s.phase, s.expected, s.inputs = self.params.phase_info(s.phase)[2], members, {}
            return [closed]
        s.open = False
        if tx.kind == "result" and s.phase == "collect":
            self._mark_absent(tuple(m for m in s.participants if m not in tx.fields[0]))  # type: ignore[operator]
        if tx.kind == "result":
            s.model_hash = tx.fields[1]  # type: ignore[assignment]
            outcome = RoundOutcome(tx.round, True, tx.fields[0], s.model_hash, height,  # type: ignore[arg-type]
                                   s.rejected)
        else:
            missing = self._missing_inputs()
            self._mark_absent(missing)
            outcome = RoundOutcome(tx.round, False, (), s.model_hash, height, missing=missing)
        s.outcomes.append(outcome)
        return [outcome]


def referenced_blobs(block: Block, chain_id: bytes, n: int, verify: Verify) -> Iterable[bytes]:
    """Content hashes a committed block depends on: round-result models (what `fednode audit` checks)."""
    for raw in block.txs:
        try:
            tx = parse_tx(raw, chain_id, n, verify)
        except TxError:
            continue
        if tx.kind == "result":
            yield tx.fields[1]  # type: ignore[misc]
