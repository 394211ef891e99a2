"""Poisoning attacks against plain FedAvg, plaintext robust references, and fednode's rule on what validation reveals.

For each benchmark, N in {7, 10} (f = 2, 3) and each attack of its last f nodes, trains for a few rounds
under five aggregations and reports the final test accuracy, the backdoor success rate, and for fednode
the rejections:

- ``fedavg``: plain FedAvg of the raw updates, weighted by sample count (no clipping, no rule);
- ``multi_krum``, ``trimmed_mean``, ``flame``: plaintext references (``ml.reference``), which see every
  update in the clear, as no node of a secure-aggregation consortium does;
- ``fednode``: what a validated secure round computes: every update is clipped to L2 ``CLIP_L2`` and
  weighted (``Weighting.vector``); the robust rule (``robust.consortium_rule(f)``, the genesis default) runs on the
  squared norms and pairwise squared distances of the count sketches (width ``SKETCH_WIDTH``, seed per
  round) of those vectors and the public weights, with each member's earlier rejections as its history;
  the accepted vectors are summed and applied (``apply_sum``). A round accepting fewer than N - f aborts
  and leaves the model unchanged, as the daemon's primary does. With ``--rule clip_factor=X`` (a per-round
  bound B, ``ml.robust.next_clip_bound``, carried on the daemon's ledger in each accept) every member, attackers
  included as they run the same pipeline, clips its update to B before weighting, the omniscient attackers
  see the clipped honest updates, and the rule rejects a longer one outright. By default the statistics are computed in
  the clear from the sketches (fast; shares and quantization change them by rounding only); with
  ``--protocol`` every fednode round runs the real secure round with validation on shares in one process
  (``ProtocolRound``: contracts, SecureRounds, hand-built blocks), which is slower.

Benchmarks (``BENCHMARKS``): breast cancer (logistic regression), scikit-learn's digits (an MLP with 32
hidden units, 2,410 parameters; the benchmark where poisoning hurts), and ACTG 175 with its natural split
(sites = treatment arm x stratum, an MLP), used for the honest false-rejection rate. Malicious nodes run
``ml.attacks.malicious_train``; ``backdoor-diluted`` submits its clean update plus half of the backdoor's
difference from it (aimed at the persistence tier); the adaptive attacks (``backdoor-median``: the backdoor
rescaled to the median honest norm; ALIE, min-max, rule-aware) are omniscient: they get the honest updates of
the round (the papers' strongest setting; under secure aggregation a real attacker only has estimates from its
own rows), and ``rule-aware`` knows fednode's rule and thresholds.

    python scripts/evaluate_attacks.py [--benchmarks digits,breast_cancer] [--seeds 0,1] [--nodes 7,10]
        [--jobs 2] [--quick] [--protocol] [--rule clip_factor=1,norm_ratio=0] [--write-docs]
    # --write-docs also writes docs/attacks.md and docs/attacks.png
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import hashlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.block import Block
from ml import robust
from ml.attacks import (
    Attack,
    AttackContext,
    Backdoor,
    DilutedBackdoor,
    MedianNormBackdoor,
    NoAttack,
    backdoor_success_rate,
    make_attack,
    malicious_train,
)
from ml.data import DatasetSpec, SplitSpec, node_data
from ml.models import ModelSpec
from ml.params import initial_params
from ml.reference import REFERENCES
from ml.robust import AngleHistory, Decision, RobustRule, decide, next_clip_bound
from ml.simulation import train_seed
from ml.train import TrainConfig, evaluate, local_train
from node import contract as rc
from node.contract_tx import clip_bound_micro
from node.secure_round import (
    SecureRound,
    SendShares,
    SendSketchSum,
    SubmitTx,
    ValidationSetup,
    Weighting,
    apply_sum,
    decide_accepted,
    quant_params,
)
from smpc.prg import SeededRandomBytes
from smpc.quantize import clip_l2
from smpc.sketch import CountSketch
from smpc.validation import SketchParams

ATTACKS = ("sign-flip", "scaling", "gaussian", "label-flip", "backdoor", "backdoor-median", "backdoor-diluted", "alie",
           "min-max", "rule-aware")
ADAPTIVE = ("backdoor-median", "alie", "min-max", "rule-aware")
BACKDOORS = ("backdoor", "backdoor-median", "backdoor-diluted")
SETTINGS = ("fedavg", "multi_krum", "trimmed_mean", "flame", "fednode")
ROOT = Path(__file__).resolve().parent.parent
CHAIN = hashlib.sha256(b"fednode attack evaluation").digest()

# The daemon's defaults (node/settings.py round_settings, node/testnet.py build_genesis).
CLIP_L2 = 10.0
SAMPLE_CAP = 1000
SKETCH_WIDTH = 1000
VALIDATION_DEGREE = 1


def max_faulty(n: int) -> int:
    """f for N = 3f + 1 (PBFT), as genesis sets it."""
    return (n - 1) // 3


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A dataset with its model, local training and number of rounds, and the splits it is measured on."""

    dataset: str
    model: str
    hidden: int
    training: TrainConfig
    rounds: int
    splits: tuple[str, ...]
    backdoor: Backdoor = field(default_factory=Backdoor)


