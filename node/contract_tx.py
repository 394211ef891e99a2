"""Round-contract transactions: their kinds, encoding, parsing and authentication.

Owns the wire form of a transaction (`make_tx`, `parse_tx`: module doc of `node.contract`), its bounds
(`MAX_TX_BODY_BYTES`, `MAX_PARTICIPANTS`) and `TxError`, a peer's fault. Pure: may call `consensus.codec`
and `consensus.block` only; knows nothing of the contract state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consensus import codec
from consensus.block import HASH_BYTES, Block

MAX_TX_BODY_BYTES = 64 * 1024
PARSE_CACHE_ENTRIES = 4096
"""Parsed transactions (and verified secure-aggregation messages) a contract remembers; a round has a few
per member, so this spans many rounds."""
PARSE_CACHE_BYTES = 16 << 20
"""The bytes of transactions (of secure-aggregation messages) a contract remembers, parsed (verified): what a
flood of distinct valid transactions can pin, about twice this with their decoded fields. An honest working
set (the mempool's transactions and a block's, from arrival until applied) is far smaller; a flood only
makes a remembered transaction be parsed again. Counting entries alone let one member's flood of 60 KiB
transactions, each refused by the mempool after parsing, pin 4096 of them (some 500 MB)."""
MAX_PARTICIPANTS = 256

Verify = Callable[[int, bytes, bytes], bool]
MAX_STATS_BYTES = 8 * (MAX_PARTICIPANTS + MAX_PARTICIPANTS * (MAX_PARTICIPANTS - 1) // 2)
MAX_ANSWER_BYTES = MAX_TX_BODY_BYTES - 1024
"""A dealer's `answer`: the ciphertext of one holder's sketch shares (its plaintext is bounded by
`smpc.validation_messages.ValidationLimits.max_bytes`; genesis keeps it within this, `validation_config_error`)."""
MAX_EVAL_ROWS = 1 << 32
"""Held-out rows an `eval` may declare: more than any hospital holds, and small enough that sums stay exact."""
MAX_CLIP_BOUND_MICRO = 1 << 40
"""The largest per-round bound B an `accept` may name, in millionths (B is at most the clip C)."""
CLIP_BOUND_UNIT = 1_000_000
"""B travels on the ledger as an integer number of millionths (`clip_bound_micro`): no float is signed."""


def clip_bound_micro(bound: float) -> int:
    """B in the ledger's unit, rounded down (every node floors the same correctly rounded product)."""
    return int(bound * CLIP_BOUND_UNIT)


def clip_bound_value(micro: int) -> float | None:
    """The ledger's B as the float every member clips to and every replica judges with; None for 0 (no bound)."""
    return micro / CLIP_BOUND_UNIT if micro > 0 else None


class TxError(ValueError):
    """A transaction is malformed, badly signed or not valid in the current contract state."""


COMPLAINT_REFUSALS = frozenset({"not_validating", "not_a_holder", "not_a_dealer", "self", "duplicate",
                                "already_published", "no_complaint", "already_answered", "wrong_ciphertext",
                                "not_answered", "wrong_channel_secret", "answer_valid"})


