"""Round-contract transactions on the wire: the documented layout, each kind's fields at their bounds, and the
exact reason a peer's malformed or misaddressed transaction is refused with."""

from __future__ import annotations

import hashlib

import pytest

from consensus import codec
from node import contract_tx as ct
from node.contract import Contract
from node.contract_state import ContractParams
from tests.unit.test_contract import CHAIN, KEYS, N, block, verify

H = hashlib.sha256(b"h").digest()


def sign(author: int):  # type: ignore[no-untyped-def]
    return lambda body: KEYS[author].sign(body).signature


def raw(items: list, author: int = 1) -> bytes:
    """A transaction over an arbitrary body, signed by `author`."""
    body = codec.encode(items)
    return codec.encode([body, sign(author)(body)])


def parse(data: bytes) -> ct.Tx:
    return ct.parse_tx(data, CHAIN, N, verify)


def test_a_transaction_is_the_signed_body_documented_in_the_contract() -> None:
    bodies = []

    def signer(body: bytes) -> bytes:
        bodies.append(body)
        return bytes(64)

    data = ct.make_tx(CHAIN, "update", 2, 5, [H, 7], signer)
    assert bodies == [codec.encode(["update", CHAIN, 2, 5, H, 7])]
    assert data == codec.encode([bodies[0], bytes(64)])


@pytest.mark.parametrize(("kind", "fields", "parsed"), [
    ("open", [H, [0, 2, 3]], (H, (0, 2, 3))),
    ("open", [H, []], (H, ())),
    ("update", [H, 1], (H, 1)),
    ("update", [H, 1 << 40], (H, 1 << 40)),
    ("result", [[1, 3], H], ((1, 3), H)),
    ("abort", ["x" * 200], ("x" * 200,)),
    ("sa", [b"m"], (b"m",)),
    ("input", [H, -(1 << 31), H], (H, -(1 << 31), H)),
    ("input", [H, (1 << 31) - 1, H], (H, (1 << 31) - 1, H)),
    ("close", ["x" * 16], ("x" * 16,)),
    ("stats", [b"s" * 1000], (b"s" * 1000,)),
    ("accept", [[0, 1, 2, 3], [2], 0], ((0, 1, 2, 3), (2,), 0)),
    ("accept", [[0, 1, 2, 3], [], 1 << 40], ((0, 1, 2, 3), (), 1 << 40)),
    ("dealt", [H, H * 2], (H, H * 2)),
    ("reveal", [H, H * N], (H, H * N)),
    ("ready", [], ()),
    ("eval", [H, 0, 1], (H, 0, 1)),
    ("eval", [H, 1 << 32, 1 << 32], (H, 1 << 32, 1 << 32)),
    ("complaint", [N - 1], (N - 1,)),
    ("answer", [0, b"c" * ct.MAX_ANSWER_BYTES], (0, b"c" * ct.MAX_ANSWER_BYTES)),
    ("disclose", [N - 1, H], (N - 1, H)),
])
def test_each_kind_parses_to_its_typed_fields(kind: str, fields: list, parsed: tuple) -> None:
    data = ct.make_tx(CHAIN, kind, N - 1, 1 << 31, fields, sign(N - 1))
    assert parse(data) == ct.Tx(kind, N - 1, 1 << 31, parsed, data)
    assert parse(data).raw == data


def body(kind: str = "update", *fields: object, chain: bytes = CHAIN, author: object = 1, round_id: object = 1) -> list:
    return [kind, chain, author, round_id, *(fields or (H, 5))]