BENCHMARKS = {
    "breast_cancer": Benchmark("breast_cancer", "logreg", 1, TrainConfig(), 8, ("iid", "dirichlet")),
    "digits": Benchmark("digits", "mlp", 32, TrainConfig(lr=0.3), 10, ("iid", "dirichlet"),
                        Backdoor(features=(0, 7, 56, 63), trigger_value=8.0, target=0)),
    "actg175": Benchmark("actg175", "mlp", 16, TrainConfig(lr=0.1), 8, ("natural",)),
}
"""Digits' backdoor stamps the four corner pixels (always near 0 in clean digits) and targets class 0."""


def split_spec(kind: str) -> SplitSpec:
    """``natural`` is ACTG 175's column split by site; the others are ``ml.data`` splits (Dirichlet alpha 0.5)."""
    return SplitSpec(kind="column", column="site") if kind == "natural" else SplitSpec(kind=kind, alpha=0.5)


class ProtocolRound:
    """One secure round of n nodes in one process: contracts, SecureRounds, hand-built blocks.

    Every output a node emits is delivered at once to every other node, as the daemon's gossip and
    direct streams would, so the round runs the real masking, sketch sharing, statistics on shares,
    accepted-set decision and unmasking; only networking and consensus are replaced by direct calls.
    Node 0 unmasks the sum (every node could; tests/unit/test_secure_round.py checks that they agree).
    """

    def __init__(self, n: int, validate: bool, seed: int, rule: RobustRule | None = None) -> None:
        f = max_faulty(n)
        self.n = n
        self.keys = [SigningKey(hashlib.sha256(b"key %d %d" % (seed, i)).digest()) for i in range(n)]
        self.weighting = Weighting(clip_l2=CLIP_L2, sample_cap=SAMPLE_CAP)
        self.setup = ValidationSetup(VALIDATION_DEGREE, SketchParams.for_clip(self.weighting.total_bound, SKETCH_WIDTH),
                                     rule or robust.consortium_rule(f)) if validate else None
        self.quant = quant_params(self.weighting, n, self.setup.sketch if self.setup is not None else None)
        bounded = self.setup is not None and self.setup.rule.clip_factor > 0
        self.clip_bound_micro = clip_bound_micro(CLIP_L2) if bounded else 0
        """The round's per-round bound B on the ledger (C in the first round, then each accept's next bound); 0: none."""
        # As the daemon's genesis settings (`node.settings.round_settings`): B starts at C, and alpha for the blame.
        self.params = rc.ContractParams(CHAIN, n, rounds=1, initial_model_hash=b"\x00" * 32,
                                        min_updates=2 * f + 1, secure=True, degree=n - f - 1,
                                        vector_length=1, validate=validate,
                                        validation_degree=VALIDATION_DEGREE, sketch_width=SKETCH_WIDTH,
                                        clip_bound_micro=self.clip_bound_micro,
                                        sketch_scale_ratio=self.setup.sketch.scale / self.quant.scale
                                        if self.setup is not None else 0.0)
        self.seed = seed
        self.rejections: dict[int, int] = {}
        """Rejections per member over the rounds run so far: each round has its own contract, so the
        ledger's count (which the rule uses to rank flagged members) is carried from one to the next."""
        self._verified: dict[tuple[int, bytes, bytes], bool] = {}

    def verify(self, i: int, data: bytes, sig: bytes) -> bool:
        """Ed25519 verification, remembered: the n in-process contracts all check the same signatures."""
        key = (i, data, sig)
        if key not in self._verified:
            try:
                self.keys[i].verify_key.verify(data, sig)
                self._verified[key] = True
            except Exception:  # noqa: BLE001 - a reference verifier treats every failure as invalid
                self._verified[key] = False
        return self._verified[key]

    def sign(self, i: int):  # type: ignore[no-untyped-def]
        return lambda data: self.keys[i].sign(data).signature

    def run(self, vectors: Sequence[np.ndarray], round_id: int) -> tuple[np.ndarray | None, tuple[int, ...]]:
        """The unmasked sum of the accepted weighted vectors (None: the round aborts), and the rejected indices.

        Like the daemon's primary, the round aborts when the rule accepts fewer than the contract's
        minimum (max(min_updates, t+1)); the global model then stays as it was.
        """
        params = dataclasses.replace(self.params, vector_length=len(vectors[0]))
        state = _RoundState(self, params, round_id)
        state.commit(state.tx("open", [b"\x00" * 32, list(range(self.n))]))
        state.commit(state.tx("close", ["keys"]))
        state.commit(state.tx("close", ["shares"]))
        for i in range(self.n):
            state.emit(i, state.rounds[i].set_update(vectors[i]))
        state.commit(state.tx("close", ["inputs"]))
        rejected: tuple[int, ...] = ()
        if self.setup is not None:
            state.commit(state.tx("close", ["seed"]))
            state.commit(state.tx("close", ["sketch"]))
            contract = state.contracts[0]
            state.commit()
            outcome = decide_accepted(contract.validation_check(None), self.setup, self.quant)
            rejected = tuple(sorted(outcome.rejected))
            if len(outcome.accepted) < contract.min_members:
                return None, rejected
            state.commit(state.tx("accept", outcome.accept_fields()))
            self.rejections = dict(contract.state.rejections)
            self.clip_bound_micro = contract.state.next_clip_bound_micro or self.clip_bound_micro
        state.commit()  # the reveals, unmask-phase transactions
        self._verified.clear()
        total = state.rounds[0].try_sum(deadline_passed=False)
        assert total is not None, "every node is alive and honest as a protocol party: node 0 must unmask"
        return total, rejected


