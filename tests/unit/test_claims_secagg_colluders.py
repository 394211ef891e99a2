"""Claim (docs/threat-model.md, Who we defend against, honest-but-curious row): f colluders learn nothing about
another member's update beyond the revealed sum, which holds at least two honest updates; not t = N - f - 1
colluders (an earlier wording of the row, which the third test below refutes).

The colluders follow the protocol and pool what they hold, as the row says. The sum over U3 is revealed to
every member by design; what they can subtract from it is their own updates. The contract lets a round
complete with |U3| = `min_members` = max(min_updates, t + 1), so what the sum leaves of the honest updates is
decided by that minimum: with f colluders (the row's adversary) at least two honest updates stay in every sum;
with t = N - f - 1 colluders (what the sentence says) and the other f honest members offline, one does, and the
sum is that member's update. Played on the secure-aggregation core (`smpc.simulation.run_round`) with genesis's
default degree t = N - f - 1 (`node.settings`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ml import data as mldata
from node import contract as rc
from node.config import ConfigError, load_genesis
from node.learning import LearningPlan
from node.settings import round_settings
from node.testnet import create_testnet
from smpc import field
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round
from tests.unit.test_smpc_secagg_protocol import CHAIN, LENGTH, make_updates


def default_min_members(n: int) -> int:
    """`Membership.min_members` for a secure consortium with genesis's default degree and the weakest
    `min_updates` (1): the survivor minimum must come from the degree alone."""
    f = (n - 1) // 3
    params = rc.ContractParams(CHAIN, n, 1, b"\x00" * 32, 1, secure=True, degree=n - f - 1)
    return rc.Contract(params, lambda *_: True).min_members


def colluders_estimate(n: int, colluders: frozenset[int], offline: frozenset[int], seed: int) -> np.ndarray:
    """The survivors' sum less the colluders' own updates, after a round whose `offline` members went silent
    before masking."""
    f = (n - 1) // 3
    config = RoundConfig(CHAIN, round_id=7, participants=tuple(range(1, n + 1)), degree=n - f - 1,
                         vector_length=LENGTH)
    updates = make_updates(n, seed)
    outcome = run_round(config, updates, DropSchedule(before_mask=offline), seed)
    assert not outcome.aborted, f"seed={seed}: {outcome.aborted}"
    total = outcome.results[min(colluders)].total
    return field.ring_to_signed(field.ring_sum([total, *(np.negative(updates[c]) for c in colluders)], LENGTH))


@pytest.mark.parametrize("n", range(4, 20))
def test_f_colluders_always_leave_at_least_two_honest_updates_in_the_revealed_sum(n: int) -> None:
    f = (n - 1) // 3
    assert default_min_members(n) - f >= 2, f"n={n}: a round may complete with {default_min_members(n)} inputs"


@pytest.mark.parametrize("n", [4, 7])
def test_t_colluders_with_the_other_honest_members_offline_read_the_one_honest_update_left(n: int) -> None:
    """Why the claim is against f colluders, not t = N - f - 1: t colluders whose f other honest peers went
    offline complete a round with U3 = themselves and one honest member, and the revealed sum less their own
    updates is that member's update, exactly (docs/secure-aggregation.md, Threat model)."""
    f, victim, seed = (n - 1) // 3, 1, 40 + n
    offline = frozenset(range(2, 2 + f))
    colluders = frozenset(range(2 + f, n + 1))
    assert len(colluders) == n - f - 1 and len(offline) + 1 + len(colluders) == default_min_members(n) + f
    estimate = colluders_estimate(n, colluders, offline, seed)
    truth = field.ring_to_signed(make_updates(n, seed)[victim])
    assert np.array_equal(estimate, truth), f"seed={seed} n={n}"


def test_genesis_refuses_a_secure_aggregation_degree_below_f(tmp_path: Path) -> None:
    """f colluders holding degree + 1 shares of an honest member's mask secrets read its update: genesis says so."""
    create_testnet(tmp_path / "net", 7, rounds=1, seed=1, dataset=mldata.DatasetSpec(name="breast_cancer", seed=1),
                   split=mldata.SplitSpec(kind="iid"))
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    plan = LearningPlan.from_genesis(genesis)
    for degree, refused in ((1, True), (2, False)):
        raw = {**genesis.raw, "secure_aggregation": {**genesis.raw["secure_aggregation"], "degree": degree}}
        if refused:
            with pytest.raises(ConfigError, match="below f = 2"):
                round_settings(dataclasses.replace(genesis, raw=raw), plan)
        else:
            assert round_settings(dataclasses.replace(genesis, raw=raw), plan).contract.degree == degree
