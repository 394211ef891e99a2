"""Claim (docs/threat-model.md, Timing assumption of validation): members absent or late lower f_eff only when
genesis makes `phase_deadline_s` longer than censoring primaries can hold a transaction out (`exclude_late`);
otherwise f_eff = f. And (What is revealed, Known limits) a blame judgement that waits needs a member suspended,
counted among the f.

The adversary, at N = 4 (f = 1, t_v = 1) with a phase deadline shorter than the censorship bound (as genesis
gives at N = 10 with the default 30 s deadline, `node.settings.censorship_bound_s`): member 0 holds its real key
and is the primary. Its masked input contradicts its sketch, and it lies about its pair mask with member 2 to pass
its own check (a dispute, not a conviction: f + 1 distinct disputes convict). As primary it holds honest member
1's `blame` disclosure out for one phase deadline (the request timer replaces it only after about 3 view
timeouts), then proposes the ledger's verdict, which replicas vote for after that deadline on their own clocks,
and opens round 2. Driven with signed transactions (`tests.unit.test_contract_blame` helpers).
"""

from __future__ import annotations

import dataclasses

from node import contract as rc
from smpc import blame
from tests.unit.test_contract import tx
from tests.unit.test_contract_blame import S, disclosure, in_blame
from tests.unit.test_contract_secure_phases import Driver

PRIMARY, CENSORED, PARTNER = 0, 1, 2


def censored_blame_phase(exclude_late: bool) -> Driver:
    """Round 1's blame phase with member 1's disclosure held out, the verdict committed at the deadline, and
    round 2 opened."""
    d = in_blame(shift={PRIMARY: 1})
    d.c.params = dataclasses.replace(d.c.params, exclude_late=exclude_late)
    d.commit(disclosure(PRIMARY, S, lie={PARTNER: blame.PairScalars(1, 0)}),
             *(disclosure(a, S) for a in (PARTNER, 3)))
    verdict = tx("verdict", PRIMARY, 1, [], bytes([PRIMARY, PARTNER]))
    assert isinstance(d.check(verdict)[-1], rc.DeadlineCheck), "the censor waits out one phase deadline"
    d.commit(verdict)
    assert (d.s.convicted, d.s.disputes, d.s.suspended) == ((), ((PRIMARY, PARTNER),), {CENSORED: 1})
    d.open(2)
    assert d.s.expected == (0, 2, 3)
    return d


def test_with_a_deadline_that_outlasts_censorship_the_suspended_lower_f_eff() -> None:
    """Control: where genesis lets the late count as faulty, the censor is replaced before the deadline (the
    timing assumption), so a suspended member is a faulty one and lowers f_eff."""
    assert censored_blame_phase(exclude_late=True).c.effective_faulty == 0


def test_without_a_deadline_that_outlasts_censorship_a_censored_discloser_does_not_lower_f_eff() -> None:
    d = censored_blame_phase(exclude_late=False)
    assert d.c.effective_faulty == 1, "f_eff = f: an honest member late only by censorship is not proven faulty"
