"""What a `node.secure_round.SecureRound` hands the shell, and what it raises to it.

Owns the `Output` kinds (a transaction to submit, a message to gossip, our masked input, sketch shares and
sketch-sum shares to send) and `SHELL_ERRORS`, the only exceptions a SecureRound lets through. Plain data;
may call `smpc.errors` and `smpc.secagg` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from smpc.errors import MissingMessages, RoundAborted
from smpc.secagg import RevealRefused


@dataclass(frozen=True, slots=True)
class SubmitTx:
    raw: bytes


@dataclass(frozen=True, slots=True)
class SendMasked:
    """This node's masked input, to be sent to every peer over direct streams; `digest` is what the ledger
    commits to (MaskedInput.digest, the hash of the signed body), the name peers fetch it by."""

    message: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class SendShares:
    """Shares of this node's sketch (and of zero) for one holder; sent point to point over Noise."""

    to: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendSketchSum:
    """This holder's share of the sum of the accepted members' sketches, for every node (see `try_sum`); in an excise
    phase, of the sum of the sketches of S \\ L, naming L (see `try_excised_sum`)."""

    payload: bytes


Output = SubmitTx | SendMasked | SendShares | SendSketchSum

SHELL_ERRORS = (MissingMessages, RoundAborted, RevealRefused)
"""All a SecureRound raises to the shell: fetch and retry, or this node is out of the round. Every other
failure becomes RoundAborted, and a peer's bad message a violation, so nothing a peer sends surfaces as an
exception the shell does not catch (one junk sketch-share message once ended every honest daemon)."""


class LinearIdentityFailed(RoundAborted):
    """The unmasked sum fails a check only the sum can show (weights, linear identity, clip bound): an accepted
    member masked something other than what it sketched, committed or clipped. The sum is not released; in a
    validated round the first two go to the blame phase (`SecureRound.failure`), the bound aborts unnamed."""