class _RoundState:
    """The mutable part of one round: contracts, SecureRounds, mempool and block height."""

    def __init__(self, owner: ProtocolRound, params: rc.ContractParams, round_id: int) -> None:
        self.owner, self.params, self.round_id = owner, params, round_id
        self.contracts = [rc.Contract(params, owner.verify) for _ in range(owner.n)]
        for contract in self.contracts:
            contract.state.rejections = dict(owner.rejections)
            contract.state.clip_bound_micro = owner.clip_bound_micro
        self.rounds: dict[int, SecureRound] = {}
        self.mempool: list[bytes] = []
        self.height = 0

    def tx(self, kind: str, fields: list[object]) -> bytes:
        return rc.make_tx(CHAIN, kind, 0, 1, fields, self.owner.sign(0))

    def emit(self, sender: int, outputs: list) -> None:  # type: ignore[type-arg]
        for out in outputs:
            if isinstance(out, SendShares):
                self.emit(out.to, self.rounds[out.to].on_sketch_shares(sender, out.payload))
            elif isinstance(out, SubmitTx):
                self.mempool.append(out.raw)
            elif isinstance(out, SendSketchSum):
                for j in set(range(self.owner.n)) - {sender}:
                    self.rounds[j].on_sketch_sum(sender, out.payload)
            else:
                for j in set(range(self.owner.n)) - {sender}:
                    self.rounds[j].on_message(self.rounds[j].decode(out.message))

    def commit(self, *extra: bytes) -> None:
        contract = self.contracts[0]
        txs = [raw for raw in self.mempool if contract.tx_valid_now(contract.parse(raw))] + list(extra)
        self.mempool = [raw for raw in self.mempool if raw not in txs]
        self.height += 1
        block = Block(CHAIN, self.height, CHAIN, 0, 0, tuple(txs))
        contract.check_block(block)
        for i in range(self.owner.n):
            for event in self.contracts[i].apply_block(block):
                self.on_event(i, event)

    def on_event(self, i: int, event: rc.Event) -> None:
        if isinstance(event, rc.RoundOpened):
            rand = SeededRandomBytes(hashlib.sha256(b"rand %d %d %d" % (self.owner.seed, self.round_id, i)).digest())
            self.rounds[i] = SecureRound(self.params, event, i, self.owner.sign(i), self.owner.verify, rand,
                                         self.owner.quant, self.owner.setup)
            self.emit(i, self.rounds[i].start())
        elif isinstance(event, rc.SecAggCommitted):
            self.rounds[i].on_committed(event)
        elif isinstance(event, rc.PhaseClosed):
            self.emit(i, self.rounds[i].on_phase_closed(event))



@dataclass(frozen=True, slots=True)
class Scenario:
    """One federation: benchmark, N nodes, the attack of its last f nodes ("none": all honest), split, seed."""

    benchmark: str
    n: int
    attack: str
    split: str
    seed: int
    rule: RobustRule | None = None
    rounds: int | None = None
    """None: the benchmark's number of rounds."""
    rule_changes: tuple[tuple[str, float], ...] = ()
    """Fields of the default rule changed for this run (``--rule``), when ``rule`` is None."""

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def malicious(self) -> tuple[int, ...]:
        return () if self.attack == "none" else tuple(range(self.n - self.f, self.n))

    @property
    def fednode_rule(self) -> RobustRule:
        if self.rule is not None:
            return self.rule
        return robust.consortium_rule(self.f, dict(self.rule_changes))


