"""A whole secure round in one process: contract + SecureRound for every node, blocks built by hand.

This is the daemon's secure path without I/O: every byte a node would send is collected, so the test can
check both the aggregate and that no node's plaintext update ever leaves it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from nacl.signing import SigningKey

from consensus.block import Block
from ml.robust import RobustRule
from node import contract as rc
from node.secure_round import (
    LinearIdentityFailed,
    SecureRound,
    SendShares,
    SendSketchSum,
    SubmitTx,
    ValidationSetup,
    Weighting,
    apply_sum,
    decide_accepted,
    quant_params,
    validation_config_error,
)
from smpc import field, shamir
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.errors import InconsistentShares, MissingMessages, NotEnoughShares, RoundAborted
from smpc.prg import SeededRandomBytes
from smpc.quantize import quantize
from smpc.signing import signing_payload
from smpc.sketch import CountSketch
from smpc.validation import SketchParams, sketch_seed

CHAIN = hashlib.sha256(b"secure round test").digest()
L = 50


class Cluster:
    def __init__(self, n: int, seed: int, validate: bool = False, rounds: int = 1, validation_degree: int = 1,
                 length: int = L, width: int = 200) -> None:
        self.n, self.seed = n, seed
        self.keys = [SigningKey(bytes([seed % 256, i + 1]) * 16) for i in range(n)]
        self.weighting = Weighting(clip_l2=10.0, sample_cap=100)
        self.setup = ValidationSetup(validation_degree, SketchParams.for_clip(self.weighting.total_bound, width),
                                     RobustRule(kind="median_distance", f=(n - 1) // 3)) if validate else None
        self.quant = quant_params(self.weighting, n, self.setup.sketch if self.setup is not None else None)
        self.params = rc.ContractParams(CHAIN, n, rounds=rounds, initial_model_hash=b"\x00" * 32, min_updates=3,
                                        secure=True, degree=n - 3 if validate else n - 2, vector_length=length + 1,
                                        validate=validate, validation_degree=validation_degree,
                                        exclude_late=True, sketch_width=width,
                                        sketch_scale_ratio=self.setup.sketch.scale / self.quant.scale
                                        if self.setup is not None else 0.0)
        self.contracts = [rc.Contract(self.params, self.verify) for _ in range(n)]
        self.rounds: dict[int, SecureRound] = {}
        self.next_rounds: dict[int, SecureRound] = {}
        """Each node's SecureRound for the round after the open one, if it prepared it (its keys ahead)."""
        self.mempool: list[bytes] = []
        self.wire: dict[int, list[bytes]] = {i: [] for i in range(n)}  # bytes each node received from others
        self.height = 0
        self.blocks: list[Block] = []
        """Every committed block, so a member that was away can catch up on the ledger."""
        self.alive = set(range(n))
        self.refused: list[tuple[rc.Tx, rc.TxError]] = []
        """The reveals the last `commit_reveals` left out (what the primary drops)."""
        self.left: dict[int, str] = {}

    def verify(self, i: int, data: bytes, sig: bytes) -> bool:
        try:
            self.keys[i].verify_key.verify(data, sig)
        except Exception:  # noqa: BLE001 - the reference verifier treats every failure as invalid
            return False
        return True

    def rand(self, i: int, round_id: int) -> SeededRandomBytes:
        """Node i's randomness for a round: fixed by the cluster's seed, so every failure reproduces."""
        return SeededRandomBytes(hashlib.sha256(f"{self.seed}/{i}/{round_id}".encode()).digest())

    def sign(self, i: int):  # type: ignore[no-untyped-def]
        return lambda data: self.keys[i].sign(data).signature

    def emit(self, sender: int, outputs: list) -> None:  # type: ignore[type-arg]
        for out in outputs:
            if isinstance(out, SendShares):
                self.wire[out.to].append(out.payload)
                if out.to in self.alive:
                    self.emit(out.to, self.rounds[out.to].on_sketch_shares(sender, out.payload))
                continue
            if isinstance(out, SendSketchSum):
                for j in self.alive - {sender}:
                    self.wire[j].append(out.payload)
                    self.rounds[j].on_sketch_sum(sender, out.payload)
                continue
            payload = out.raw if isinstance(out, SubmitTx) else out.message
            for j in self.alive - {sender}:
                self.wire[j].append(payload)
            if isinstance(out, SubmitTx):
                self.mempool.append(out.raw)
            else:
                for j in self.alive - {sender}:
                    sr = self.rounds[j]
                    sr.on_message(sr.decode(out.message))

    def commit(self, *extra: bytes, proposer: int = 0) -> None:
        """Commit a block of the pending valid txs plus `extra`, applying it at every live node; then, in the unmask
        phase, a block of the reveals that block made the nodes submit (`commit_reveals`)."""
        contract = self.contracts[min(self.alive)]
        txs = [raw for raw in self.mempool if contract.tx_valid_now(contract.parse(raw))]
        txs += [raw for raw in self.mempool if contract.tx_valid_ahead(contract.parse(raw))] + list(extra)
        self.commit_block(txs, proposer)
        self.commit_reveals()

    def commit_reveals(self) -> None:
        """The unmask phase's reveals are transactions: commit the pending ones in a block of their own, as the
        primary does (`Proposer._unmask_step`), so that the nodes unmask from them."""
        contract = self.contracts[min(self.alive)]
        pending = [contract.parse(raw) for raw in self.mempool if contract.state.phase in ("unmask", "excise")
                   and contract.parse(raw).kind == "sa" and contract.tx_valid_now(contract.parse(raw))]
        reveals, self.refused = contract.admissible(pending)
        if reveals:
            self.commit_block([tx.raw for tx in reveals], 0)

    def commit_block(self, txs: list[bytes], proposer: int) -> None:
        contract = self.contracts[min(self.alive)]
        self.mempool = [raw for raw in self.mempool if raw not in txs]
        self.height += 1
        block = Block(CHAIN, self.height, CHAIN, 0, proposer, tuple(txs))
        contract.check_block(block)
        self.blocks.append(block)
        for i in sorted(self.alive):
            for event in self.contracts[i].apply_block(block):
                self.on_event(i, event)

    def on_event(self, i: int, event: rc.Event) -> None:
        if isinstance(event, rc.RoundOpened):
            if i in self.next_rounds and self.next_rounds[i].round == event.round:
                self.rounds[i] = self.next_rounds.pop(i)  # its keys went ahead, as `RoundDriver.prepare_next_round`
                self.rounds[i].set_disputes(event.disputes)  # as `RoundDriver._join_round`
                return
            self.rounds[i] = SecureRound(self.params, event, i, self.sign(i), self.verify,
                                         self.rand(i, event.round), self.quant, self.setup)
            self.rounds[i].set_disputes(self.contracts[i].state.disputes)
            for author, message in self.contracts[i].committed_sa_messages(event.round):  # as `Daemon`
                self.rounds[i].on_committed(rc.SecAggCommitted(event.round, author, message))
            self.emit(i, self.rounds[i].start())
        elif isinstance(event, rc.SecAggCommitted):
            self.round_of(i, event.round).on_committed(event)
        elif isinstance(event, (rc.ComplaintCommitted, rc.AnswerCommitted)):  # as `RoundDriver.on_event`
            self.emit(i, self.round_of(i, event.round).on_complaint(event))
        elif isinstance(event, rc.BlameStarted):
            self.emit(i, self.round_of(i, event.round).on_blame_started(event))
        elif isinstance(event, rc.ExciseStarted):  # as `RoundDriver._on_excise_started`
            self.emit(i, self.round_of(i, event.round).on_excise_started(event))
        elif isinstance(event, rc.PhaseClosed):
            try:
                self.emit(i, self.round_of(i, event.round).on_phase_closed(event))
            except RoundAborted as exc:  # as `RoundDriver._advance_secure`: this node is out of the round
                self.left[i] = str(exc)

    def round_of(self, i: int, round_id: int) -> SecureRound:
        ahead = self.next_rounds.get(i)
        return ahead if ahead is not None and ahead.round == round_id else self.rounds[i]

    def prepare_next_round(self, i: int, round_id: int) -> None:
        """Node i advertises its keys for `round_id` while the round before it is open."""
        opened = rc.RoundOpened(round_id, tuple(range(self.n)), b"", 0)
        self.next_rounds[i] = SecureRound(self.params, opened, i, self.sign(i), self.verify,
                                          self.rand(i, round_id), self.quant, self.setup)
        for author, message in self.contracts[i].committed_sa_messages(round_id):
            self.next_rounds[i].on_committed(rc.SecAggCommitted(round_id, author, message))
        self.emit(i, self.next_rounds[i].start())

    def tx(self, kind: str, fields: list[object], round_id: int = 1, author: int = 0) -> bytes:
        return rc.make_tx(CHAIN, kind, author, round_id, fields, self.sign(author))

    def mask_updates(self, updates: dict[int, np.ndarray], weights: dict[int, float] | None = None) -> None:
        """Open round 1, commit the key phases, and let every member mask its update (weight 50 samples; the
        weight coordinate replaced by `weights[i]` if given, which an honest node would never produce)."""
        self.commit(self.tx("open", [b"\x00" * 32, list(range(self.n))]))
        self.commit(self.tx("close", ["keys"]))
        self.commit(self.tx("close", ["shares"]))
        for i in range(self.n):
            vector = self.weighting.vector(updates[i], 50)
            if weights is not None and i in weights:
                vector[-1] = weights[i]
            self.emit(i, self.rounds[i].set_update(vector))

    def close_inputs(self) -> None:
        """Commit U3, then R with every reveal submitted in reply: the sketch seed is fixed."""
        self.commit(self.tx("close", ["inputs"]))
        self.commit(self.tx("close", ["seed"]))

    def pending_statistics(self) -> dict[int, bytes]:
        """Commit U3, R and V; return the statistic shares the holders then submitted, by author."""
        self.close_inputs()
        self.commit(self.tx("close", ["sketch"]))
        contract = self.contracts[0]
        return {contract.parse(raw).author: contract.parse(raw).fields[0] for raw in self.mempool}  # type: ignore[misc]

    def publish_statistics(self) -> rc.ValidationCheck:
        """Commit U3, V and the statistic shares the holders then submitted; return what the rule decides on."""
        self.pending_statistics()
        self.commit()
        return self.contracts[min(self.alive)].validation_check(None)