REFUSED = [
    (b"\xc1", "malformed tx: malformed msgpack: FormatError"),
    (codec.encode([b"body"]), "malformed tx: tx: expected a list of 2 fields"),
    (codec.encode(["body", bytes(64)]), "malformed tx: tx.body: expected bytes"),
    (codec.encode([bytes(ct.MAX_TX_BODY_BYTES + 1), bytes(64)]), "malformed tx: tx.body: 65537 bytes exceeds 65536"),
    (codec.encode([bytes(ct.MAX_TX_BODY_BYTES + 56), bytes(64)]), "malformed tx: tx.body: 65592 bytes exceeds 65536"),
    (codec.encode([bytes(ct.MAX_TX_BODY_BYTES + 57), bytes(64)]), "malformed tx: 65665 bytes exceeds limit 65664"),
    (codec.encode([codec.encode(body()), bytes(63)]), "malformed tx: tx.signature: expected 64 bytes, got 63"),
    (raw(["update", CHAIN, 1]), "malformed tx: tx body: too few fields"),
    (codec.encode([codec.encode(5), bytes(64)]), "malformed tx: tx body: too few fields"),
    (raw(body(3)), "malformed tx: tx.kind: expected a string of at most 16 characters"),
    (raw(body("x" * 17)), "malformed tx: tx.kind: expected a string of at most 16 characters"),
    (raw(body("vote")), "malformed tx: tx: unknown kind or wrong field count for 'vote'"),
    (raw(body("update", H, 5, 6)), "malformed tx: tx: unknown kind or wrong field count for 'update'"),
    (raw(body("ready", H)), "malformed tx: tx: unknown kind or wrong field count for 'ready'"),
    (raw(body(chain=CHAIN[:31])), "malformed tx: tx.chain_id: expected 32 bytes, got 31"),
    (raw(body(chain=hashlib.sha256(b"other").digest())), "tx for another chain"),
    (raw(body(author=N)), "malformed tx: tx.author: expected an integer in [0, 3]"),
    (raw(body(author=-1)), "malformed tx: tx.author: expected an integer in [0, 3]"),
    (raw(body(round_id=0)), "malformed tx: tx.round: expected an integer in [1, 2147483648]"),
    (raw(body(round_id=(1 << 31) + 1)), "malformed tx: tx.round: expected an integer in [1, 2147483648]"),
    (raw(body("open", H[:31], [0])), "malformed tx: open.model_hash: expected 32 bytes, got 31"),
    (raw(body("open", H, 0)), "malformed tx: open.participants: expected a list"),
    (raw(body("open", H, [1, 0])), "malformed tx: open.participants: must be sorted and distinct"),
    (raw(body("open", H, [1, 1])), "malformed tx: open.participants: must be sorted and distinct"),
    (raw(body("open", H, [0, N])), "malformed tx: open.participants: expected an integer in [0, 3]"),
    (raw(body("update", H[:31], 5)), "malformed tx: update.hash: expected 32 bytes, got 31"),
    (raw(body("update", H, 0)), "malformed tx: update.n_samples: expected an integer in [1, 1099511627776]"),
    (raw(body("update", H, (1 << 40) + 1)), "malformed tx: update.n_samples: expected an integer in [1, 1099511627776]"),
    (raw(body("result", 0, H)), "malformed tx: result.included: expected a list"),
    (raw(body("result", [0], H[:31])), "malformed tx: result.model_hash: expected 32 bytes, got 31"),
    (raw(body("sa", "m")), "malformed tx: sa.message: expected bytes"),
    (raw(body("input", H[:31], 0, H)), "malformed tx: input.digest: expected 32 bytes, got 31"),
    (raw(body("input", H, -(1 << 31) - 1, H)),
     "malformed tx: input.weight: expected an integer in [-2147483648, 2147483647]"),
    (raw(body("input", H, 1 << 31, H)), "malformed tx: input.weight: expected an integer in [-2147483648, 2147483647]"),
    (raw(body("input", H, 0, H[:31])), "malformed tx: input.seed_commitment: expected 32 bytes, got 31"),
    (raw(body("close", "x" * 17)), "malformed tx: close.phase: expected a string of at most 16 characters"),
    (raw(body("stats", "s")), "malformed tx: stats.shares: expected bytes"),
    (raw(body("accept", [2, 1], [], 0)), "malformed tx: accept.accepted: must be sorted and distinct"),
    (raw(body("accept", [1, 2], [3, 3], 0)), "malformed tx: accept.liars: must be sorted and distinct"),
    (raw(body("accept", [1, 2], [], -1)), "malformed tx: accept.next_clip_bound: expected an integer in [0, 1099511627776]"),
    (raw(body("accept", [1, 2], [], (1 << 40) + 1)),
     "malformed tx: accept.next_clip_bound: expected an integer in [0, 1099511627776]"),
    (raw(body("accept", [1, 2], [])), "malformed tx: tx: unknown kind or wrong field count for 'accept'"),
    (raw(body("dealt", H[:31], H)), "malformed tx: dealt.commitments: expected 32 bytes, got 31"),
    (raw(body("dealt", H, H[:31])), "malformed tx: dealt.ciphertexts: not a whole number of hashes"),
    (raw(body("dealt", H, "c")), "malformed tx: dealt.ciphertexts: expected bytes"),
    (raw(body("dealt", H, H * (ct.MAX_PARTICIPANTS + 1))), "malformed tx: dealt.ciphertexts: 8224 bytes exceeds 8192"),
    (raw(body("reveal", H[:31], H * N)), "malformed tx: reveal.value: expected 32 bytes, got 31"),
    (raw(body("reveal", H, H * (N - 1))), "malformed tx: reveal.channel_keys: not one key per member"),
    (raw(body("reveal", H, "k")), "malformed tx: reveal.channel_keys: expected bytes"),
    (raw(body("reveal", H, H * (ct.MAX_PARTICIPANTS + 1))),
     "malformed tx: reveal.channel_keys: 8224 bytes exceeds 8192"),
    (raw(body("abort", "x" * 201)), "malformed tx: abort.reason: expected a string of at most 200 characters"),
    (raw(body("eval", H[:31], 0, 1)), "malformed tx: eval.model_hash: expected 32 bytes, got 31"),
    (raw(body("eval", H, -1, 1)), "malformed tx: eval.correct: expected an integer in [0, 4294967296]"),
    (raw(body("eval", H, 0, 0)), "malformed tx: eval.total: expected an integer in [1, 4294967296]"),
    (raw(body("eval", H, 0, (1 << 32) + 1)), "malformed tx: eval.total: expected an integer in [1, 4294967296]"),
    (raw(body("eval", H, 3, 2)), "malformed tx: eval: more correct rows than rows (3 > 2)"),
    (raw(body("complaint", N)), "malformed tx: complaint.dealer: expected an integer in [0, 3]"),
    (raw(body("complaint", 0, 1)), "malformed tx: tx: unknown kind or wrong field count for 'complaint'"),
    (raw(body("answer", -1, b"c")), "malformed tx: answer.holder: expected an integer in [0, 3]"),
    (raw(body("answer", 0, "c")), "malformed tx: answer.ciphertext: expected bytes"),
    (raw(body("answer", 0, bytes(ct.MAX_ANSWER_BYTES + 1))),
     f"malformed tx: answer.ciphertext: {ct.MAX_ANSWER_BYTES + 1} bytes exceeds {ct.MAX_ANSWER_BYTES}"),
    (raw(body("answer", 0)), "malformed tx: tx: unknown kind or wrong field count for 'answer'"),
    (raw(body("disclose", N, H)), "malformed tx: disclose.dealer: expected an integer in [0, 3]"),
    (raw(body("disclose", 0, H[:31])), "malformed tx: disclose.channel_secret: expected 32 bytes, got 31"),
    (raw(body("disclose", 0)), "malformed tx: tx: unknown kind or wrong field count for 'disclose'"),
    (raw(body(), author=2), "bad signature on update tx from member 1"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSED)
def test_a_bad_transaction_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ct.TxError) as error:
        parse(data)
    assert str(error.value) == reason


