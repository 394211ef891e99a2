"""Claim (red team B11; docs/threat-model.md, docs/validation.md "Not done yet" no more): an honest member whose own
sketch is longer than slack * C does not deal it clipped, which would contradict its masked input, fail the linear
identity after unmasking and have the blame phase convict it for good. It abstains from dealing: it is left out of V
and of the accepted set, and the round commits without it (N = 7, t_v = 1: V needs 2 t_v + 1 + f = 5 dealers), or
aborts at the sketch deadline naming it absent when every member must deal (t_v = 2); it is never convicted.

The event is many-sigma for a natural update (||S x||^2 has a relative standard deviation of about 4.5% at k = 1000,
slack 2); here the genesis slack is lowered to 0.2, so that member `LONG`'s update, at the clipping bound C, has a sketch
above slack * C, while the others' short updates stay far below. Planted: `refuse_clipped=False` in `SketchValidation`
fails both tests (LONG deals, is accepted, and its clipped sketch fails the identity at every honest node); a holder
outside V sending no share of the sketches' sum (`_share_sketch_sum` requiring its own share) fails the first: every
node then waits for LONG's share until the unmask grace period.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest

from node.robust_validation import decide_accepted
from node.secure_rounds import SecureRounds
from smpc.validation import SketchParams
from tests.unit.test_secure_round import Cluster, L

N = 7
LONG = 4
SLACK = 0.2


def cluster(validation_degree: int) -> tuple[Cluster, dict[int, np.ndarray]]:
    """Round 1 masked by every member: LONG's update at the clipping bound C, the others at a hundredth of it."""
    for_clip = SketchParams.for_clip

    def low_slack(clip_l2: float, width: int, slack: float = 2.0) -> SketchParams:
        return dataclasses.replace(for_clip(clip_l2, width, slack), slack=SLACK)

    with mock.patch.object(SketchParams, "for_clip", staticmethod(low_slack)):
        c = Cluster(N, seed=11, validate=True, validation_degree=validation_degree)
    assert c.setup is not None and c.setup.sketch.slack == SLACK
    rng = np.random.default_rng(11)
    raw = {i: rng.normal(0, 1.0, L) for i in range(N)}
    updates = {i: u * (1.0 if i == LONG else 0.01) * c.weighting.clip_l2 / np.linalg.norm(u) for i, u in raw.items()}
    bound = c.setup.sketch.slack * c.setup.sketch.clip_l2
    lengths = {i: np.linalg.norm(c.weighting.vector(u, 50)[:-1]) for i, u in updates.items()}
    assert lengths[LONG] > 2 * bound and all(lengths[i] < bound / 2 for i in lengths if i != LONG), (lengths, bound)
    c.mask_updates(updates)
    return c, updates


def test_a_member_whose_sketch_is_too_long_abstains_and_the_round_commits_without_it() -> None:
    c, updates = cluster(validation_degree=1)
    contract = c.contracts[0]
    c.close_inputs()
    assert [n[:len("not dealing our sketch")] for n in c.rounds[LONG].notices] == ["not dealing our sketch"]
    assert all(not c.rounds[i].notices for i in range(N) if i != LONG)
    assert not any(contract.parse(raw).kind == "dealt" and contract.parse(raw).author == LONG for raw in c.mempool)
    c.commit()
    c.commit(c.tx("close", ["sketch"]))
    assert contract.state.expected == tuple(m for m in range(N) if m != LONG), "V: every dealer but LONG"
    c.commit()
    decided = decide_accepted(contract.validation_check(None), c.setup, c.quant)  # type: ignore[arg-type]
    c.commit(c.tx("accept", decided.accept_fields()))
    assert contract.state.phase == "unmask" and LONG not in contract.state.expected
    c.commit()
    kept = contract.state.expected
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in kept], axis=0)
    for i in range(N):
        total = c.rounds[i].try_sum(deadline_passed=False)
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
    c.commit(c.tx("result", [list(kept), hashlib.sha256(b"m1").digest()]))
    outcome = contract.state.outcomes[-1]
    assert outcome.committed and LONG not in outcome.included and contract.state.convicted == ()


def test_when_every_member_must_deal_the_round_aborts_naming_the_abstainer_absent_not_convicted() -> None:
    c, _ = cluster(validation_degree=2)
    contract = c.contracts[0]
    c.close_inputs()
    c.commit()
    assert contract.state.phase == "sketch" and LONG not in contract.state.inputs
    c.commit(c.tx("abort", ["too few dealers by the deadline"]))
    outcome = contract.state.outcomes[-1]
    assert (outcome.committed, outcome.missing, contract.state.convicted) == (False, (LONG,), ())


def test_the_shell_logs_a_rounds_notice_once(caplog: pytest.LogCaptureFixture) -> None:
    """What the core decided about our own part reaches the operator's log (`SecureRounds.record_violations`)."""
    sr = SimpleNamespace(round=3, violations=[], notices=["not dealing our sketch: too long"])
    with caplog.at_level(logging.WARNING, logger="fednode"):
        SecureRounds(content=None, metrics=None).record_violations(sr)  # type: ignore[arg-type]
        SecureRounds(content=None, metrics=None).record_violations(sr)  # type: ignore[arg-type]
    assert caplog.text.count("round 3: not dealing our sketch: too long") == 1 and sr.notices == []