def run_round(n: int, seed: int, drop_after_input: set[int], drop_before_keys: set[int] = frozenset()):  # type: ignore[no-untyped-def,assignment]
    rng = np.random.default_rng(seed)
    c = Cluster(n, seed)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    samples = {i: int(rng.integers(10, 200)) for i in range(n)}
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    c.alive -= drop_before_keys
    c.mempool = [raw for raw in c.mempool if c.contracts[0].parse(raw).author not in drop_before_keys]
    c.commit(c.tx("close", ["keys"]))
    c.commit(c.tx("close", ["shares"]))
    for i in sorted(c.alive):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], samples[i])))
    c.commit(c.tx("close", ["inputs"]))
    c.alive -= drop_after_input
    for i in sorted(drop_after_input):
        c.rounds.pop(i)
    survivors = sorted(set(range(n)) - drop_before_keys)
    expected = np.sum([c.weighting.vector(updates[i], samples[i]) for i in survivors], axis=0)
    totals = {i: c.rounds[i].try_sum(deadline_passed=bool(drop_after_input)) for i in sorted(c.alive)}
    return c, updates, samples, expected, totals


@pytest.mark.parametrize("seed", range(6))
def test_every_node_unmasks_the_exact_sum_of_the_survivors(seed: int) -> None:
    n = 4 + seed % 3
    c, _updates, _samples, expected, totals = run_round(n, seed, drop_after_input=set())
    for i, total in totals.items():
        assert total is not None, f"seed={seed}: node {i} could not unmask"
        np.testing.assert_allclose(total, expected, atol=n / c.quant.scale + 1e-12, err_msg=f"seed={seed}")
    first = next(iter(totals.values()))
    assert all(np.array_equal(t, first) for t in totals.values()), f"seed={seed}: nodes disagree on the sum"


@pytest.mark.parametrize("seed", range(4))
def test_dropout_after_masked_input_and_before_keys(seed: int) -> None:
    n = 6
    c, _u, _s, expected, totals = run_round(n, seed, drop_after_input={1}, drop_before_keys={4})
    for i, total in totals.items():
        assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale), f"seed={seed} node={i}"


def plaintext_needles(vec: np.ndarray, quantized: np.ndarray) -> list[bytes]:
    """16-byte windows of every encoding of a node's update a leak could carry: float32, float64, and the
    exact quantized ring vector it masked (quantization is stochastic, so rebuilding it with np.round
    would miss a full plaintext leak of the quantized vector most of the time)."""
    encodings = [vec.astype("<f4").tobytes(), vec.astype("<f8").tobytes(), quantized.astype("<u4").tobytes()]
    return [e[k : k + 16] for e in encodings for k in range(0, len(e) - 15, 16)]


def test_no_plaintext_update_bytes_reach_any_peer() -> None:
    c, updates, samples, _expected, _totals = run_round(5, 11, drop_after_input=set())
    for i in range(5):
        quantized = c.rounds[i]._masked_quantized
        assert quantized is not None
        needles = plaintext_needles(c.weighting.vector(updates[i], samples[i]), quantized)
        assert any(needle in b"junk" + quantized.astype("<u4").tobytes() for needle in needles), "detector works"
        for j, received in c.wire.items():
            if j != i:
                assert not any(needle in payload for needle in needles for payload in received), (i, j)