class ComplaintRefused(TxError):
    """A `complaint`, `answer` or `disclose` the contract refuses, with its reason (one of `COMPLAINT_REFUSALS`)."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in COMPLAINT_REFUSALS, f"unknown complaint refusal {reason!r}"
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


REVEAL_REFUSALS = frozenset({"not_unmasking", "not_excising", "not_a_holder", "duplicate", "malformed", "not_allowed",
                             "off_commitment"})


class RevealRefusal(TxError):
    """An unmask-phase or excise-phase reveal (`sa` [UnmaskShares]) the contract refuses, with its reason (one of `REVEAL_REFUSALS`)."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REVEAL_REFUSALS, f"unknown reveal refusal {reason!r}"
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Tx:
    kind: str
    author: int
    round: int
    fields: tuple[object, ...]
    raw: bytes = field(compare=False, repr=False)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """Results remembered by key, at most `max_entries` of them and `max_bytes` of their `cost` in all; the
    oldest are forgotten first. A memo of what peers send must be bounded in bytes, not in entries only."""

    def __init__(self, cost: Callable[[K], int], max_entries: int = PARSE_CACHE_ENTRIES,
                 max_bytes: int = PARSE_CACHE_BYTES) -> None:
        self._cost, self._max_entries, self._max_bytes = cost, max_entries, max_bytes
        self._values: OrderedDict[K, V] = OrderedDict()
        self.bytes = 0
        """The summed cost of the remembered keys."""

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember `value` (unless its key alone costs more than the bound), forgetting the oldest to fit."""
        cost = self._cost(key)
        if key in self._values or cost > self._max_bytes:
            return
        self._values[key] = value
        self.bytes += cost
        while self.bytes > self._max_bytes or len(self._values) > self._max_entries:
            oldest, _ = self._values.popitem(last=False)
            self.bytes -= self._cost(oldest)


def make_tx(chain_id: bytes, kind: str, author: int, round_id: int, fields: Sequence[object],
            sign: Callable[[bytes], bytes]) -> bytes:
    body = codec.encode([kind, chain_id, author, round_id, *fields])
    return codec.encode([body, sign(body)])


_FIELD_COUNTS = {"open": 2, "update": 2, "result": 2, "abort": 1, "sa": 1, "input": 3, "close": 1, "stats": 1,
                 "accept": 3, "dealt": 2, "reveal": 2, "ready": 0, "eval": 3, "complaint": 1,
                "answer": 2, "disclose": 2, "fail": 3, "blame": 2, "verdict": 2}
MAX_BLAME_BYTES = 8 * MAX_PARTICIPANTS
"""A `blame` field, or a `fail`'s base scalars: 8 bytes per member of S (pair or base scalars w, t; or one share of
z_l[b*]), `smpc.blame`."""
MAX_SKETCH_COORDINATE = 1 << 31
MAX_DISPUTE_BYTES = MAX_TX_BODY_BYTES - 1024
"""A verdict's disputed pairs, 2 bytes each (member indices are below `MAX_PARTICIPANTS` = 256): each pair has a
Byzantine end, so at most f (N - 1) < 22,000 of them, in bytes because a list would be bounded by `max_items`."""


def encode_disputes(pairs: Iterable[tuple[int, int]]) -> bytes:
    """A verdict's disputed pairs as its second field: (i, j), i < j, one byte each, sorted."""
    return b"".join(bytes(pair) for pair in pairs)


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
        return [_member_list(fields[0], n, "accept.accepted"), _member_list(fields[1], n, "accept.liars"),
                codec.expect_int(fields[2], "accept.next_clip_bound", hi=MAX_CLIP_BOUND_MICRO)]
    if kind == "ready":
        return []
    if kind == "eval":
        return _eval_fields(fields)
    if kind == "dealt":
        hashes = codec.expect_bytes(fields[1], "dealt.ciphertexts", max_len=HASH_BYTES * MAX_PARTICIPANTS)
        if len(hashes) % HASH_BYTES:
            raise codec.DecodeError("dealt.ciphertexts: not a whole number of hashes")
        return [codec.expect_bytes(fields[0], "dealt.commitments", HASH_BYTES), hashes]
    if kind == "complaint":
        return [codec.expect_int(fields[0], "complaint.dealer", hi=n - 1)]
    if kind == "answer":
        return [codec.expect_int(fields[0], "answer.holder", hi=n - 1),
                codec.expect_bytes(fields[1], "answer.ciphertext", max_len=MAX_ANSWER_BYTES)]
    if kind == "reveal":
        channels = codec.expect_bytes(fields[1], "reveal.channel_keys", max_len=HASH_BYTES * MAX_PARTICIPANTS)
        if len(channels) != HASH_BYTES * n:
            raise codec.DecodeError("reveal.channel_keys: not one key per member")
        return [codec.expect_bytes(fields[0], "reveal.value", HASH_BYTES), channels]
    if kind == "disclose":
        return [codec.expect_int(fields[0], "disclose.dealer", hi=n - 1),
                codec.expect_bytes(fields[1], "disclose.channel_secret", HASH_BYTES)]
    if kind in ("fail", "blame", "verdict"):
        return _blame_fields(kind, fields, n)
    return [codec.expect_str(fields[0], "abort.reason", 200)]


def _eval_fields(fields: list[object]) -> list[object]:
    """[model_hash, correct, total]: the held-out rows a member's evaluation counted, and those it got right."""
    model_hash = codec.expect_bytes(fields[0], "eval.model_hash", HASH_BYTES)
    correct = codec.expect_int(fields[1], "eval.correct", lo=0, hi=MAX_EVAL_ROWS)
    total = codec.expect_int(fields[2], "eval.total", lo=1, hi=MAX_EVAL_ROWS)
    if correct > total:
        raise codec.DecodeError(f"eval: more correct rows than rows ({correct} > {total})")
    return [model_hash, correct, total]


def _blame_fields(kind: str, fields: list[object], n: int) -> list[object]:
    """`fail` [weight failed 0/1, b* or -1, base scalars of each member of S], `blame` [pair scalars, sketch shares], `verdict` [convicted, disputes]
    (docs/validation.md, "Blame after a failed identity")."""
    if kind == "fail":
        return [codec.expect_int(fields[0], "fail.weight", hi=1),
                codec.expect_int(fields[1], "fail.coordinate", lo=-1, hi=MAX_SKETCH_COORDINATE),
                codec.expect_bytes(fields[2], "fail.bases", max_len=MAX_BLAME_BYTES)]
    if kind == "blame":
        return [codec.expect_bytes(fields[0], "blame.pairs", max_len=MAX_BLAME_BYTES),
                codec.expect_bytes(fields[1], "blame.shares", max_len=MAX_BLAME_BYTES)]
    data = codec.expect_bytes(fields[1], "verdict.disputes", max_len=MAX_DISPUTE_BYTES)
    disputes = tuple((data[k], data[k + 1]) for k in range(0, len(data) - 1, 2))
    if len(data) % 2 or any(not i < j < n for i, j in disputes) or list(disputes) != sorted(set(disputes)):
        raise codec.DecodeError("verdict.disputes: must be sorted, distinct pairs i < j of members")
    return [_member_list(fields[0], n, "verdict.convicted"), disputes]


def _member_list(value: object, n: int, what: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise codec.DecodeError(f"{what}: expected a list")
    members = tuple(codec.expect_int(v, what, hi=n - 1) for v in value)
    if list(members) != sorted(set(members)):
        raise codec.DecodeError(f"{what}: must be sorted and distinct")
    return members


def referenced_blobs(block: Block, parse: Callable[[bytes], Tx]) -> Iterable[bytes]:
    """Content hashes a committed block depends on: round-result models (what `fednode audit` checks).

    `parse` is `parse_tx` bound to a chain, or a contract's `Contract.parse`, which remembers the transactions
    it already authenticated (the daemon's, for every block it delivers)."""
    for raw in block.txs:
        try:
            tx = parse(raw)
        except TxError:
            continue
        if tx.kind == "result":
            yield tx.fields[1]  # type: ignore[misc]