@dataclass(slots=True)
class RunResult:
    """Final accuracy, backdoor success rate of the benchmark's trigger, and rejections in every round."""

    accuracy: float
    backdoor_rate: float
    n: int
    malicious: tuple[int, ...] = ()
    aborted: int = 0
    rejected_per_round: list[tuple[int, ...]] = field(default_factory=list)

    def rejected_share(self, honest: bool) -> tuple[int, int]:
        """(rejected, total) updates of honest or of malicious members over all rounds."""
        members = [i for i in range(self.n) if (i not in self.malicious) == honest]
        rejected = sum(1 for rejected in self.rejected_per_round for i in rejected if i in members)
        return rejected, len(members) * len(self.rejected_per_round)

    def worst_honest_site(self) -> float:
        """The largest share of rounds in which one honest member was rejected (per-site fairness)."""
        rounds = max(1, len(self.rejected_per_round))
        counts = [sum(1 for rejected in self.rejected_per_round if i in rejected)
                  for i in range(self.n) if i not in self.malicious]
        return max(counts, default=0) / rounds


class Federation:
    """The data, model and attack of one scenario, and the honest and malicious updates of a round."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.bench = BENCHMARKS[scenario.benchmark]
        dataset = DatasetSpec(name=self.bench.dataset, seed=scenario.seed)
        self.nodes = [node_data(dataset, split_spec(scenario.split), scenario.n, i) for i in range(scenario.n)]
        n_classes = int(max(int(local.y_train.max()) for local in self.nodes)) + 1
        self.model = ModelSpec(kind=self.bench.model, n_features=self.nodes[0].X_train.shape[1], n_classes=n_classes,
                               hidden=self.bench.hidden)
        self.attack = self._attack()
        self.samples = [len(local.y_train) for local in self.nodes]

    def _attack(self) -> Attack:
        name = self.scenario.attack
        if name == "none":
            return NoAttack()
        if name == "backdoor":
            return self.bench.backdoor
        if name in ("backdoor-median", "backdoor-diluted"):
            return {"backdoor-median": MedianNormBackdoor, "backdoor-diluted": DilutedBackdoor}[name](
                **dataclasses.asdict(self.bench.backdoor))
        if name == "rule-aware":
            return make_attack(name, rule=self.scenario.fednode_rule)
        return make_attack(name)

    def updates(self, global_vec: np.ndarray, round_id: int, bound: float | None = None,
                angles: list[AngleHistory] | None = None) -> list[np.ndarray]:
        """Every node's update of this round: honest training, then the attackers' (which may read the honest
        ones, as fednode's members submit them: clipped to the round's bound ``bound`` when there is one, and
        the ledger's ``angles``, the persistence tier's history, ordered as the honest updates then the colluders)."""
        s = self.scenario
        updates: dict[int, np.ndarray] = {}
        for i, local in enumerate(self.nodes):
            if i not in s.malicious:
                seed = train_seed(s.seed, round_id, i)
                updates[i] = local_train(self.model, global_vec, local.X_train, local.y_train, self.bench.training,
                                         seed).update
        honest = np.stack([u if bound is None else clip_l2(u, bound) for u in updates.values()])
        ordered = None if angles is None else tuple(angles[i] for i in [*updates, *s.malicious])
        for i in s.malicious:
            updates[i] = self._malicious(global_vec, round_id, i, honest, bound, ordered)
        return [updates[i] for i in range(s.n)]

    def _malicious(self, global_vec: np.ndarray, round_id: int, node: int, honest: np.ndarray,
                   bound: float | None, angles: tuple[AngleHistory, ...] | None) -> np.ndarray:
        s = self.scenario
        local = self.nodes[node]
        ctx = AttackContext(round=round_id, node_index=node, n_nodes=s.n,
                            rng=np.random.default_rng([s.seed, round_id, node]), global_params=global_vec,
                            n_malicious=len(s.malicious), n_classes=self.model.n_classes,
                            benign_updates=honest if s.attack in ADAPTIVE else None, clip_bound=bound,
                            angle_history=angles)
        return malicious_train(self.attack, self.model, global_vec, local.X_train, local.y_train, self.bench.training,
                               train_seed(s.seed, round_id, node), ctx).update

    def result(self, global_vec: np.ndarray) -> RunResult:
        test = self.nodes[0]
        accuracy = evaluate(self.model, global_vec, test.X_test, test.y_test).accuracy
        backdoor = backdoor_success_rate(self.bench.backdoor, self.model, global_vec, test.X_test, test.y_test)
        return RunResult(accuracy, backdoor, self.scenario.n, self.scenario.malicious)


def run(scenario: Scenario, setting: str, protocol: bool = False) -> RunResult:
    """Train the benchmark's rounds with aggregation ``setting`` and evaluate on the shared test split."""
    fed = Federation(scenario)
    global_vec = initial_params(fed.model, scenario.seed)
    fednode = FednodeAggregator(scenario, protocol) if setting == "fednode" else None
    rejected_per_round, aborted = [], 0
    for round_id in range(1, (scenario.rounds or fed.bench.rounds) + 1):
        updates = fed.updates(global_vec, round_id, *((fednode.clip_bound, fednode.angles) if fednode else (None, None)))
        if fednode is not None:
            new_vec, rejected = fednode.round(global_vec, updates, fed.samples, round_id)
            aborted += new_vec is None
            global_vec = global_vec if new_vec is None else new_vec
        else:
            aggregate, kept = _reference(setting, updates, fed.samples, scenario, round_id)
            global_vec = (global_vec.astype(np.float64) + aggregate).astype(np.float32)
            rejected = tuple(i for i in range(scenario.n) if i not in set(kept.tolist()))
        rejected_per_round.append(rejected)
    result = fed.result(global_vec)
    result.rejected_per_round, result.aborted = rejected_per_round, aborted
    return result