def test_no_plaintext_update_bytes_reach_any_peer_in_a_validated_round() -> None:
    """The same with validation: sketch shares, statistics and sketch-sum shares carry no plaintext either."""
    n = 7
    c = Cluster(n, 17, validate=True)
    rng = np.random.default_rng(17)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    assert c.rounds[0].try_sum(deadline_passed=False) is not None
    for i in range(n):
        needles = plaintext_needles(c.weighting.vector(updates[i], 50), c.rounds[i]._masked_quantized)  # type: ignore[arg-type]
        for j, received in c.wire.items():
            if j != i:
                assert not any(needle in payload for needle in needles for payload in received), (i, j)


def test_weighted_vectors_give_fedavg() -> None:
    w = Weighting(clip_l2=100.0, sample_cap=1000)
    g = np.zeros(3, dtype=np.float32)
    total = w.vector(np.array([1.0, 0, 0]), 100) + w.vector(np.array([0, 1.0, 0]), 300)
    np.testing.assert_allclose(apply_sum(g, total), [0.25, 0.75, 0], rtol=1e-6)



def test_validation_on_shares_rejects_poisoned_updates_and_sums_the_rest() -> None:
    n, poisoned = 7, {2, 5}
    rng = np.random.default_rng(7)
    c = Cluster(n, 7, validate=True)
    base = rng.normal(0, 0.3, L)
    updates = {i: base + rng.normal(0, 0.02, L) for i in range(n)}
    for i in poisoned:
        updates[i] = -8 * base
    c.mask_updates(updates)
    check = c.publish_statistics()
    contract = c.contracts[0]
    assert [a for a, _ in check.published] == list(range(n)), "every holder publishes its statistic shares"
    outcome = decide_accepted(check, c.setup, c.quant)
    assert set(outcome.rejected) == poisoned and outcome.statistics.checked
    c.commit(c.tx("accept", outcome.accept_fields()))
    assert contract.state.phase == "unmask" and contract.state.rejected == tuple(sorted(poisoned))
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=False)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)
    assert c.rounds[0].sketch_sum_checked, "the sum was released only after the linear identity held"


def test_an_update_that_lied_about_its_sketch_fails_the_linear_identity() -> None:
    """Member 3 masks a poisoned update but deals the sketch of a benign one: validation cannot see it,
    the linear identity after unmasking does, at every node, so no node votes for the poisoned sum."""
    n, liar = 7, 3
    rng = np.random.default_rng(11)
    c = Cluster(n, 11, validate=True)
    base = rng.normal(0, 0.3, L)
    updates = {i: base + rng.normal(0, 0.02, L) for i in range(n)}
    c.mask_updates({i: -8 * base if i == liar else updates[i] for i in range(n)})
    c.rounds[liar]._masked_quantized = quantize(c.weighting.vector(updates[liar], 50), c.quant,
                                                SeededRandomBytes(b"\x01" * 32))
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    assert liar in outcome.accepted, "the lie passes validation; only the identity can catch it"
    c.commit(c.tx("accept", outcome.accept_fields()))
    for i in range(n):
        with pytest.raises(LinearIdentityFailed):
            c.rounds[i].try_sum(deadline_passed=False)


def test_a_lying_statistics_publisher_is_named_and_outvoted() -> None:
    n = 7
    c = Cluster(n, 8, validate=True)
    rng = np.random.default_rng(8)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    check = c.publish_statistics()
    honest = decide_accepted(check, c.setup, c.quant)
    stats = dict(check.published)
    forged = np.frombuffer(stats[3], dtype="<u8").copy()
    forged[0] = (int(forged[0]) + 12345) % ((1 << 61) - 1)
    stats[3] = forged.astype("<u8").tobytes()
    lied = decide_accepted(dataclasses.replace(check, published=tuple(sorted(stats.items()))), c.setup, c.quant)
    assert 4 in lied.statistics.inconsistent_publishers  # x-coordinate of member 3
    assert lied.accepted == honest.accepted


def test_a_node_dying_after_its_masked_input_is_treated_as_dropped() -> None:
    n = 7
    c = Cluster(n, 9, validate=True)
    rng = np.random.default_rng(9)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    c.alive -= {6}  # dies after its masked input is on the ledger, before dealing its sketch
    c.rounds[6].set_update = None  # type: ignore[method-assign]
    c.contracts[6] = rc.Contract(c.params, c.verify)
    check = c.publish_statistics()
    assert check.candidates == (0, 1, 2, 3, 4, 5)
    outcome = decide_accepted(check, c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=True)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)


def test_a_keys_message_replayed_in_the_shares_phase_never_reaches_a_block() -> None:
    """A late or resubmitted AdvertiseKeys tx must not look pending in the shares phase (it would arm the
    view-change timer) nor enter the primary's proposal (every backup would reject the block)."""
    c = Cluster(4, seed=7)
    c.commit(c.tx("open", [b"\x00" * 32, [0, 1, 2, 3]]))
    keys_txs = list(c.mempool)
    c.commit(c.tx("close", ["keys"]))
    contract = c.contracts[0]
    assert contract.state.phase == "shares"
    replayed = [contract.parse(raw) for raw in keys_txs]
    assert not any(contract.tx_valid_now(tx) for tx in replayed)
    shares = [contract.parse(raw) for raw in c.mempool]
    assert len(shares) == 4 and all(contract.tx_valid_now(tx) for tx in shares)
    forged = contract.parse(rc.make_tx(CHAIN, "sa", 1, 1, [bytes([0x95, 2]) + b"\x00" * 40], c.sign(1)))
    assert contract.tx_valid_now(forged)  # the cheap filter only peeks at the tag
    duplicate = shares[2]
    valid, invalid = contract.admissible([forged, *shares, duplicate])
    assert valid == shares
    assert [tx for tx, _ in invalid] == [forged, duplicate]
    assert contract.state.phase == "shares" and not contract.state.inputs  # admissible changes nothing


def test_abort_of_unreconstructable_statistics_is_checked_at_once_not_after_a_deadline() -> None:
    """N = 4: degree-2 statistic shares from 4 holders correct no error, so one corrupt publisher makes the
    statistics unreconstructable. Once every holder published, the abort is justified by the committed
    shares themselves: the contract asks replicas to confirm that, instead of waiting out the deadline."""
    n = 4
    c = Cluster(n, 5, validate=True)
    rng = np.random.default_rng(5)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    stats = c.pending_statistics()
    contract = c.contracts[0]
    corrupt = bytearray(stats[3])
    corrupt[0] ^= 1
    stats[3] = bytes(corrupt)
    shadow = contract.shadow()
    shadow.extend([shadow.parse(rc.make_tx(CHAIN, "stats", a, 1, [stats[a]], c.sign(a))) for a in range(n)], 0)
    with pytest.raises(InconsistentShares):
        decide_accepted(shadow.validation_check(None), c.setup, c.quant)
    txs = [rc.make_tx(CHAIN, "stats", a, 1, [stats[a]], c.sign(a)) for a in range(n)]
    checks = contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*txs, c.tx("abort", ["unreconstructable"]))))
    assert [type(ch) for ch in checks] == [rc.ValidationCheck] and checks[0].accepted is None  # type: ignore[union-attr]
    early = contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*txs[:3], c.tx("abort", ["too early"]))))
    assert [type(ch) for ch in early] == [rc.DeadlineCheck]


