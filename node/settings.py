"""What genesis fixes about rounds, read once at start-up, and the error for our own broken invariants.

Owns no state beyond the frozen `RoundSettings`. May import the config, the round contract and the
secure-round parameters; every component of the daemon reads its settings from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml.robust import RobustRule
from node import contract as rc
from node.config import ConfigError, Genesis
from node.contract_tx import clip_bound_micro
from node.learning import LearningPlan
from node.secure_round import ValidationSetup, Weighting, quant_params, validation_config_error
from smpc.blame import sums_cannot_wrap
from smpc.validation import SketchParams

WINDOWS = {"complaint": 1.0, "answer": 2.1}
"""The primary proposes a `complaint` (an `answer`) only while the validate phase is younger than this many
phase deadlines; a replica votes for one up to `WINDOW_SLACK` later (its clock started the phase a little
apart). While a complaint is unanswered, a replica votes for an abort from 0.8 x 4 = 3.2 deadlines on
(`rc.COMPLAINT_ABORT_DEADLINES`), and after answers only a deadline after the last one
(`rc.STATISTICS_AFTER_ANSWER_DEADLINES`), so a holder has a deadline to complain, a dealer at least a deadline
to answer a complaint committed as late as replicas allow, and a holder a deadline after its last answer to
publish or disclose a bad answer: each step outlasts censoring primaries whenever the deadline does
(docs/validation.md, G8)."""
WINDOW_SLACK = 0.05


class InvariantError(AssertionError):
    """Our own state is inconsistent: the node stops loudly rather than carry on wrong."""


def protocol_params(genesis: Genesis) -> dict[str, Any]:
    return genesis.section("protocol")


@dataclass(frozen=True)
class RoundSettings:
    """Everything about rounds that genesis fixes, with defaults."""

    contract: rc.ContractParams
    weighting: Weighting
    phase_deadline_s: float
    unmask_grace_s: float
    batch_window_s: float
    consensus_transport: str
    validation: ValidationSetup | None


def censorship_bound_s(f: int, view_timeout_ms: int, request_timeout_factor: int) -> float:
    """How long censoring primaries can keep an honest member's transaction out of the ledger, roughly: each is
    replaced once the transaction waited `request_timeout_factor` view timeouts (docs/consensus.md), the
    timeout doubles with each failed view, and up to f primaries in a row may be Byzantine; one doubling more
    for the new view to settle: factor * timeout * (2^(f+1) - 1). A member that missed a deadline longer than
    this was not merely censored, so it may count among the faulty (docs/validation.md, G7)."""
    return request_timeout_factor * view_timeout_ms / 1000 * (2 ** (f + 1) - 1)


def round_settings(genesis: Genesis, plan: LearningPlan) -> RoundSettings:
    proto = protocol_params(genesis)
    sa = genesis.section("secure_aggregation")
    degree = int(sa.get("degree", max(0, genesis.n - genesis.f - 1)))
    if not 0 <= degree < genesis.n:
        raise ConfigError(f"genesis: secure_aggregation.degree must be in [0, {genesis.n - 1}]")
    secure = bool(sa.get("enabled", True))
    if secure and degree < genesis.f:
        raise ConfigError(f"genesis: secure_aggregation.degree {degree} is below f = {genesis.f}: f colluders would "
                          f"hold degree + 1 shares of an honest member's mask secrets and read its update")
    val = genesis.section("validation")
    validation_degree = int(val.get("degree", max(1, genesis.f)))
    validate = secure and bool(val.get("enabled", False))
    width = int(val.get("sketch_width", 1000))
    if validate and (reason := validation_config_error(genesis.n, genesis.f, validation_degree, width)) is not None:
        raise ConfigError(f"genesis: {reason}")
    deadline_s = float(proto.get("phase_deadline_s", 30.0))
    censorship_s = censorship_bound_s(genesis.f, int(proto.get("view_timeout_ms", 2000)),
                                      int(proto.get("request_timeout_factor", 2)))
    weighting = Weighting(clip_l2=float(sa.get("clip_l2", 10.0)), sample_cap=int(sa.get("sample_cap", 1000)))
    try:
        sketch = SketchParams.for_clip(weighting.total_bound, width)
        quant = quant_params(weighting, genesis.n, sketch if validate else None)
        if validate and not sums_cannot_wrap(genesis.n, sketch, quant):
            raise ValueError(f"N = {genesis.n} members' sketch entries (M = {sketch.max_norm_fixed:.4g}) could wrap a "
                             f"blame's 32-bit bucket sums at any quantization: N (M + 1) / alpha >= 2^31")
        rule = RobustRule(**{"f": genesis.f, **val.get("rule", {})})
        if rule.persistence_ratio > 0:
            raise ValueError("validation.rule.persistence_ratio needs each member's history of direction statistics "
                             "on the ledger, which the daemon does not carry; scripts/evaluate_attacks.py measures it")
        setup = ValidationSetup(validation_degree, sketch, rule, weighting.clip_l2)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"genesis: secure_aggregation/validation: {exc}") from None
    params = rc.ContractParams(
        chain_id=genesis.chain_id, n=genesis.n, rounds=int(genesis.raw.get("rounds", 1)),
        initial_model_hash=plan.initial_model_hash, min_updates=int(proto.get("min_updates", genesis.quorum)),
        secure=secure, degree=degree, vector_length=plan.n_params + 1, validate=validate,
        validation_degree=validation_degree, faulty=genesis.f, exclude_late=deadline_s > censorship_s,
        sketch_width=width, sketch_scale_ratio=setup.sketch.scale / quant.scale if validate else 0.0,
        clip_bound_micro=clip_bound_micro(weighting.clip_l2) if validate and rule.clip_factor > 0 else 0)
    transport = str(proto.get("consensus_transport", "direct"))
    if transport not in ("gossip", "direct"):
        raise ConfigError("genesis: protocol.consensus_transport must be 'gossip' or 'direct'")
    return RoundSettings(params, weighting, deadline_s,
                         float(proto.get("unmask_grace_s", 1.0)), float(proto.get("batch_window_s", 1.0)),
                         transport, setup if validate else None)
