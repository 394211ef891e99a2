"""Typed errors for everything a peer (or the set of peers) can get wrong in the smpc layer.

Only faults that come from outside this node are exceptions of these types: the caller records
them as evidence and carries on. A broken invariant of our own (a caller passing a committed set
that is not a subset of the previous one, a vector of the wrong dtype) is an AssertionError and
should stop the node loudly.
"""

from __future__ import annotations


class SmpcError(Exception):
    """Base of every expected, peer-caused failure in smpc/."""


class ProtocolViolation(SmpcError):
    """A specific peer sent something invalid; `sender` is its participant id when known."""

    def __init__(self, reason: str, sender: int | None = None) -> None:
        super().__init__(reason if sender is None else f"participant {sender}: {reason}")
        self.reason = reason
        self.sender = sender


class MalformedMessage(ProtocolViolation):
    """Bytes that do not decode to a well-formed message within the configured limits."""


class BadSignature(ProtocolViolation):
    """A message whose signature does not verify under the sender's identity key."""


class Equivocation(ProtocolViolation):
    """Two different signed messages from one sender for the same round and phase."""


class BadPublicKey(ProtocolViolation):
    """An X25519 public key that yields an all-zero shared secret (a low-order point)."""


class DecryptionFailed(ProtocolViolation):
    """A share ciphertext that does not authenticate under the pair key and associated data."""


class NotEnoughShares(SmpcError):
    """Fewer shares than degree + 1 were available for a reconstruction."""


class InconsistentShares(SmpcError):
    """The available shares do not determine the secret (too many of them disagree). `suspects` are the
    holders off the polynomial that fits most shares, when one was found: evidence, not proof."""

    def __init__(self, reason: str, suspects: tuple[int, ...] = ()) -> None:
        super().__init__(reason)
        self.suspects = suspects


class MissingMessages(SmpcError):
    """A committed set names participants whose messages this node has not received yet.

    This is not a fault of anyone in particular: the caller fetches them (from the ledger or from
    peers) and repeats the call, which leaves the state machine unchanged until it succeeds.
    """

    def __init__(self, phase: str, missing: frozenset[int]) -> None:
        super().__init__(f"{phase}: missing messages from {sorted(missing)}")
        self.phase = phase
        self.missing = missing


class RoundAborted(SmpcError):
    """The round cannot complete: fewer participants than the threshold remain, or secrets are
    unrecoverable. The caller starts the next round; the reason says which phase failed, and
    `culprit` names the participant at fault when the evidence is unambiguous (a reconstructed
    secret that contradicts its owner's signed advertisement)."""

    def __init__(self, reason: str, culprit: int | None = None) -> None:
        super().__init__(reason)
        self.culprit = culprit