def test_a_weight_outside_0_1_is_rejected_before_it_can_amplify_the_sum() -> None:
    """FedAvg divides by the summed weights: a member masking weight -0.3 (consistently with what it
    commits) would shrink that denominator and multiply everyone's update. Its committed weight is
    public, so validation rejects it, and one above 1 as well; the rest is summed exactly."""
    n = 7
    rng = np.random.default_rng(21)
    c = Cluster(n, 21, validate=True)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates, weights={1: -0.3, 4: 1.5})
    check = c.publish_statistics()
    assert dict(check.weights)[1] < 0 < dict(check.weights)[0]
    outcome = decide_accepted(check, c.setup, c.quant)
    assert outcome.rejected == {1: "weight_out_of_range", 4: "weight_out_of_range"}
    c.commit(c.tx("accept", outcome.accept_fields()))
    total = c.rounds[0].try_sum(deadline_passed=False)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)


@pytest.mark.parametrize("validate", [False, True])
def test_a_weight_masked_other_than_committed_aborts_at_every_node(validate: bool) -> None:
    """Member 2 commits its honest weight (50 samples of 100) but masks three times that in its weight
    coordinate: the statistics cannot see it (they leave the weight out), the unmasked weight coordinate can."""
    n, liar = 7, 2
    rng = np.random.default_rng(22)
    c = Cluster(n, 22, validate=validate)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)}, weights={liar: 1.5})
    contract = c.contracts[0]
    for k, raw in enumerate(c.mempool):
        tx = contract.parse(raw)
        if tx.kind == "input" and tx.author == liar:
            c.mempool[k] = rc.make_tx(CHAIN, "input", liar, 1, [tx.fields[0], int(tx.fields[1]) // 3, tx.fields[2]], c.sign(liar))
    if validate:
        outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
        assert liar in outcome.accepted
        c.commit(c.tx("accept", outcome.accept_fields()))
    else:
        c.commit(c.tx("close", ["inputs"]))
    for i in range(n):
        with pytest.raises(LinearIdentityFailed, match="weight"):
            c.rounds[i].try_sum(deadline_passed=False)


def test_a_node_that_missed_the_committed_keys_leaves_the_round_instead_of_crashing() -> None:
    """Member 4 did not see the committed key advertisements (it caught up on the block late, as a loaded
    node of a real cluster did): the keys phase cannot advance at member 4, and every later phase must say
    so with RoundAborted, not drive the core from a state it never reached (an assertion stopping the node)."""
    n, late = 5, 4
    c = Cluster(n, 31)
    deliver = c.on_event
    c.on_event = lambda i, event: None if i == late and isinstance(event, rc.SecAggCommitted) else deliver(i, event)  # type: ignore[method-assign]
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    with pytest.raises(MissingMessages):
        c.commit(c.tx("close", ["keys"]))
    c.commit(c.tx("close", ["shares"]))
    assert "left round 1" in c.left[late] and set(c.left) == {late}
    assert all(c.rounds[i].machine.can_mask for i in range(n) if i != late)


def test_a_machine_that_never_saw_the_keys_phase_close_leaves_at_a_later_phase_instead_of_crashing() -> None:
    """Member 4 joined only after the key phases closed without it (they ran ahead while it was absent): the
    first phase close it sees is a later one, which must be RoundAborted, not an AssertionError in the core."""
    n, late = 5, 4
    c = Cluster(n, 32)
    deliver, emit = c.on_event, c.emit
    c.on_event = lambda i, event: None if i == late and not isinstance(event, rc.RoundOpened) \
        else deliver(i, event)  # type: ignore[method-assign]
    c.emit = lambda i, outputs: None if i == late else emit(i, outputs)  # type: ignore[method-assign]
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    c.commit(c.tx("close", ["keys"]))
    c.on_event = deliver  # type: ignore[method-assign]
    c.commit(c.tx("close", ["shares"]))
    assert "before our keys phase" in c.left[late] and set(c.left) == {late}


def test_statistics_come_before_v_is_fixed_so_one_block_can_close_sketch_and_validate() -> None:
    """Holders publish over U3 as soon as they hold every U3 member's shares, before the ledger fixes V:
    when V = U3 the primary's block carries the dealt txs, the sketch close, the statistics and the
    accept (`Proposer._hold_for_statistics`), and the round unmasks the exact sum from it."""
    n = 7
    c = Cluster(n, 12, validate=True)
    rng = np.random.default_rng(12)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    c.close_inputs()
    contract = c.contracts[0]
    pending = [contract.parse(raw) for raw in c.mempool]
    assert sorted((tx.kind, tx.author) for tx in pending) == sorted(
        [("dealt", i) for i in range(n)] + [("stats", i) for i in range(n)])
    shadow = contract.shadow()
    txs = [tx.raw for tx in pending if tx.kind == "dealt"] + [c.tx("close", ["sketch"])]
    shadow.extend([shadow.parse(raw) for raw in txs], 0)
    stats = [tx.raw for tx in pending if shadow.tx_valid_now(tx)]
    assert len(stats) == n, "statistics over U3 are valid once V = U3"
    shadow.extend([shadow.parse(raw) for raw in stats], 0)
    outcome = decide_accepted(shadow.validation_check(None), c.setup, c.quant)
    c.mempool = []
    c.commit(*txs, *stats, c.tx("accept", outcome.accept_fields()))
    assert contract.state.phase == "unmask" and c.mempool == [], "no holder published a second time"
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=False)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)


def test_statistics_over_u3_are_never_proposed_when_v_comes_out_smaller() -> None:
    """Member 6 dealt its shares but its `dealt` missed the sketch phase: the holders' early statistics
    (over U3) fit no block, and every holder in V publishes again over V."""
    n = 7
    c = Cluster(n, 13, validate=True)
    rng = np.random.default_rng(13)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    c.close_inputs()
    contract = c.contracts[0]
    early = [raw for raw in c.mempool if contract.parse(raw).kind == "stats"]
    assert len(early) == n
    c.mempool = [raw for raw in c.mempool if contract.parse(raw).author != 6 or contract.parse(raw).kind != "dealt"]
    c.commit(c.tx("close", ["sketch"]))
    assert contract.state.expected == tuple(range(6))
    assert not any(contract.tx_valid_now(contract.parse(raw)) for raw in early)
    again = {contract.parse(raw).author for raw in c.mempool if contract.tx_valid_now(contract.parse(raw))}
    assert again == set(range(6))
    c.commit()
    outcome = decide_accepted(contract.validation_check(None), c.setup, c.quant)
    assert outcome.statistics.checked and set(outcome.accepted) <= set(range(6))