@pytest.mark.parametrize("reason", sorted(ct.COMPLAINT_REFUSALS))
def test_a_complaint_refusal_carries_its_reason_apart_and_in_its_message(reason: str) -> None:
    refusal = ct.ComplaintRefused(reason, "member 1 about 3")
    assert (refusal.reason, str(refusal)) == (reason, f"{reason}: member 1 about 3")
    assert isinstance(refusal, ct.TxError)


def test_bodies_and_lists_at_their_bounds_parse() -> None:
    filler = codec.encode(body("sa", b""))
    message = b"m" * (ct.MAX_TX_BODY_BYTES - len(filler) - 1)  # a 3-byte bin header instead of 2
    assert len(codec.encode(body("sa", message))) == ct.MAX_TX_BODY_BYTES
    assert parse(raw(body("sa", message))).fields == (message,)
    longest = [0] * (ct.MAX_PARTICIPANTS + 8)
    with pytest.raises(ct.TxError, match=r"^malformed tx: accept.accepted: must be sorted and distinct$"):
        parse(raw(body("accept", longest, [], 0)))
    with pytest.raises(ct.TxError, match=r"^malformed tx: malformed msgpack: ValueError$"):
        parse(raw(body("accept", [*longest, 0], [], 0)))


def test_only_round_results_reference_model_blobs() -> None:
    m1, m2 = hashlib.sha256(b"m1").digest(), hashlib.sha256(b"m2").digest()
    txs = (raw(body("result", [0, 1], m1, author=0), author=0), b"\xc1", raw(body("update", m2, 5)),
           raw(body("result", [1], m2, author=3), author=2), raw(body("result", [1], m2, author=3), author=3))
    assert list(ct.referenced_blobs(block(1, 0, *txs), parse)) == [m1, m2]


def test_a_contract_authenticates_each_transaction_of_a_delivered_block_once() -> None:
    """The daemon names a delivered block's models with its contract's `parse` (cached): the block's
    transactions, already verified when they were checked, are not verified again, and a transaction that
    differs in one byte of its signature is not taken for a verified one."""
    m1 = hashlib.sha256(b"m1").digest()
    good = raw(body("result", [0, 1], m1, author=0), author=0)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    calls: list[int] = []

    def counting(member: int, data: bytes, signature: bytes) -> bool:
        calls.append(member)
        return verify(member, data, signature)

    contract = Contract(ContractParams(CHAIN, N, rounds=1, initial_model_hash=b"\0" * 32, min_updates=1), counting)
    contract.parse(good)
    assert list(ct.referenced_blobs(block(1, 0, good), contract.parse)) == [m1] and len(calls) == 1
    assert list(ct.referenced_blobs(block(1, 0, forged), contract.parse)) == [] and len(calls) == 2


def test_the_bound_travels_in_millionths_rounded_down_and_zero_means_none() -> None:
    assert ct.clip_bound_micro(2.5) == 2_500_000 and ct.clip_bound_micro(0.9999999) == 999_999
    assert ct.clip_bound_micro(1e-7) == 0
    assert ct.clip_bound_value(2_500_000) == 2.5 and ct.clip_bound_value(1) == 1e-6
    assert ct.clip_bound_value(0) is None
