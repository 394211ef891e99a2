"""The round contract: a deterministic function of the committed blocks, like an ABCI application.

Every node applies the same committed blocks in the same order, so every node holds the same contract
state: which round is open, which updates count, which global model is current. The contract is pure:
it never trains, fetches or hashes model bytes. Where a transaction's validity depends on heavy work
(the aggregate model hash of a round result), `check_block` returns that work as `AggregateCheck`s and
the shell performs them before voting; a replica votes for a block only if every check matches its own
computation.

Transactions are signed by their author, so a Byzantine primary cannot forge another member's update:

    tx   = codec [body_bytes, ed25519_signature(body_bytes)]
    body = codec [kind, chain_id, author, round, *fields]

| kind     | author          | fields                                 | valid when                                   |
|----------|-----------------|----------------------------------------|----------------------------------------------|
| open     | block proposer  | model_hash, participants               | no round open, round = last + 1, fewer than  |
|          |                 |                                        | `rounds` committed, model = current global   |
| update   | a participant   | update_hash, n_samples                 | round open and collecting, one per author    |
| result   | block proposer  | included, new_model_hash               | included = committed updates of the round    |
|          |                 |                                        | (sorted, >= min_updates), aggregate matches  |

| abort    | block proposer  | reason                                 | round open (and the deadline passed, below)  |

Time never enters the contract: applying committed blocks must be deterministic. Whether a round's
deadline has passed is a local judgement each replica makes *before voting*: a result that leaves out
some participants, or an abort, comes back from `check_block` with a `DeadlineCheck`, and an honest
replica votes for it only once the round has been open on its own clock for the configured deadline.
A primary that closes rounds early therefore gathers no quorum and is replaced by a view change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from consensus import codec
from consensus.block import HASH_BYTES, Block

MAX_TX_BODY_BYTES = 64 * 1024
MAX_PARTICIPANTS = 256

Verify = Callable[[int, bytes, bytes], bool]


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


@dataclass(frozen=True, slots=True)
class AggregateCheck:
    """Work the shell must do before voting: fedavg(global, included updates) must hash to `new_model_hash`."""

    round: int
    global_model_hash: bytes
    included: tuple[tuple[int, bytes, int], ...]  # (author, update_hash, n_samples), sorted by author
    new_model_hash: bytes


@dataclass(frozen=True, slots=True)
class DeadlineCheck:
    """Work the shell must do before voting: round `round` must have been open locally past its deadline."""

    round: int


Check = AggregateCheck | DeadlineCheck


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    round: int
    committed: bool
    included: tuple[int, ...]
    model_hash: bytes
    height: int


@dataclass
class ContractState:
    round: int = 0
    open: bool = False
    model_hash: bytes = b""
    participants: tuple[int, ...] = ()
    updates: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    opened_at_height: int = 0
    outcomes: list[RoundOutcome] = field(default_factory=list)
    height: int = 0


def make_tx(chain_id: bytes, kind: str, author: int, round_id: int, fields: Sequence[object],
            sign: Callable[[bytes], bytes]) -> bytes:
    body = codec.encode([kind, chain_id, author, round_id, *fields])
    return codec.encode([body, sign(body)])


_FIELD_COUNTS = {"open": 2, "update": 2, "result": 2, "abort": 1}


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
        model_hash = codec.expect_bytes(fields[0], "open.model_hash", HASH_BYTES)
        return [model_hash, _member_list(fields[1], n, "open.participants")]
    if kind == "update":
        return [codec.expect_bytes(fields[0], "update.hash", HASH_BYTES),
                codec.expect_int(fields[1], "update.n_samples", lo=1, hi=1 << 40)]
    if kind == "result":
        return [_member_list(fields[0], n, "result.included"),
                codec.expect_bytes(fields[1], "result.model_hash", HASH_BYTES)]
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

    @property
    def committed_rounds(self) -> int:
        return sum(1 for o in self.state.outcomes if o.committed)

    @property
    def finished(self) -> bool:
        """True once `rounds` rounds have committed; an aborted round is retried under the next round id."""
        return not self.state.open and self.committed_rounds >= self.params.rounds

    def parse(self, raw: bytes) -> Tx:
        return parse_tx(raw, self.params.chain_id, self.params.n, self.verify)

    def check_block(self, block: Block) -> list[Check]:
        """Validate a proposed block against a copy of the state; raise TxError on the first invalid tx.

        Returns the aggregate checks the shell must perform before it may vote for the block.
        """
        shadow = Contract(self.params, self.verify)
        shadow.state = _copy_state(self.state)
        checks: list[Check] = []
        for raw in block.txs:
            tx = shadow.parse(raw)
            checks.extend(shadow._validate(tx, block))
            shadow._apply(tx, block.height)
        shadow.state.height = block.height
        return checks

    def apply_block(self, block: Block) -> list[RoundOutcome]:
        """Apply a committed block. Committed blocks were validated by a quorum, which contains an honest
        majority of validators; an invalid transaction inside one is still skipped deterministically rather
        than trusted, so every node's state stays identical."""
        before = len(self.state.outcomes)
        for raw in block.txs:
            try:
                tx = self.parse(raw)
                self._validate(tx, block)
            except TxError:
                continue
            self._apply(tx, block.height)
        self.state.height = block.height
        return self.state.outcomes[before:]

    def tx_valid_now(self, tx: Tx) -> bool:
        """Whether a pending update would be valid in the next block (mempool filtering)."""
        s = self.state
        return (tx.kind == "update" and s.open and tx.round == s.round and tx.author in s.participants
                and tx.author not in s.updates)

    def _validate(self, tx: Tx, block: Block) -> list[Check]:
        s, p = self.state, self.params
        if tx.kind in ("open", "result", "abort") and tx.author != block.proposer:
            raise TxError(f"{tx.kind} tx must be authored by the block proposer")
        if tx.kind == "open":
            model_hash, participants = tx.fields
            if s.open or tx.round != s.round + 1 or self.finished:
                raise TxError(f"cannot open round {tx.round} (current {s.round}, open={s.open})")
            if model_hash != s.model_hash:
                raise TxError("open names a model other than the current global model")
            if len(participants) < p.min_updates:  # type: ignore[arg-type]
                raise TxError("too few participants to ever complete the round")
            return []
        if not s.open or tx.round != s.round:
            raise TxError(f"{tx.kind} for round {tx.round}, but round {s.round} open={s.open}")
        if tx.kind == "update":
            if tx.author not in s.participants or tx.author in s.updates:
                raise TxError(f"update from member {tx.author} not expected")
            return []
        if tx.kind == "abort":
            return [DeadlineCheck(tx.round)]
        included, new_model_hash = tx.fields
        if tuple(included) != tuple(sorted(s.updates)):  # type: ignore[arg-type]
            raise TxError("result must include exactly the committed updates of the round")
        if len(included) < p.min_updates:  # type: ignore[arg-type]
            raise TxError(f"result with {len(included)} updates, need {p.min_updates}")  # type: ignore[arg-type]
        aggregate = AggregateCheck(
            round=tx.round, global_model_hash=s.model_hash,
            included=tuple((a, s.updates[a][0], s.updates[a][1]) for a in included),  # type: ignore[union-attr]
            new_model_hash=new_model_hash)  # type: ignore[arg-type]
        partial = len(included) < len(s.participants)  # type: ignore[arg-type]
        return [aggregate, DeadlineCheck(tx.round)] if partial else [aggregate]

    def _apply(self, tx: Tx, height: int) -> None:
        s = self.state
        if tx.kind == "open":
            s.round, s.open, s.updates = tx.round, True, {}
            s.participants = tx.fields[1]  # type: ignore[assignment]
            s.opened_at_height = height
        elif tx.kind == "update":
            s.updates[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
        elif tx.kind == "result":
            s.open = False
            s.model_hash = tx.fields[1]  # type: ignore[assignment]
            s.outcomes.append(RoundOutcome(tx.round, True, tx.fields[0], s.model_hash, height))  # type: ignore[arg-type]
        else:
            s.open = False
            s.outcomes.append(RoundOutcome(tx.round, False, (), s.model_hash, height))


def _copy_state(state: ContractState) -> ContractState:
    return ContractState(round=state.round, open=state.open, model_hash=state.model_hash,
                         participants=state.participants, updates=dict(state.updates),
                         opened_at_height=state.opened_at_height, outcomes=list(state.outcomes),
                         height=state.height)


def referenced_blobs(block: Block, chain_id: bytes, n: int, verify: Verify) -> Iterable[bytes]:
    """Content hashes a committed block depends on: round-result models (what `fednode audit` checks)."""
    for raw in block.txs:
        try:
            tx = parse_tx(raw, chain_id, n, verify)
        except TxError:
            continue
        if tx.kind == "result":
            yield tx.fields[1]  # type: ignore[misc]