def test_a_node_restarted_after_advertising_its_keys_stays_out_instead_of_aborting_the_round() -> None:
    """Member 3 advertised its keys, crashed and restarted with fresh keys (secrets are not persisted);
    the ledger commits the old advertisement. Before the fix it dealt shares under keys nobody else
    held: the shares failed to decrypt and the round aborted at unmasking (seen with `fednode cluster
    --crash 3@2`). Now it leaves the round at once, records nothing against itself, and the others
    complete it without it."""
    n, restarted = 5, 3
    c = Cluster(n, 14)
    rng = np.random.default_rng(14)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    opened = rc.RoundOpened(1, tuple(range(n)), b"\x00" * 32, c.height)
    c.rounds[restarted] = SecureRound(c.params, opened, restarted, c.sign(restarted), c.verify,
                                      c.rand(n + restarted, 1), c.quant, c.setup)
    c.rounds[restarted].start()  # the fresh advertisement loses the race: the ledger has the old one
    c.commit(c.tx("close", ["keys"]))
    assert c.rounds[restarted].violations == [] and set(c.left) == {restarted}
    contract = c.contracts[0]
    assert {contract.parse(raw).author for raw in c.mempool} == set(range(n)) - {restarted}
    c.commit(c.tx("close", ["shares"]))  # after the phase deadline, without member 3
    for i in range(n):
        if i != restarted:
            c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    assert c.rounds[restarted].set_update(c.weighting.vector(updates[restarted], 50)) == []
    c.commit(c.tx("close", ["inputs"]))
    total = c.rounds[0].try_sum(deadline_passed=False)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in range(n) if i != restarted], axis=0)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)
    assert "left round 1" in c.left[restarted]


def _finish_round_one(c: Cluster, updates: dict[int, np.ndarray]) -> np.ndarray:
    """Round 1's masked inputs, the close of its inputs phase and every node's unmasked sum."""
    for i in sorted(c.alive):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    return np.sum([c.weighting.vector(updates[i], 50) for i in sorted(c.alive)], axis=0)


@pytest.mark.parametrize("seed", range(3))
def test_the_next_rounds_key_phases_run_ahead_so_it_opens_ready_for_masked_inputs(seed: int) -> None:
    """Round 2's keys and shares are committed in round 1's blocks; round 2 opens in its inputs phase, every
    member masks at once, and every node unmasks exactly the sum of round 2's vectors."""
    n = 5
    c = Cluster(n, 30 + seed, rounds=2)
    rng = np.random.default_rng(seed)
    first = {i: rng.normal(0, 0.3, L) for i in range(n)}
    second = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(first)
    for i in range(n):
        c.prepare_next_round(i, 2)
    contract = c.contracts[0]
    adverts = [raw for raw in c.mempool if contract.parse(raw).round == 2]
    assert len(adverts) == n and not any(contract.tx_valid_now(contract.parse(raw)) for raw in adverts)
    c.commit(c.tx("close", ["inputs"]), c.tx("close", ["keys"], round_id=2))  # round 1's block, round 2's keys
    assert contract.state.phase == "unmask" and contract.state.ahead_phase == "shares"
    shares = [raw for raw in c.mempool if contract.parse(raw).round == 2]
    assert len(shares) == n  # every member dealt round 2's shares as the block committed
    expected_first = np.sum([c.weighting.vector(first[i], 50) for i in range(n)], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=False)
    assert total is not None and np.allclose(total, expected_first, atol=n / c.quant.scale)
    height = c.height
    c.commit(c.tx("close", ["shares"], round_id=2),
             c.tx("result", [list(range(n)), hashlib.sha256(b"m1").digest()]),
             c.tx("open", [hashlib.sha256(b"m1").digest(), list(range(n))], round_id=2))
    assert c.height == height + 1
    state = contract.state
    assert (state.round, state.phase, state.expected, state.u1) == (2, "inputs", tuple(range(n)), tuple(range(n)))
    assert state.ahead_phase == "keys" and not c.mempool
    for i in range(n):
        out = c.rounds[i].set_update(c.weighting.vector(second[i], 50))
        assert len(out) == 2  # masked at once: the masked vector and its input tx
        c.emit(i, out)
    c.commit(c.tx("close", ["inputs"], round_id=2))
    expected = np.sum([c.weighting.vector(second[i], 50) for i in range(n)], axis=0)
    for i in range(n):
        total = c.rounds[i].try_sum(deadline_passed=False)
        assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale), f"seed {seed}, node {i}"


def test_an_incomplete_phase_ahead_never_closes_and_carries_over_into_the_opened_round() -> None:
    """Member 3 did not advertise ahead (it restarted, say): no block may close round 2's keys early, since
    no deadline runs before a round opens; round 2 opens in its keys phase with the four committed
    advertisements, and completes once member 3 advertises."""
    n, late = 5, 3
    c = Cluster(n, 40, rounds=2)
    rng = np.random.default_rng(40)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    for i in range(n):
        if i != late:
            c.prepare_next_round(i, 2)
    contract = c.contracts[0]
    early_close = Block(CHAIN, c.height + 1, CHAIN, 0, 0, tuple(
        [raw for raw in c.mempool if contract.tx_valid_ahead(contract.parse(raw))] + [c.tx("close", ["keys"], 2)]))
    with pytest.raises(rc.TxError, match="only with every member"):
        contract.check_block(early_close)
    c.commit(c.tx("close", ["inputs"]))
    assert contract.state.ahead_phase == "keys" and set(contract.state.ahead_inputs) == set(range(n)) - {late}
    second = SecureRound(c.params, rc.RoundOpened(2, tuple(range(n)), b"", 0), 0, c.sign(0), c.verify,
                         c.rand(n, 2), c.quant, c.setup).start()[0]
    assert isinstance(second, SubmitTx)
    with pytest.raises(rc.TxError, match="a second input in phase keys ahead"):  # member 0 advertising twice
        contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (second.raw,)))
    c.commit(c.tx("result", [list(range(n)), hashlib.sha256(b"m1").digest()]),
             c.tx("open", [hashlib.sha256(b"m1").digest(), list(range(n))], round_id=2))
    state = contract.state
    assert (state.round, state.phase, set(state.inputs)) == (2, "keys", set(range(n)) - {late})
    assert [contract.parse(raw).author for raw in c.mempool] == [late]  # it advertised as the round opened
    c.commit(c.tx("close", ["keys"], round_id=2))
    assert contract.state.phase == "shares" and contract.state.u1 == tuple(range(n))
    c.commit(c.tx("close", ["shares"], round_id=2))
    assert contract.state.phase == "inputs" and contract.state.expected == tuple(range(n))


