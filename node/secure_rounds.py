"""This node's live secure-aggregation machines, one per round, and the peer messages that feed them.

Owns the `SecureRound` of each round this node takes part in (created by the round driver, dropped
when the round ends) and the admission of peers' secure-aggregation messages: `sa` and `masked`
(keys, shares, masked inputs, reveals), `vshare` (sketch shares) and `ssum` (sketch sums). A faulty
peer's message is counted and recorded as a violation, never raised. May call `node.secure_round` and
the content caches; returns outputs for the round driver to carry out instead of sending anything.
"""

from __future__ import annotations

import logging

from node.content import Content
from node.secure_round import Output, SecureRound
from node.status import Metrics
from smpc import messages as sam
from smpc.errors import ProtocolViolation

logger = logging.getLogger("fednode")


class SecureRounds:
    """Round id -> this node's `SecureRound`."""

    def __init__(self, content: Content, metrics: Metrics) -> None:
        self.content, self.metrics = content, metrics
        self.rounds: dict[int, SecureRound] = {}

    def get(self, round_id: int) -> SecureRound | None:
        return self.rounds.get(round_id)

    def __contains__(self, round_id: object) -> bool:
        return round_id in self.rounds

    def accept_secagg(self, round_id: int, data: bytes) -> None:
        sr = self.rounds.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("secagg_no_round").inc()
            return
        try:
            message = sr.decode(data)
        except ProtocolViolation:
            self.metrics.rejected.labels("secagg_malformed").inc()
            return
        refused = len(sr.violations)
        sr.on_message(message)
        if isinstance(message, sam.MaskedInput) and len(sr.violations) == refused:
            self.content.keep_masked(message.sender, message.digest(), data)  # signature checked by now
        self.record_violations(sr)

    def masked_digest(self, round_id: int, data: bytes) -> bytes | None:
        """The name of a masked input of `round_id` (what a block commits to), None if `data` is not one."""
        sr = self.rounds.get(round_id)
        if sr is None:
            return None
        try:
            message = sr.decode(data)
        except ProtocolViolation:
            return None
        return message.digest() if isinstance(message, sam.MaskedInput) else None

    def accept_sketch_shares(self, round_id: int, sender: int, payload: bytes) -> list[Output] | None:
        """A holder's sketch shares from `sender`; the outputs to carry out, None if refused. The round checks
        the message on arrival and records a bad one as `sender`'s violation (it never raises)."""
        sr = self.rounds.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("vshare_no_round").inc()
            return None
        outputs = sr.on_sketch_shares(sender, payload)
        self.record_violations(sr)
        return outputs

    def accept_sketch_sum(self, round_id: int, sender: int, payload: bytes) -> None:
        sr = self.rounds.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("ssum_no_round").inc()
            return
        sr.on_sketch_sum(sender, payload)
        self.record_violations(sr)

    def record_violations(self, sr: SecureRound) -> None:
        for violation in sr.violations:
            self.metrics.rejected.labels("secagg_" + type(violation).__name__.lower()).inc()
            logger.warning("round %d: member %s violated secure aggregation: %s", sr.round,
                           None if violation.sender is None else violation.sender - 1, violation)
        sr.violations.clear()
        for notice in sr.notices:
            logger.warning("round %d: %s", sr.round, notice)
        sr.notices.clear()