def _reference(setting: str, updates: list[np.ndarray], samples: list[int], scenario: Scenario,
               round_id: int) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack(updates).astype(np.float64)
    weights = np.asarray(samples, dtype=np.float64)
    if setting == "flame":
        return REFERENCES[setting](stacked, weights, scenario.f, seed=scenario.seed * 1000 + round_id)
    return REFERENCES[setting](stacked, weights, scenario.f)


class FednodeAggregator:
    """One validated secure round per call: clip and weight, the rule on sketch statistics, sum the accepted."""

    def __init__(self, scenario: Scenario, protocol: bool) -> None:
        self.scenario = scenario
        self.rule = scenario.fednode_rule
        self.weighting = Weighting(clip_l2=CLIP_L2, sample_cap=SAMPLE_CAP)
        self.protocol = ProtocolRound(scenario.n, True, scenario.seed, self.rule) if protocol else None
        self.history = [0] * scenario.n
        self.angles = [AngleHistory()] * scenario.n
        """Each member's angular ratios so far (the persistence tier's history), folded when a round is accepted."""
        self.clip_bound: float | None = CLIP_L2 if self.rule.clip_factor > 0 else None
        """The round's per-sample bound B (the ledger's, `next_clip_bound`); None: members clip to C alone."""

    def round(self, global_vec: np.ndarray, updates: list[np.ndarray], samples: list[int],
              round_id: int) -> tuple[np.ndarray | None, tuple[int, ...]]:
        """The new global model (None: the round aborted) and the rejected members."""
        vectors = [self.weighting.vector(u, s, self.clip_bound) for u, s in zip(updates, samples, strict=True)]
        if self.protocol is not None:
            total, rejected = self.protocol.run(vectors, round_id)
            self.clip_bound = rc.clip_bound_value(self.protocol.clip_bound_micro)
            return (None if total is None else apply_sum(global_vec, total)), rejected
        decision = self.decision(np.stack(vectors), round_id)
        accepted = decision.accepted
        rejected = tuple(i for i in range(len(vectors)) if i not in accepted)
        for i in rejected:
            self.history[i] += 1
        if len(accepted) < self.scenario.n - self.scenario.f:
            return None, rejected
        for i, (angle, clique) in decision.angles.items():
            self.angles[i] = self.angles[i].after(angle, clique)
        if self.clip_bound is not None:
            self.clip_bound = next_clip_bound(self.rule, self.clip_bound, CLIP_L2, decision)
        return apply_sum(global_vec, np.sum([vectors[i] for i in accepted], axis=0)), rejected

    def decision(self, vectors: np.ndarray, round_id: int) -> Decision:
        """The rule's decision on the count-sketch statistics of the weighted vectors (weight coordinate left out)."""
        seed = hashlib.sha256(CHAIN + b"sketch %d %d" % (self.scenario.seed, round_id)).digest()
        sketch = CountSketch(seed, vectors.shape[1] - 1, SKETCH_WIDTH)
        z = np.stack([sketch.apply(v[:-1]) for v in vectors])
        sq_norms = (z**2).sum(axis=1)
        sq_dists = ((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=2)
        return decide(self.rule, sq_norms, sq_dists, vectors[:, -1], list(self.history), self.clip_bound,
                      list(self.angles))


@dataclass(frozen=True, slots=True)
class Grid:
    benchmarks: tuple[str, ...]
    nodes: tuple[int, ...]
    attacks: tuple[str, ...]
    seeds: tuple[int, ...]
    protocol: bool = False
    rounds: int | None = None
    """None: each benchmark's number of rounds."""
    rule_changes: tuple[tuple[str, float], ...] = ()
    """Fields of fednode's default rule changed (``--rule``)."""


FULL = Grid(benchmarks=("digits", "breast_cancer", "actg175"), nodes=(7, 10), attacks=ATTACKS, seeds=(0, 1))
QUICK = Grid(benchmarks=("digits", "actg175"), nodes=(4,), attacks=("sign-flip", "backdoor", "rule-aware"), seeds=(0,),
             rounds=4)

Key = tuple[str, str, int, str, str]
"""(benchmark, split, n, attack, setting)."""
Results = dict[Key, list[RunResult]]


def grid_keys(grid: Grid) -> list[Key]:
    """Every (attack, N, setting) on each benchmark's first split, plus fednode and FedAvg without attack on
    every split (ACTG 175 only without attack: its label is hard to predict, so it measures false rejections)."""
    keys: list[Key] = []
    for bench in grid.benchmarks:
        splits = BENCHMARKS[bench].splits
        attacks = ("none", *grid.attacks) if bench != "actg175" else ("none",)
        keys += [(bench, splits[0], n, a, s) for n in grid.nodes for a in attacks for s in SETTINGS]
        keys += [(bench, split, n, "none", s) for split in splits[1:] for n in grid.nodes for s in ("fedavg", "fednode")]
    return keys


def evaluate_grid(grid: Grid, jobs: int = 1) -> Results:
    """Every key of ``grid_keys`` for every seed. Runs are independent, so ``jobs`` worker processes share
    them; every run is seeded, so the results do not depend on ``jobs``."""
    keys = grid_keys(grid)
    tasks = [(key, Scenario(key[0], key[2], key[3], key[1], seed, rounds=grid.rounds, rule_changes=grid.rule_changes))
             for key in keys
             for seed in grid.seeds]
    results: Results = {key: [] for key in keys}
    began = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        outcomes = pool.map(_run_task, [(scenario, key[4], grid.protocol) for key, scenario in tasks])
        for k, ((key, scenario), result) in enumerate(zip(tasks, outcomes, strict=True), 1):
            results[key].append(result)
            print(f"[{k}/{len(tasks)} {time.monotonic() - began:6.1f}s] {' '.join(map(str, key))} seed {scenario.seed}: "
                  f"accuracy {result.accuracy:.3f}, backdoor {result.backdoor_rate:.2f}, "
                  f"rejected {result.rejected_per_round}", file=sys.stderr, flush=True)
    return results


def _run_task(task: tuple[Scenario, str, bool]) -> RunResult:
    return run(*task)


def _acc(rs: list[RunResult]) -> str:
    accs = [r.accuracy for r in rs]
    return f"{100 * statistics.mean(accs):.1f} ({100 * min(accs):.1f})"


def _bd(rs: list[RunResult]) -> str:
    rates = [r.backdoor_rate for r in rs]
    return f"{100 * statistics.mean(rates):.0f} ({100 * max(rates):.0f})"


def _share(rs: list[RunResult], honest: bool) -> str:
    parts = [r.rejected_share(honest) for r in rs]
    whole = sum(total for _, total in parts)
    return f"{100 * sum(part for part, _ in parts) / whole:.1f}" if whole else "-"


SETTING_TITLES = {"fedavg": "FedAvg", "multi_krum": "Multi-Krum", "trimmed_mean": "trimmed mean", "flame": "FLAME",
                  "fednode": "fednode"}


def attack_table(results: Results, grid: Grid, bench: str) -> str:
    """Accuracy per attack and setting on the benchmark's first split, fednode's rejections, backdoor success."""
    split = BENCHMARKS[bench].splits[0]
    accs = " | ".join(f"{SETTING_TITLES[s]} acc %" for s in SETTINGS)
    lines = [(f"| attack | N | malicious | {accs} | fednode attackers rejected % | fednode honest rejected % | "
             f"fednode aborted | backdoor success % {' / '.join(SETTING_TITLES[s] for s in SETTINGS)} |"),
             "|---" * (8 + len(SETTINGS)) + "|"]
    for n in grid.nodes:
        for attack in ("none", *grid.attacks):
            rs = {s: results[(bench, split, n, attack, s)] for s in SETTINGS}
            node = rs["fednode"]
            count = 0 if attack == "none" else max_faulty(n)
            bd = " / ".join(_bd(rs[s]) for s in SETTINGS) if attack in ("none", *BACKDOORS) else ""
            lines.append(f"| {attack} | {n} | {count} | {' | '.join(_acc(rs[s]) for s in SETTINGS)} | "
                         f"{_share(node, honest=False)} | {_share(node, honest=True)} | "
                         f"{sum(r.aborted for r in node)} | {bd} |")
    return "\n".join(lines)


def rejection_table(results: Results, grid: Grid) -> str:
    """Without attackers, per benchmark and split: accuracy of FedAvg and fednode, fednode's honest
    false-rejection rate and per-site fairness (the largest share of rounds one honest site was rejected)."""
    lines = [("| benchmark | split | N | FedAvg acc % | fednode acc % | honest rejected % (mean, worst seed) | "
             "worst site: share of rounds rejected % (mean, worst seed) | aborted |"), "|---" * 8 + "|"]
    for bench in grid.benchmarks:
        for split in BENCHMARKS[bench].splits:
            for n in grid.nodes:
                fedavg, node = results[(bench, split, n, "none", "fedavg")], results[(bench, split, n, "none", "fednode")]
                rates = [r.rejected_share(True)[0] / r.rejected_share(True)[1] for r in node]
                worst = [r.worst_honest_site() for r in node]
                lines.append(f"| {bench} | {SPLIT_TITLES[split]} | {n} | {_acc(fedavg)} | {_acc(node)} | "
                             f"{100 * statistics.mean(rates):.1f} ({100 * max(rates):.1f}) | "
                             f"{100 * statistics.mean(worst):.0f} ({100 * max(worst):.0f}) | "
                             f"{sum(r.aborted for r in node)} |")
    return "\n".join(lines)


SPLIT_TITLES = {"iid": "IID", "dirichlet": "Dirichlet(0.5)", "natural": "natural (arm x stratum)"}


def _mean_accuracy(rs: list[RunResult]) -> float:
    return statistics.mean(r.accuracy for r in rs)


def targets(results: Results, grid: Grid, bench: str) -> str:
    """Issue 16's targets on a benchmark, per N: fednode's largest loss against its clean run over the
    attacks, its largest backdoor success, and FedAvg's largest loss (all means over seeds)."""
    split = BENCHMARKS[bench].splits[0]
    lines = []
    for n in grid.nodes:
        drops, fedavg = ({a: 100 * (_mean_accuracy(results[(bench, split, n, "none", s)])
                                    - _mean_accuracy(results[(bench, split, n, a, s)])) for a in grid.attacks}
                         for s in ("fednode", "fedavg"))
        worst = max(drops, key=lambda a: drops[a])
        bd = max((r.backdoor_rate for a in BACKDOORS for r in results.get((bench, split, n, a, "fednode"), [])),
                 default=0.0)
        lines.append(f"- N = {n}: fednode's largest loss against its clean run {drops[worst]:.1f} points ({worst}); "
                     f"attacks within 2 points: {sum(d <= 2.0 for d in drops.values())} of {len(drops)}; backdoor "
                     f"success worst seed {100 * bd:.0f}%; FedAvg's largest loss {max(fedavg.values()):.1f} points "
                     f"({max(fedavg, key=lambda a: fedavg[a])}).")
    return "\n".join(lines)


def report(results: Results, grid: Grid) -> str:
    """The markdown of every table."""
    parts = []
    for bench in grid.benchmarks:
        if bench == "actg175":
            continue
        b = BENCHMARKS[bench]
        parts += [(f"### {bench}: {b.model}{f' ({b.hidden} hidden)' if b.model == 'mlp' else ''}, {b.rounds} rounds, "
                  f"{SPLIT_TITLES[b.splits[0]]}"), "", attack_table(results, grid, bench), "",
                  targets(results, grid, bench), ""]
    parts += ["### No attacker: honest false rejections and per-site fairness", "", rejection_table(results, grid)]
    return "\n".join(parts)


def plot(results: Results, grid: Grid, path: Path) -> None:
    """Grouped bars of mean final accuracy per attack and setting, one panel per attacked benchmark and N
    (dots: worst seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(b, n) for b in grid.benchmarks if b != "actg175" for n in grid.nodes]
    attacks = ("none", *grid.attacks)
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.2 * len(panels)), squeeze=False)
    x = np.arange(len(attacks))
    width = 0.8 / len(SETTINGS)
    for ax, (bench, n) in zip(axes[:, 0], panels, strict=True):
        split = BENCHMARKS[bench].splits[0]
        for k, setting in enumerate(SETTINGS):
            accs = [[r.accuracy for r in results[(bench, split, n, a, setting)]] for a in attacks]
            offset = (k - (len(SETTINGS) - 1) / 2) * width
            ax.bar(x + offset, [100 * statistics.mean(a) for a in accs], width, label=SETTING_TITLES[setting])
            ax.plot(x + offset, [100 * min(a) for a in accs], "k.", markersize=3)
        ax.set_xticks(x, [a if a == "none" else f"{a}\n({max_faulty(n)} malicious)" for a in attacks], fontsize=8)
        ax.set_ylabel("final test accuracy %")
        ax.set_ylim(40, 100)
        ax.set_title(f"{bench}, N = {n}, f = {max_faulty(n)}, {SPLIT_TITLES[split]}")
        ax.legend(loc="lower left", fontsize=7, ncol=len(SETTINGS))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", default=None, help="comma-separated (default digits,breast_cancer,actg175)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1)")
    parser.add_argument("--nodes", default=None, help="comma-separated N values (default 7,10)")
    parser.add_argument("--quick", action="store_true", help="tiny run: digits and ACTG 175, N=4, 4 rounds, 1 seed, 3 attacks")
    parser.add_argument("--protocol", action="store_true", help="fednode through the real secure round (slow)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--rule", default="", type=rule_changes,
                        help="fields of fednode's default rule to change, e.g. clip_factor=1,norm_ratio=0")
    parser.add_argument("--write-docs", action="store_true", help="write docs/attacks.md and docs/attacks.png")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    grid = Grid(benchmarks=tuple(args.benchmarks.split(",")) if args.benchmarks else base.benchmarks,
                nodes=tuple(int(v) for v in args.nodes.split(",")) if args.nodes else base.nodes,
                attacks=base.attacks,
                seeds=tuple(int(v) for v in args.seeds.split(",")) if args.seeds else base.seeds,
                protocol=args.protocol, rounds=base.rounds, rule_changes=args.rule)
    began = time.monotonic()
    results = evaluate_grid(grid, args.jobs)
    text = report(results, grid)
    print(text)
    if args.write_docs:
        command = "python scripts/evaluate_attacks.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_docs(args.docs_dir, text, grid, command.strip(), time.monotonic() - began)
        plot(results, grid, args.docs_dir / "attacks.png")
    return 0


def rule_changes(text: str) -> tuple[tuple[str, float], ...]:
    """``--rule`` as (field, value) pairs: ``clip_factor=1,norm_ratio=0`` (`ml.robust.rule_changes`)."""
    try:
        return tuple(robust.rule_changes(text).items())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def write_docs(docs: Path, text: str, grid: Grid, command: str, elapsed_s: float) -> None:
    """docs/attacks.md: how the numbers were made and the tables; an existing "## Reading" section is kept."""
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rule = robust.consortium_rule(1, dict(grid.rule_changes))
    bound = f", per-round bound B = {rule.clip_factor} x the previous round's median accepted norm" \
        if rule.clip_factor > 0 else ""
    if rule.persistence_ratio > 0:
        bound += (f", persistence tier: persistence_ratio {rule.persistence_ratio}, clique_ratio "
                  f"{rule.clique_ratio}, from round {rule.persistence_rounds}")
    header = (f"# Poisoning attacks: FedAvg, plaintext robust aggregators, and fednode's rule\n\n"
              f"Generated by `{command}` on {date} ({elapsed_s:.0f} s). Seeds {', '.join(map(str, grid.seeds))}; "
              f"accuracy is the mean over seeds with the worst seed in parentheses (backdoor success: mean, worst "
              f"seed). The last f = (N-1)//3 node indices are malicious; the `none` row is the clean run of every "
              f"setting, i.e. each rule's accuracy without attacker against plain FedAvg. fednode: clip L2 "
              f"{CLIP_L2}, sample cap {SAMPLE_CAP}, rule `{rule.kind}` (norm_ratio {rule.norm_ratio}, "
              f"distance_ratio {rule.distance_ratio}, spread_power {rule.spread_power}{bound}) on count-sketch statistics "
              f"(width {SKETCH_WIDTH}) of the weighted vectors and the public weights, "
              f"{'through the real secure round' if grid.protocol else 'computed in the clear from the sketches'}; "
              f"a round accepting fewer than N-f aborts and leaves the model unchanged. The median-norm backdoor, "
              f"ALIE, min-max and rule-aware attackers are omniscient (they see the round's honest updates; rule-aware also knows "
              f"the rule and its thresholds). See the script's docstring for what each setting runs.\n\n"
              f"![accuracy per attack](attacks.png)\n\n")
    path = docs / "attacks.md"
    old = path.read_text() if path.exists() else ""
    reading = old[old.index(READING_TITLE):] if READING_TITLE in old else READING_TITLE + "\n\nNot written yet.\n"
    path.write_text(header + text + "\n\n" + reading)


READING_TITLE = "## Reading"


if __name__ == "__main__":
    raise SystemExit(main())