JUNK = [b"", b"\x00", b"\x93\x01\x02\x03", bytes(range(256)) * 40, b"\xc6\xff\xff\xff\xff",
        rc.make_tx(CHAIN, "dealt", 6, 1, [b"\x00" * 32], lambda data: b"\x00" * 64)]


def test_junk_sketch_shares_and_sums_sent_early_are_violations_not_a_crash() -> None:
    """Issue 17, finding 1: member 6 sends every peer junk `vshare` and `ssum` payloads as the round opens.
    They were stored unchecked and decoded when the inputs phase closed, and the DecodeError ended every
    honest daemon. Now each is checked on arrival, becomes a violation naming member 6, and the round goes
    on: member 6's genuine shares, sent later, still count."""
    n, sender = 7, 6
    c = Cluster(n, 41, validate=True)
    rng = np.random.default_rng(41)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    for i in range(n - 1):
        for junk in JUNK:
            assert c.rounds[i].on_sketch_shares(sender, junk) == []
            c.rounds[i].on_sketch_sum(sender, junk)
        assert {v.sender for v in c.rounds[i].violations} == {sender + 1} and len(c.rounds[i].violations) == 2 * len(JUNK)
    c.commit(c.tx("close", ["keys"]))
    c.commit(c.tx("close", ["shares"]))
    for i in range(n):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    outcome = decide_accepted(c.publish_statistics(), c.setup, c.quant)
    assert sender in outcome.accepted + tuple(outcome.rejected) and outcome.statistics.checked
    c.commit(c.tx("accept", outcome.accept_fields()))
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=False)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)


def test_sketch_shares_relayed_forged_or_with_wrong_contributions_are_violations_of_their_author() -> None:
    """A dealer's shares relayed by another member, addressed to another holder, or carrying a PRZS
    contribution that does not match the dealer's signed commitment: each is refused on arrival, and
    the holder keeps waiting for a valid message from that dealer."""
    n = 7
    c = Cluster(n, 42, validate=True)
    rng = np.random.default_rng(42)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    sent: list[SendShares] = []
    deliver = c.emit
    c.emit = lambda i, outputs: (sent.extend((i, o) for o in outputs if isinstance(o, SendShares)),  # type: ignore[method-assign,func-returns-value]
                                 deliver(i, [o for o in outputs if not isinstance(o, SendShares) or i != 2]))
    c.close_inputs()
    genuine = {o.to: o.payload for i, o in sent if i == 2}
    victim = c.rounds[0]
    assert victim.on_sketch_shares(5, genuine[0]) == []  # relayed by member 5
    assert victim.on_sketch_shares(2, genuine[1]) == []  # member 1's shares
    message = vm.decode_shares(genuine[0], victim._vlimits)  # type: ignore[arg-type]
    forged = bytearray(message.contributions)
    forged[0] ^= 1
    bad = vm.sign_shares(CHAIN, c.sign(2), 1, 2, 0, message.share, bytes(forged), message.commitments)
    assert victim.on_sketch_shares(2, bad) == []
    assert [type(v).__name__ for v in victim.violations] == ["ProtocolViolation", "ProtocolViolation",
                                                             "ProtocolViolation"]
    assert [v.sender for v in victim.violations] == [6, 3, 3] and 2 not in victim._dealt  # participant ids
    assert [type(o) for o in victim.on_sketch_shares(2, genuine[0])] == [SubmitTx]  # then it can publish


def forged_statistics(check: rc.ValidationCheck, author: int, shifts: dict[int, int]) -> rc.ValidationCheck:
    """`author`'s published statistic shares with `shifts[k]` added to statistic k: all a member can still
    do to the statistics, now that no member deals the zero sharing that re-randomizes them."""
    published = dict(check.published)
    vector = np.frombuffer(published[author], dtype="<u8").copy()
    for k, shift in shifts.items():
        vector[k] = (int(vector[k]) + shift) % ((1 << 61) - 1)
    published[author] = vector.astype("<u8").tobytes()
    return dataclasses.replace(check, published=tuple(sorted(published.items())))


@pytest.mark.parametrize("goal", ["hide_own_norm", "push_honest_norms_out"])
def test_a_member_cannot_offset_the_statistics(goal: str) -> None:
    """Issue 14, finding 1. Member 3 masks an unclipped -8x update and deals its true sketch (so the linear
    identity holds). With dealt zero sharings it shifted every holder's re-randomization by an offset: its
    own norm looked benign (accepted, the model stepped along its direction) or two honest norms left the
    range (rejected outside the cap of f). Zero shares are now computed from keys, dealt by nobody: all it
    can shift is its own published share, which the reconstruction corrects and names."""
    n, attacker = 7, 3
    rng = np.random.default_rng(43)
    c = Cluster(n, 43, validate=True)
    base = rng.normal(0, 0.3, L)
    updates = {i: base + rng.normal(0, 0.02, L) for i in range(n)}
    c.mask_updates(updates)
    poisoned = np.append(-8 * base * (c.weighting.clip_l2 / np.linalg.norm(base)), 0.5)
    c.rounds[attacker]._masked_quantized = quantize(poisoned, c.quant, SeededRandomBytes(b"\x02" * 32))
    check = c.publish_statistics()
    honest = decide_accepted(check, c.setup, c.quant)
    assert attacker in honest.rejected
    scale = int(c.setup.sketch.scale**2)
    shifts = {attacker: -scale * 10**6} if goal == "hide_own_norm" else {0: scale * 10**9, 1: scale * 10**9}
    lied = decide_accepted(forged_statistics(check, attacker, shifts), c.setup, c.quant)
    assert lied.statistics.inconsistent_publishers == (attacker + 1,)
    assert lied.accepted == honest.accepted and set(lied.rejected) == set(honest.rejected)


