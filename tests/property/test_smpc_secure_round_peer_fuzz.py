"""Issue 17, finding 1, as a property: whatever bytes member 6 sends as sketch shares or sketch-sum shares,
whenever it sends them (before the round's sketch exists, while shares are dealt, after the accepted set
is fixed), every honest node's round raises nothing (each is a violation of member 6), and the round
still ends with the exact sum of the accepted members. Member 6's genuine messages are mutated or replaced
by arbitrary bytes; the harness is the in-process round of tests/unit/test_secure_round.py."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.secure_round import SendShares, SendSketchSum, decide_accepted
from tests.unit.test_secure_round import Cluster, L

N, SENDER = 7, 6
STAGES = ("opened", "masked", "dealt", "accepted")


class Tampering(Cluster):
    """Member SENDER's sketch shares and sketch-sum shares reach the others tampered by `tamper`."""

    def __init__(self, tamper: Any) -> None:
        super().__init__(N, 60, validate=True, validation_degree=2)
        self.tamper = tamper

    def emit(self, sender: int, outputs: list[Any]) -> None:
        if sender == SENDER:
            outputs = [type(out)(out.to, self.tamper(out.payload)) if isinstance(out, SendShares)
                       else type(out)(self.tamper(out.payload)) if isinstance(out, SendSketchSum) else out
                       for out in outputs]
        super().emit(sender, outputs)


payloads = st.one_of(st.binary(max_size=2000), st.just(b""))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_sketch_message_from_a_member_is_a_violation_never_an_exception(data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.integers(min_value=0, max_value=20_000), max_size=3))

    def tamper(payload: bytes) -> bytes:
        mutated = bytearray(payload)
        for position in flips:
            if mutated:
                mutated[position % len(mutated)] ^= 0x5A
        return bytes(mutated)

    c = Tampering(tamper)
    junk = {stage: data.draw(payloads) for stage in STAGES}
    rng = np.random.default_rng(61)
    updates = {i: rng.normal(0, 0.3, L) for i in range(N)}

    def inject(stage: str) -> None:
        for i in range(N - 1):
            assert c.rounds[i].on_sketch_shares(SENDER, junk[stage]) == []
            c.rounds[i].on_sketch_sum(SENDER, junk[stage])

    c.commit(c.tx("open", [b"\x00" * 32, list(range(N))]))
    inject("opened")
    c.commit(c.tx("close", ["keys"]))
    c.commit(c.tx("close", ["shares"]))
    for i in range(N):
        c.emit(i, c.rounds[i].set_update(c.weighting.vector(updates[i], 50)))
    inject("masked")
    c.close_inputs()
    inject("dealt")
    c.commit(c.tx("close", ["sketch"]))
    c.commit()
    check = c.contracts[0].validation_check(None)
    if len(check.published) < N:  # SENDER's tampered shares kept holders from publishing: the round aborts
        return
    outcome = decide_accepted(check, c.setup, c.quant)
    c.commit(c.tx("accept", outcome.accept_fields()))
    inject("accepted")
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in outcome.accepted], axis=0)
    total = c.rounds[0].try_sum(deadline_passed=True)
    assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale)