def test_three_publishers_never_decide() -> None:
    """Issue 14, finding 2. A Byzantine primary holds the other holders out until the deadline and closes
    the validate phase with its own forged statistics plus two honest ones: 2t_v + 1 = 3 points fit one
    polynomial, so its forgery decided. The contract now needs 2t_v + 1 + f = 5 publishers, and with 5 of
    which 2 lie in concert (their points on one forged polynomial through 2 honest ones) nothing decides."""
    n, primary, accomplice = 7, 6, 5
    rng = np.random.default_rng(44)
    c = Cluster(n, 44, validate=True)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    stats = c.pending_statistics()
    contract = c.contracts[0]
    vectors = {a + 1: np.frombuffer(stats[a], dtype="<u8").astype(np.uint64) for a in stats}
    target = {1: vectors[1], 2: vectors[2], primary + 1: field.add(vectors[primary + 1], np.uint64(10**12))}
    forged = shamir.interpolate(target, [accomplice + 1])[0]
    published = {0: stats[0], 1: stats[1], primary: target[primary + 1].astype("<u8").tobytes()}
    three = contract.shadow()
    three.extend([three.parse(rc.make_tx(CHAIN, "stats", a, 1, [v], c.sign(a))) for a, v in published.items()], 0)
    with pytest.raises(rc.TxError, match="needs 5"):
        three.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (c.tx("accept", [[0, 1, 2, 3, 4], [], 0]),)))
    with pytest.raises(NotEnoughShares):
        decide_accepted(three.validation_check(None), c.setup, c.quant)
    published |= {2: stats[2], accomplice: forged.astype("<u8").tobytes()}
    five = contract.shadow()
    five.extend([five.parse(rc.make_tx(CHAIN, "stats", a, 1, [v], c.sign(a))) for a, v in published.items()], 0)
    with pytest.raises(InconsistentShares):
        decide_accepted(five.validation_check(None), c.setup, c.quant)


def test_genesis_refuses_validation_that_would_leak_or_could_not_decide() -> None:
    """Issue 14, finding 4: t_v = 1 at N = 7 let 2 colluders read every sketch. Genesis refuses a degree
    below f, a degree whose statistics would need more publishers than members, and PRZS beyond its bound."""
    assert "below max(1, f = 2)" in validation_config_error(7, 2, 1)  # type: ignore[operator]
    assert "below max(1, f = 0)" in validation_config_error(3, 0, 0)  # type: ignore[operator]
    assert validation_config_error(4, 1, 1) is None and validation_config_error(7, 2, 2) is None
    assert validation_config_error(10, 3, 3) is None and validation_config_error(13, 4, 4) is None
    assert "more than N = 7" in validation_config_error(7, 2, 3)  # type: ignore[operator]
    assert "zero-sharing keys" in validation_config_error(40, 13, 13)  # type: ignore[operator]
    assert validation_config_error(13, 4, 4) is None and validation_config_error(13, 4, 4, 4000) is None
    assert "exceed an answer transaction" in validation_config_error(16, 5, 5)  # type: ignore[operator]
    assert "exceed an answer transaction" in validation_config_error(7, 2, 2, 8000)  # type: ignore[operator]


def test_the_last_masker_cannot_predict_the_sketch_so_grinding_no_longer_helps() -> None:
    """Issue 14, finding 3. The seed was H(U3's digests): the last member to mask knew every other digest,
    so it could vary its own input until the public sketch cancelled a chosen delta (two coordinates in
    one bucket, opposite signs), then move those coordinates freely. The seed now also hashes the reveals
    committed after U3 closed: what members 5 and 6 (f = 2 colluders, 6 masking last) can compute when U3
    closes, with any choice of which of their own reveals count, is not the round's sketch, and the delta
    they tuned to cancel under their prediction shows in the round's sketch."""
    n, length = 7, 2000
    c = Cluster(n, 45, validate=True, length=length)
    rng = np.random.default_rng(45)
    c.mask_updates({i: rng.normal(0, 0.3, length) for i in range(n)})
    contract = c.contracts[0]
    digests = [contract.parse(raw).fields[0] for raw in c.mempool if contract.parse(raw).kind == "input"]
    commitment = hashlib.sha256(b"".join(digests)).digest()  # type: ignore[arg-type]
    c.close_inputs()
    actual = c.rounds[6]._sketch
    assert actual is not None and contract.state.phase == "sketch"
    own = {i: c.rounds[i]._seed_reveal for i in (5, 6)}
    for chosen in ({}, {6: own[6]}, own):
        predicted = CountSketch(sketch_seed(CHAIN, 1, commitment, chosen), length, 200)
        buckets = predicted.signed_buckets % 200
        j1, j2 = next((a, b) for a in range(length) for b in range(a + 1, length) if buckets[a] == buckets[b])
        sign = 1 if (predicted.signed_buckets[j1] < 200) == (predicted.signed_buckets[j2] < 200) else -1
        delta = np.zeros(length, dtype=np.int64)
        delta[j1], delta[j2] = 1000, -1000 * sign
        assert not predicted.apply(delta).any(), "the delta cancels under the predicted sketch"
        assert actual.apply(delta).any(), f"the round's sketch was predictable from {sorted(chosen)}"


def test_a_reveal_must_open_its_commitment_and_the_seed_phase_closes_early_only_with_every_reveal() -> None:
    n = 7
    c = Cluster(n, 46, validate=True)
    rng = np.random.default_rng(46)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    c.commit(c.tx("close", ["inputs"]))
    contract = c.contracts[0]
    reveals = [contract.parse(raw) for raw in c.mempool]
    assert sorted(tx.author for tx in reveals if tx.kind == "reveal") == list(range(n))
    other = rc.make_tx(CHAIN, "reveal", 3, 1, [b"\x00" * 32, bytes(32 * c.n)], c.sign(3))
    with pytest.raises(rc.TxError, match="does not open"):
        contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (other,)))
    early = contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0,
                                       (*[tx.raw for tx in reveals[:5]], c.tx("close", ["seed"]))))
    assert [type(ch) for ch in early] == [rc.DeadlineCheck]
    with pytest.raises(rc.TxError, match="needs 5"):
        contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*[tx.raw for tx in reveals[:4]],
                                                                          c.tx("close", ["seed"]))))
    assert contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0,
                                      (*[tx.raw for tx in reveals], c.tx("close", ["seed"])))) == []


def test_an_aggregate_beyond_the_clip_bound_is_never_released() -> None:
    """Issue 14, finding 6: every update is clipped to C before masking, so the unmasked sum of |S| vectors
    is within |S| C (plus quantization). Member 2 masks an unclipped vector 40 times that long, with the
    weight it committed: without validation nothing else looks at it, and the node released the sum."""
    n, cheat = 5, 2
    rng = np.random.default_rng(47)
    c = Cluster(n, 47)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))]))
    c.commit(c.tx("close", ["keys"]))
    c.commit(c.tx("close", ["shares"]))
    for i in range(n):
        vector = c.weighting.vector(updates[i], 50)
        if i == cheat:
            vector[:-1] = 40 * c.weighting.clip_l2 * vector[:-1] / np.linalg.norm(vector[:-1])
        quantized = field.ring_from_signed(np.round(vector * c.quant.scale))  # quantize would clip it
        c.emit(i, c.rounds[i].set_quantized(quantized))
    c.commit(c.tx("close", ["inputs"]))
    for i in range(n):
        with pytest.raises(LinearIdentityFailed, match="clip bound"):
            c.rounds[i].try_sum(deadline_passed=False)


def test_without_validation_a_weight_outside_0_1_aborts_before_anything_is_revealed() -> None:
    """Issue 14, finding 6: no unmasking before every check that can still fail. The committed weights are
    on the ledger when the inputs phase closes; one outside (0, 1] used to abort the round only after every
    node had revealed its shares and unmasked the sum. Now no node reveals."""
    n = 5
    rng = np.random.default_rng(48)
    c = Cluster(n, 48)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)}, weights={2: -0.3})
    revealed: list[object] = []
    deliver = c.emit
    c.emit = lambda i, outputs: (revealed.extend(o for o in outputs if not isinstance(o, SubmitTx)),  # type: ignore[method-assign,func-returns-value]
                                 deliver(i, outputs))
    c.commit(c.tx("close", ["inputs"]))
    assert revealed == [] and all("outside (0, 1]" in c.left.get(i, "") for i in range(n)), c.left


@pytest.mark.parametrize(("n", "phase"), [(4, "seed"), (7, "seed"), (4, "sketch"), (7, "sketch")])
def test_a_member_silent_from_the_seed_phase_aborts_the_validated_round_naming_it_and_the_next_round_opens(
        n: int, phase: str) -> None:
    """Red team B6. With t_v = f at N = 3f + 1 the seed phase needs every member's reveal (2t_v + 1 + f = N).
    A member that masks and then goes silent (before its seed reveal, or after it and before dealing its
    sketch) makes the round abort at that phase's deadline (the close is refused, the primary's `abort` needs
    only the deadline), the abort record on the ledger names the silent member, and the next round opens and
    collects its keys as usual. There the absent member counts as one of the f faulty members and is left
    out of the validation, whose phases then need 2t_v + 1 + f - 1 = 3f inputs (tests/unit/
    test_validated_liveness.py runs such rounds to the end)."""
    f, silent = (n - 1) // 3, 3
    c = Cluster(n, 60 + n, validate=True, rounds=2, validation_degree=f)
    rng = np.random.default_rng(n)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(n)})
    if phase == "seed":
        c.alive -= {silent}
    c.commit(c.tx("close", ["inputs"]))
    if phase == "sketch":
        c.alive -= {silent}
        c.commit(c.tx("close", ["seed"]))
    contract = c.contracts[0]
    with pytest.raises(rc.TxError, match=f"phase {phase} has {3 * f} inputs, needs {3 * f + 1}"):
        contract.check_block(Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*c.mempool, c.tx("close", [phase]))))
    abort = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*c.mempool, c.tx("abort", [f"too few members in phase {phase}"])))
    assert contract.check_block(abort) == [rc.DeadlineCheck(1, phase)]
    c.commit(c.tx("abort", [f"too few members in phase {phase}"]))
    outcome = contract.state.outcomes[-1]
    assert (outcome.round, outcome.committed, outcome.missing) == (1, False, (silent,))
    assert not contract.state.open and not contract.finished and contract.state.absent == (silent,)
    c.commit(c.tx("open", [b"\x00" * 32, list(range(n))], round_id=2))
    assert (contract.state.round, contract.state.open, contract.state.phase) == (2, True, "keys")
    for key_phase in ("keys", "shares"):  # the absent member is not waited for: no deadline needed
        close = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*c.mempool, c.tx("close", [key_phase], round_id=2)))
        assert contract.check_block(close) == []
        c.commit(c.tx("close", [key_phase], round_id=2))
    assert contract.state.u1 == tuple(sorted(c.alive)) and contract.state.phase == "inputs"
    for i in sorted(c.alive):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(rng.normal(0, 0.3, L), 50)))
    c.commit(c.tx("close", ["inputs"], round_id=2))
    assert contract.state.phase == "seed" and silent not in contract.state.expected
    assert contract.state.excluded == (silent,) and contract.min_inputs("seed") == 3 * f
    close = Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*c.mempool, c.tx("close", ["seed"], round_id=2)))
    assert contract.check_block(close) == [], "round 2 counts the absent member among f: 3f reveals, no deadline"


def test_five_hospitals_tolerate_one_offline_in_validated_rounds() -> None:
    """N = 3f + 1 + e tolerates e silent members in validated rounds: at N = 5 (f = 1, t_v = 1) the seed and
    validate phases need 2t_v + 1 + f = 4 of the 5, so a member silent after masking leaves the round (its
    update is not summed) and the other four commit it."""
    n, silent = 5, 3
    c = Cluster(n, 65, validate=True, validation_degree=1)
    rng = np.random.default_rng(65)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    c.alive -= {silent}
    check = c.publish_statistics()
    assert check.candidates == (0, 1, 2, 4) and [a for a, _ in check.published] == [0, 1, 2, 4]
    outcome = decide_accepted(check, c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=True)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)


def test_a_reveal_counts_only_once_committed_so_a_gossiped_one_cannot_stand_in_for_the_ledgers() -> None:
    """A member can sign two reveals (here: its own, and one without its share of member 0's seed) and gossip one
    while the ledger commits the other; a node holding the gossiped one first would unmask from other shares than
    the rest (red team rt2-1's split). `SecureRound.on_message` ignores reveals: only committed ones count."""
    n = 4
    c = Cluster(n, 12)
    rng = np.random.default_rng(12)
    updates = {i: rng.normal(0, 0.3, L) for i in range(n)}
    c.mask_updates(updates)
    inputs = [raw for raw in c.mempool if c.contracts[0].tx_valid_now(c.contracts[0].parse(raw))]
    c.commit_block([*inputs, c.tx("close", ["inputs"])], 0)  # not `commit`: the reveals stay pending
    pending = {c.contracts[0].parse(raw).author: raw for raw in c.mempool if c.contracts[0].parse(raw).kind == "sa"}
    assert sorted(pending) == list(range(n))
    sr = c.rounds[0]
    own = sr.decode(c.contracts[0].parse(pending[1]).fields[0])  # type: ignore[arg-type]
    assert isinstance(own, sam.UnmaskShares)
    partial = dataclasses.replace(own, self_seed_shares=own.self_seed_shares[1:])
    partial = dataclasses.replace(partial, signature=c.sign(1)(signing_payload(CHAIN, partial.signed_body())))
    for author in (1, 2, 3):
        sr.on_message(sr.decode(c.contracts[0].parse(pending[author]).fields[0]))  # type: ignore[arg-type]
    sr.on_message(partial)
    assert not sr.enough_reveals and sr.try_sum(deadline_passed=False) is None, "nothing committed yet"
    c.commit_reveals()
    assert sr.violations == [], "the gossiped reveal was never held, so the committed one is no equivocation"
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in range(n)], axis=0)
    total = sr.try_sum(deadline_passed=sr.enough_reveals)
    assert total is not None and np.allclose(total, expected, atol=n / c.quant.scale)
