"""One participant's secure-aggregation state machine for one round (Bonawitz et al., CCS 2017).

API (everything is pure: no I/O, no clock, no global randomness)
-----------------------------------------------------------------
    machine = SecAggParticipant(config, me, signer, verifier, rand, generator=None)
                                   (a MaskGenerator masks through 256 KB of block buffers; its 8 MB
                                    whole-mask buffers exist only once `expand` is called: reuse one for that)

    advert  = machine.start()                         -> AdvertiseKeys   broadcast it
    machine.receive(message)                          -> bool            any peer message; False if stale;
                                                                         raises ProtocolViolation subclasses
    bundle  = machine.on_keys_committed(ids)          -> ShareKeys|None  broadcast it (None: not a member)
    machine.on_shares_committed(ids)                  -> None            now machine.can_mask tells if we may mask
    machine.exclude_pairs(pairs)                      -> None            the ledger's disputed pairs: no mask
                                                                         between them (before masking)
    masked  = machine.mask(quantized_update)          -> MaskedInput     broadcast it
    reveal  = machine.on_inputs_committed(digests)    -> UnmaskShares|None   submit it (the ledger commits it)
    result  = machine.try_finish(deadline_passed, committed)  -> SecAggResult|None   from the reveals of the
                                                                         `committed` holders (None: all stored)
    machine.recoverable(committed)                    -> bool            whether those reveals decide unmasking
    reveal  = machine.excise_reveal(convicted)        -> UnmaskShares|None   after unmasking: our shares of the
                                                                         convicted survivors' mask keys
    result  = machine.excise(convicted, reveals, excise_reveals) -> SecAggResult   the sum over U3 minus the
                                                                         convicted, from committed reveals
    machine.drain_violations()                        -> list[ProtocolViolation]   evidence found at transitions

    verify_message(message, config, verifier)         stateless admission checks (round, sender,
    check_bundle_recipients(bundle, keys_set)         signature, keys; bundle coverage) for the contract
    allowed_reveal, revealed_shares, matches_advert,  what the contract checks a reveal with and decides
    needed_secrets, decide_unmask                     unmasking from (the same function as the machine)
    allowed_excise_reveal                             what it checks an excise reveal with

    On the wire: messages.encode(message) -> bytes; messages.decode(data, config.limits) -> message.
    Around it: quantize.quantize(update, params, rand) -> the ring vector to mask;
    quantize.dequantize_sum(result.total, params) -> the float sum of the survivors' updates.

Who drives it. The caller (the daemon, through the round contract) drives every phase transition
from committed ledger blocks: `on_*_committed` take the participant set that a block fixed, so all
honest nodes act on the same sets. The machine reads no clock: phase deadlines are enforced by the
ledger (a block closes each phase), and the only timing input is `try_finish(deadline_passed=True)`
once the unmask deadline has passed. Any `on_*_committed` may raise MissingMessages (fetch the
named messages, feed them to `receive`, and call again: the state is unchanged) or RoundAborted
(fewer than t + 1 members remain; start the next round). The shell must broadcast each returned
message; the machine stores its own messages itself, and echoes of them are ignored.

Phases and sets (the transition table is `TRANSITIONS`):

    ADVERTISE  --keys committed U1-->    SHARE_KEYS  --shares committed U2-->   MASKED_INPUT
    MASKED_INPUT --inputs committed U3 (by digest)--> UNMASK --enough reveals--> DONE
    any live phase --fewer than t + 1 members / unrecoverable secret--> ABORTED

U1 are the nodes whose keys are on the ledger; U2 ⊆ U1 those whose share bundles are; masks are
pairwise between members of U2 but the disputed pairs (`exclude_pairs`), each having shares of its secrets at
every member of U1; U3 ⊆ U2 are the nodes whose masked inputs count. Threshold: the Shamir degree t; every
phase needs at least t + 1 members, and the round completes iff |U3| >= t + 1 and, for every secret, t + 1 share
holders deliver correct reveals. Each bundle commits to every holder's shares, so each revealed share is
checked on its own: a wrong one proves its sender lied (`WrongReveal`, `SecAggResult.lying_revealers`) and
drops its reveals for the round. A dealer whose checked shares lie on no degree-t polynomial through its
advertised secret is proven faulty (`decide_unmask`): the round aborts naming it. The result is exactly the ring
sum of the quantized updates of U3.

Never both secrets. For a member i of U2, each holder reveals its share of b_i if i is in U3 and
its share of sk_i (the mask key) otherwise, never both: `RevealGuard` remembers what was revealed
per owner and refuses (RevealRefused) anything that would reveal the other kind, including a
second, different commitment of U3. Since the ledger gives every honest node the same U3, at most
t colluders' shares are ever available for the secret that is not revealed.

Excising convicted survivors. After unmasking, a blame verdict may prove members L of U3 Byzantine (their masked
input contradicts their own commitments: docs/validation.md, "Blame after a failed identity"). The round can then
finish over U3 \\ L with Bonawitz's own dropout recovery, L treated as dropped after the fact: each holder of U1 but
L reveals its shares of the mask keys of L (`excise_reveal`), and `excise` removes, from the sum of the masked
inputs of U3 \\ L, their self masks (revealed at unmasking) and their pair masks with U2 \\ U3 and with L. For a
member of L both secrets are then revealed, which exposes its own input only: the guard allows it for the convicted
owners the caller names, and for nobody else (`RevealGuard.convict`). Only the ledger names them, and its verdict
never convicts an honest member (docs/validation.md, "Excising convicted survivors").

Consistency check. The original protocol adds a round in which users sign the set U3 so that a
malicious server cannot show different sets to different users. Here U3 is fixed by a committed
PBFT block, whose certificate carries 2f + 1 signatures over it, so that round is subsumed by
the ledger; the machine checks U3 ⊆ U2 and |U3| >= t + 1 before revealing anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from smpc import aead, shamir
from smpc.errors import (
    BadPublicKey,
    BadSignature,
    Equivocation,
    InconsistentShares,
    MalformedMessage,
    MissingMessages,
    ProtocolViolation,
    RoundAborted,
    SmpcError,
)
from smpc.field import FieldArray, RandomBytes, RingArray
from smpc.keys import KeyPair, KeyPurpose, agree, generate_keypair, keypair_from_secret, pair_key
from smpc.masking import mask_input, unmask_sum
from smpc.messages import (
    MAX_PARTICIPANT_ID,
    MAX_ROUND_ID,
    AdvertiseKeys,
    Limits,
    MaskedInput,
    Message,
    ShareKeys,
    SharePlaintext,
    UnmaskShares,
    decode_share,
    encode_share,
)
from smpc.prg import SEED_BYTES, MaskGenerator
from smpc.signing import Signer, Verifier, signing_payload

_M = TypeVar("_M", AdvertiseKeys, ShareKeys, MaskedInput, UnmaskShares)

class Phase(Enum):
    ADVERTISE = "advertise"
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.ADVERTISE, "keys committed"): Phase.SHARE_KEYS,
    (Phase.SHARE_KEYS, "shares committed"): Phase.MASKED_INPUT,
    (Phase.MASKED_INPUT, "inputs committed"): Phase.UNMASK,
    (Phase.UNMASK, "finished"): Phase.DONE,
}
"""Every legal transition; any live phase can also move to ABORTED."""

_LIVE = frozenset({Phase.ADVERTISE, Phase.SHARE_KEYS, Phase.MASKED_INPUT, Phase.UNMASK})

ACCEPTED_PHASES: dict[type[Message], frozenset[Phase]] = {
    AdvertiseKeys: frozenset({Phase.ADVERTISE}),
    ShareKeys: frozenset({Phase.ADVERTISE, Phase.SHARE_KEYS}),
    MaskedInput: frozenset({Phase.ADVERTISE, Phase.SHARE_KEYS, Phase.MASKED_INPUT, Phase.UNMASK}),
    UnmaskShares: _LIVE,
}
"""Phases in which a message is stored; earlier phases buffer it (a peer may be a block ahead),
later phases ignore it as stale. Masked vectors stay welcome in UNMASK because the ledger commits
only their digests and the vectors themselves may arrive after the block."""


class SecretKind(Enum):
    SELF_SEED = "self-seed"
    MASK_KEY = "mask-key"


class WrongReveal(ProtocolViolation):
    """A revealed share that does not open its dealer's committed hash of it: proof that its signed sender
    lied (an honest holder checks its share against that hash on receipt and never reveals one that fails)."""


class RevealRefused(SmpcError):
    """A request to reveal shares that, with what was already revealed, would expose an update."""


class RevealGuard:
    """Remembers, per owner, which of its two secrets this node has revealed shares of."""

    __slots__ = ("_convicted", "_revealed")

    def __init__(self) -> None:
        self._revealed: dict[int, SecretKind] = {}
        self._convicted: frozenset[int] = frozenset()

    def convict(self, owners: Iterable[int]) -> None:
        """The ledger proved `owners` Byzantine (a blame verdict): the other kind of their secrets may be revealed
        too (module doc, "Excising convicted survivors"). Never anyone else's."""
        self._convicted |= frozenset(owners)

    def check(self, plan: Mapping[int, SecretKind]) -> None:
        """Refuse the whole plan if any owner not convicted would get the other kind revealed than before."""
        conflicts = sorted(owner for owner, kind in plan.items()
                           if self._revealed.get(owner, kind) is not kind and owner not in self._convicted)
        if conflicts:
            raise RevealRefused(f"would reveal both self seed and mask key of {conflicts}")

    def record(self, plan: Mapping[int, SecretKind]) -> None:
        """Record `plan` (checked); a convicted owner's first kind stays recorded."""
        self.check(plan)
        for owner, kind in plan.items():
            self._revealed.setdefault(owner, kind)

    def revealed(self) -> dict[int, SecretKind]:
        return dict(self._revealed)


@dataclass(frozen=True, slots=True)
class RoundConfig:
    """What every participant of one round agrees on, from genesis and the round-opening block."""

    chain_id: bytes
    round_id: int
    participants: tuple[int, ...]
    degree: int
    vector_length: int

    def __post_init__(self) -> None:
        if list(self.participants) != sorted(set(self.participants)) or not self.participants:
            raise ValueError("participants must be a non-empty, strictly increasing tuple of ids")
        if self.participants[0] < 1 or self.participants[-1] > MAX_PARTICIPANT_ID:
            raise ValueError(f"participant ids must lie in [1, {MAX_PARTICIPANT_ID}] (Shamir x-coordinates)")
        if not 0 < len(self.chain_id) < 1 << 16 or not 0 <= self.round_id <= MAX_ROUND_ID:
            raise ValueError("chain_id must be 1..65535 bytes and round_id a non-negative int64")
        if not 0 <= self.degree < len(self.participants):
            raise ValueError("the Shamir degree t must satisfy 0 <= t < number of participants")
        if self.vector_length < 1:
            raise ValueError("vector_length must be positive")

    @property
    def limits(self) -> Limits:
        return Limits(max_participant_id=self.participants[-1], vector_length=self.vector_length)


@dataclass(frozen=True, slots=True)
class SecAggResult:
    """The ring sum of the survivors' quantized updates, and what the reconstruction revealed."""

    total: RingArray
    survivors: frozenset[int]
    dropped: frozenset[int]
    lying_revealers: frozenset[int]
    """Holders that revealed a share other than the one its dealer committed to, for some secret: proven
    liars (each also a `WrongReveal` in `drain_violations`), whose reveals were dropped for the whole round."""
    self_seeds: Mapping[int, bytes] = dataclasses.field(default_factory=dict)
    """The survivors' reconstructed self seeds b_i: what a blame verdict removes from each masked input."""
    dropped_pair_seeds: Mapping[tuple[int, int], bytes] = dataclasses.field(default_factory=dict)
    """s_dj for each dropped d and survivor j, recomputed from d's reconstructed mask key (`unmask_sum`)."""


def self_seed_commitment(chain_id: bytes, round_id: int, owner: int, seed: bytes) -> bytes:
    """SHA-256 binding of b_owner, published with the keys so a reconstructed seed can be checked."""
    tag = b"fednode/secagg/v1/self-seed" + len(chain_id).to_bytes(2, "big") + chain_id
    return hashlib.sha256(tag + round_id.to_bytes(8, "big") + owner.to_bytes(4, "big") + seed).digest()


def share_commitment(chain_id: bytes, round_id: int, owner: int, holder: int, kind: SecretKind, share: bytes) -> bytes:
    """SHA-256 binding of `holder`'s share of the owner's secret, published in the owner's ShareKeys bundle.

    It needs no salt: given any t shares, a share is a function of the 256-bit secret, so its hash tells no
    more than the advert already does (H(b_i), or the public key of sk_i).
    """
    tag = b"fednode/secagg/v1/share/" + kind.value.encode() + len(chain_id).to_bytes(2, "big") + chain_id
    ids = round_id.to_bytes(8, "big") + owner.to_bytes(4, "big") + holder.to_bytes(4, "big")
    return hashlib.sha256(tag + ids + share).digest()


def verify_message(message: Message, config: RoundConfig, verifier: Verifier) -> None:
    """Checks that need no round state: round, sender, signature, and advertised key validity.

    The machine runs them on every message; the round contract can run them too before it puts
    a message (or its digest) in a block, so that blocks only commit well-formed messages.
    """
    if message.round_id != config.round_id:
        raise ProtocolViolation(f"message for round {message.round_id}", message.sender)
    if message.sender not in config.participants:
        raise ProtocolViolation("sender is not a participant", message.sender)
    if not verifier(message.sender, signing_payload(config.chain_id, message.signed_body()), message.signature):
        raise BadSignature("signature does not verify", message.sender)
    if isinstance(message, AdvertiseKeys):
        probe = bytes([9]) + bytes(31)  # low-order points give an all-zero agreement with any key
        try:
            agree(probe, message.mask_public_key)
            agree(probe, message.encryption_public_key)
        except BadPublicKey as error:
            raise BadPublicKey(error.reason, message.sender) from error


def check_bundle_recipients(bundle: ShareKeys, keys_set: frozenset[int]) -> None:
    """A share bundle must hold exactly one ciphertext for every other member of U1, and the commitments to
    the shares of every member of U1."""
    recipients = {recipient for recipient, _ in bundle.ciphertexts}
    if recipients != keys_set - {bundle.sender}:
        raise ProtocolViolation("share bundle does not cover exactly the other members of U1", bundle.sender)
    if {holder for holder, _ in bundle.commitments} != keys_set:
        raise ProtocolViolation("share bundle does not commit to the shares of exactly U1", bundle.sender)


@dataclass(slots=True)
class _Secrets:
    """This node's round secrets; never leaves the machine except as Shamir shares."""

    mask_keys: KeyPair
    encryption_keys: KeyPair
    self_seed: bytes


class SecAggParticipant:
    """The per-participant protocol core; see the module docstring for the API and phases."""

    def __init__(
        self,
        config: RoundConfig,
        me: int,
        signer: Signer,
        verifier: Verifier,
        rand: RandomBytes,
        generator: MaskGenerator | None = None,
    ) -> None:
        assert me in config.participants, "this node is not a participant of the round"
        self.config = config
        self.me = me
        self._signer = signer
        self._verifier = verifier
        self._rand = rand
        self._generator = generator or MaskGenerator(config.vector_length)
        assert self._generator.length == config.vector_length, "mask generator has the wrong length"
        self.phase = Phase.ADVERTISE
        self._secrets: _Secrets | None = None
        self._store: dict[type[Message], dict[int, Message]] = {cls: {} for cls in ACCEPTED_PHASES}
        self._violations: list[ProtocolViolation] = []
        self._keys_set: frozenset[int] = frozenset()
        self._shares_set: frozenset[int] = frozenset()
        self._input_digests: dict[int, bytes] = {}
        self._held_shares: dict[int, tuple[FieldArray, FieldArray]] = {}
        self._pair_seeds: dict[int, bytes] = {}
        self._masked_sent = False
        self._reveal: UnmaskShares | None = None
        self._excise_reveal: UnmaskShares | None = None
        self._disputed: frozenset[frozenset[int]] = frozenset()
        self.guard = RevealGuard()

    # ----------------------------------------------------------------- helpers

    def _sign(self, message: _M) -> _M:
        signature = self._signer(signing_payload(self.config.chain_id, message.signed_body()))
        return dataclasses.replace(message, signature=signature)

    def _transition(self, event: str) -> None:
        assert (self.phase, event) in TRANSITIONS, f"illegal transition {event!r} from {self.phase}"
        self.phase = TRANSITIONS[(self.phase, event)]

    def _abort(self, reason: str, culprit: int | None = None) -> RoundAborted:
        self.phase = Phase.ABORTED
        return RoundAborted(reason, culprit)

    def _require_quorum(self, members: frozenset[int], what: str) -> None:
        if len(members) < self.config.degree + 1:
            raise self._abort(f"{what}: {len(members)} members, need t + 1 = {self.config.degree + 1}")

    def _require_messages(self, cls: type[Message], members: frozenset[int], phase: str) -> None:
        missing = members - set(self._store[cls])
        if missing:
            raise MissingMessages(phase, frozenset(missing))

    def _stored(self, cls: type[_M], sender: int) -> _M:
        message = self._store[cls][sender]
        assert isinstance(message, cls), "store holds messages of the wrong kind"
        return message

    def _stored_all(self, cls: type[_M]) -> dict[int, _M]:
        return {sender: self._stored(cls, sender) for sender in sorted(self._store[cls])}

    def drain_violations(self) -> list[ProtocolViolation]:
        """Evidence against peers found while processing buffered messages at transitions."""
        found, self._violations = self._violations, []
        return found

    @property
    def can_mask(self) -> bool:
        """Whether this node is in U2 and has not masked yet, so `mask` may be called."""
        return self.phase is Phase.MASKED_INPUT and self.me in self._shares_set and not self._masked_sent

    # ----------------------------------------------------------------- receiving

    def receive(self, message: Message) -> bool:
        """Store a peer's message after checking round, sender, signature and equivocation.

        `message` must come from `messages.decode(data, config.limits)`, which has bounded and
        checked every field. Returns False for a stale or duplicate message (no state change).
        Raises a ProtocolViolation subclass for a message that is invalid whatever the phase.
        """
        assert not isinstance(message, MaskedInput) or len(message.masked) == 4 * self.config.vector_length, (
            "masked input not decoded with this round's limits"
        )
        verify_message(message, self.config, self._verifier)
        if self.phase not in ACCEPTED_PHASES[type(message)]:
            return False
        if isinstance(message, MaskedInput) and self.phase is Phase.UNMASK:
            if message.sender not in self._input_digests:
                return False
            if self._input_digests[message.sender] != message.digest():
                raise ProtocolViolation("masked input does not match the committed digest", message.sender)
        return self._keep(message)

    def _keep(self, message: Message) -> bool:
        store = self._store[type(message)]
        previous = store.get(message.sender)
        if previous is not None:
            if previous.signed_body() != message.signed_body():
                raise Equivocation(f"two different {type(message).__name__} messages", message.sender)
            return False
        store[message.sender] = message
        return True

    # ----------------------------------------------------------------- phase 1: advertise

    def start(self) -> AdvertiseKeys:
        """Draw this round's secrets and return the signed key advertisement to broadcast."""
        assert self.phase is Phase.ADVERTISE and self._secrets is None, "start() once, first"
        self._secrets = _Secrets(generate_keypair(self._rand), generate_keypair(self._rand), self._rand(SEED_BYTES))
        advert = self._sign(
            AdvertiseKeys(
                round_id=self.config.round_id,
                sender=self.me,
                mask_public_key=self._secrets.mask_keys.public_key,
                encryption_public_key=self._secrets.encryption_keys.public_key,
                self_seed_commitment=self_seed_commitment(
                    self.config.chain_id, self.config.round_id, self.me, self._secrets.self_seed
                ),
            )
        )
        self._keep(advert)
        return advert

    # ----------------------------------------------------------------- phase 2: share keys

    def on_keys_committed(self, members: frozenset[int]) -> ShareKeys | None:
        """U1 is fixed: deal Shamir shares of b and of the mask key to every member, encrypted."""
        assert self.phase is Phase.ADVERTISE, f"keys committed in phase {self.phase}"
        assert members <= set(self.config.participants), "committed keys set outside the round"
        self._require_messages(AdvertiseKeys, members, "keys")
        self._require_quorum(members, "keys")
        self._keys_set = members
        self._transition("keys committed")
        if self.me not in members or self._secrets is None:
            return None
        holders = sorted(members)
        seed_shares = shamir.share_secret(self._secrets.self_seed, self.config.degree, holders, self._rand)
        key_shares = shamir.share_secret(self._secrets.mask_keys.secret_key, self.config.degree, holders, self._rand)
        self._held_shares[self.me] = (seed_shares[self.me], key_shares[self.me])
        ciphertexts = tuple(
            (holder, self._encrypt_shares(holder, seed_shares[holder], key_shares[holder]))
            for holder in holders
            if holder != self.me
        )
        commitments = tuple(
            (holder, self._commit(self.me, holder, SecretKind.SELF_SEED, encode_share(seed_shares[holder]))
             + self._commit(self.me, holder, SecretKind.MASK_KEY, encode_share(key_shares[holder])))
            for holder in holders
        )
        bundle = self._sign(ShareKeys(self.config.round_id, self.me, ciphertexts, commitments))
        self._keep(bundle)
        return bundle

    def _commit(self, owner: int, holder: int, kind: SecretKind, share: bytes) -> bytes:
        return share_commitment(self.config.chain_id, self.config.round_id, owner, holder, kind, share)

    def _opens_commitment(self, owner: int, holder: int, kind: SecretKind, share: bytes) -> bool:
        """Whether `share` is the one the owner's committed bundle commits to as `holder`'s share."""
        committed = self._stored(ShareKeys, owner).commitment(holder, kind is SecretKind.MASK_KEY)
        return committed is not None and committed == self._commit(owner, holder, kind, share)

    def _pair_key(self, secret_key: bytes, owner: int, peer: int, purpose: KeyPurpose) -> bytes:
        advert = self._stored(AdvertiseKeys, peer)
        public_key = advert.mask_public_key if purpose is KeyPurpose.MASK else advert.encryption_public_key
        return pair_key(secret_key, public_key, purpose, self.config.chain_id, self.config.round_id, owner, peer)

    def _encrypt_shares(self, holder: int, seed_share: FieldArray, key_share: FieldArray) -> bytes:
        assert self._secrets is not None
        key = self._pair_key(self._secrets.encryption_keys.secret_key, self.me, holder, KeyPurpose.SHARE_ENCRYPTION)
        plaintext = SharePlaintext(self.me, holder, encode_share(seed_share), encode_share(key_share)).encode()
        return aead.encrypt(key, self.config.chain_id, self.config.round_id, self.me, holder, plaintext)

    # ----------------------------------------------------------------- phase 3: masked input

    def on_shares_committed(self, members: frozenset[int]) -> None:
        """U2 is fixed: decrypt our shares of every member's secrets and derive our pair masks."""
        assert self.phase is Phase.SHARE_KEYS, f"shares committed in phase {self.phase}"
        assert members <= self._keys_set, "committed shares set is not a subset of the keys set"
        self._require_messages(ShareKeys, members, "shares")
        self._require_quorum(members, "shares")
        self._shares_set = members
        self._transition("shares committed")
        if self.me not in self._keys_set or self._secrets is None:
            return
        for owner in sorted(members - {self.me}):
            try:
                bundle = self._stored(ShareKeys, owner)
                check_bundle_recipients(bundle, self._keys_set)
            except ProtocolViolation as violation:
                self._violations.append(violation)
            try:
                self._held_shares[owner] = self._decrypt_shares(owner)
            except ProtocolViolation as violation:
                self._violations.append(violation)
        if self.me in members:
            mask_secret = self._secrets.mask_keys.secret_key
            self._pair_seeds = {
                peer: self._pair_key(mask_secret, self.me, peer, KeyPurpose.MASK) for peer in members - {self.me}
            }
        self._screen_buffered_inputs()

    def _decrypt_shares(self, owner: int) -> tuple[FieldArray, FieldArray]:
        assert self._secrets is not None
        bundle = self._stored(ShareKeys, owner)
        ciphertext = dict(bundle.ciphertexts).get(self.me)
        if ciphertext is None:
            raise ProtocolViolation("share bundle has no ciphertext for us", owner)
        key = self._pair_key(self._secrets.encryption_keys.secret_key, self.me, owner, KeyPurpose.SHARE_ENCRYPTION)
        plaintext = aead.decrypt(key, self.config.chain_id, self.config.round_id, owner, self.me, ciphertext)
        try:
            shares = SharePlaintext.decode(plaintext, self.config.limits)
        except MalformedMessage as error:
            raise MalformedMessage(error.reason, owner) from error
        if (shares.sender, shares.recipient) != (owner, self.me):
            raise ProtocolViolation("share plaintext names the wrong pair", owner)
        if not (self._opens_commitment(owner, self.me, SecretKind.SELF_SEED, shares.self_seed_share)
                and self._opens_commitment(owner, self.me, SecretKind.MASK_KEY, shares.mask_key_share)):
            raise ProtocolViolation("dealt shares do not open the bundle's commitments to them", owner)
        return decode_share(shares.self_seed_share), decode_share(shares.mask_key_share)

    def _screen_buffered_inputs(self) -> None:
        """Drop buffered masked inputs from nodes outside U2: they can never count."""
        store = self._store[MaskedInput]
        for sender in sorted(set(store) - self._shares_set):
            del store[sender]
            self._violations.append(ProtocolViolation("masked input from outside the shares set", sender))

    def exclude_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        """The ledger's disputed pairs (docs/validation.md, "Dispute control"): no pairwise mask between the two
        ends of each, neither added when masking nor reconstructed for a dropped end. Every node of the round
        calls it with the same pairs (fixed when the round opens), before any member masks."""
        assert not self._masked_sent, "disputed pairs change the masks: set them before masking"
        self._disputed = frozenset(frozenset(pair) for pair in pairs)

    def _paired(self, owner: int, peer: int) -> bool:
        return frozenset((owner, peer)) not in self._disputed

    def pair_seeds(self) -> dict[int, bytes]:
        """Our pairwise mask keys s_{me,j} by peer, the disputed ones left out: the masks we add (`mask`), and what
        our blame disclosure expands (`smpc.blame.disclose`)."""
        return {peer: seed for peer, seed in self._pair_seeds.items() if self._paired(self.me, peer)}

    def mask(self, quantized: RingArray) -> MaskedInput:
        """Mask our quantized update (from quantize.quantize) and return the signed MaskedInput."""
        assert self.can_mask and self._secrets is not None, "mask() only once, in U2, in MASKED_INPUT"
        masked = mask_input(quantized, self._secrets.self_seed, self.pair_seeds(), self.me, self._generator)
        self._masked_sent = True
        message = self._sign(MaskedInput(self.config.round_id, self.me, masked.astype("<u4", copy=False).tobytes()))
        self._keep(message)
        return message

    # ----------------------------------------------------------------- phase 4: unmask

    def on_inputs_committed(self, digests: Mapping[int, bytes]) -> UnmaskShares | None:
        """U3 is fixed (by input digests): reveal, for each member of U2, exactly one kind of share."""
        if self.phase is not Phase.MASKED_INPUT and dict(digests) == self._input_digests:
            return self._reveal
        survivors = frozenset(digests)
        plan = {
            owner: SecretKind.SELF_SEED if owner in survivors else SecretKind.MASK_KEY for owner in self._shares_set
        }
        self.guard.check(plan)
        assert self.phase is Phase.MASKED_INPUT, f"inputs committed in phase {self.phase}"
        assert survivors <= self._shares_set, "committed inputs set is not a subset of the shares set"
        self._require_quorum(survivors, "inputs")
        self._input_digests = dict(digests)
        self._transition("inputs committed")
        self._screen_committed_inputs()
        held = {owner: shares for owner, shares in self._held_shares.items() if owner in self._shares_set}
        if not held:
            return None
        self.guard.record({owner: plan[owner] for owner in held})
        reveal = UnmaskShares(
            self.config.round_id,
            self.me,
            tuple((o, encode_share(s[0])) for o, s in sorted(held.items()) if plan[o] is SecretKind.SELF_SEED),
            tuple((o, encode_share(s[1])) for o, s in sorted(held.items()) if plan[o] is SecretKind.MASK_KEY),
        )
        signed = self._sign(reveal)
        self._reveal = signed
        self._keep(signed)
        return signed

    def _screen_committed_inputs(self) -> None:
        store = self._store[MaskedInput]
        for sender, message in self._stored_all(MaskedInput).items():
            if self._input_digests.get(sender) != message.digest():
                del store[sender]
                if sender in self._input_digests:
                    self._violations.append(ProtocolViolation("masked input differs from committed digest", sender))

    def try_finish(self, deadline_passed: bool = False, committed: frozenset[int] | None = None,
                   reveals: Mapping[int, UnmaskShares] | None = None) -> SecAggResult | None:
        """Reconstruct the missing secrets and return the survivors' sum once we can.

        Before the deadline this waits until every survivor has revealed (the most redundancy we
        can expect). After it, `deadline_passed=True` uses whatever arrived and either completes or
        raises RoundAborted; a missing committed masked vector raises MissingMessages instead.
        `committed`: use only the reveals of these holders (the shell passes the reveals the ledger committed,
        so that every node unmasks from the same shares: `decide_unmask`); None uses every stored reveal.
        `reveals`: unmask from exactly these, by sender, whatever is stored (a block's committed reveals, checked
        by the ledger's contract before this node saw them committed: a replica checking that block's result).
        A dealer whose shares contradict its advert aborts the round naming it (`RoundAborted.culprit`).
        """
        if self.phase is not Phase.UNMASK:
            return None
        survivors = frozenset(self._input_digests)
        reveals = self._valid_reveals(committed) if reveals is None else self._allowed_reveals(reveals)
        if not deadline_passed and not survivors <= set(reveals):
            return None
        if not deadline_passed and not survivors <= set(self._store[MaskedInput]):
            return None
        self._require_messages(MaskedInput, survivors, "unmask")
        dropped = self._shares_set - survivors
        liars = self._lying_revealers(reveals)
        checked = {holder: message for holder, message in reveals.items() if holder not in liars}
        try:
            result = self._sum_of(self._decide(checked), survivors, dropped, liars)
        except RoundAborted as exc:
            raise self._abort(str(exc), exc.culprit) from None
        self._transition("finished")
        return result

    def _sum_of(self, decision: UnmaskDecision, survivors: frozenset[int], dropped: frozenset[int],
                liars: frozenset[int]) -> SecAggResult:
        """The survivors' sum from what `decision` recovered: their self seeds, and the mask keys of the dropped,
        whose pair masks with the survivors are removed. Raises RoundAborted (the machine unchanged) for a culprit
        or a missing secret."""
        if decision.culprits:
            owner, kind = decision.culprits[0]
            raise RoundAborted(f"the committed shares of the {kind.value} of {owner} contradict its advert", owner)
        if decision.missing:
            owner, kind = decision.missing[0]
            raise RoundAborted(f"cannot recover the {kind.value} of {owner}: fewer than t + 1 shares")
        seeds = {owner: decision.recovered[(owner, SecretKind.SELF_SEED)] for owner in survivors}
        dropped_seeds = {}
        for owner in sorted(dropped):
            mask_secret = decision.recovered[(owner, SecretKind.MASK_KEY)]
            for peer in survivors:
                if self._paired(owner, peer):
                    dropped_seeds[(owner, peer)] = self._pair_key(mask_secret, owner, peer, KeyPurpose.MASK)
        masked = {owner: self.masked_vector(owner) for owner in survivors}
        total = unmask_sum(masked, seeds, dropped_seeds, self._generator)
        return SecAggResult(total, survivors, dropped, liars, seeds, dropped_seeds)

    def masked_vector(self, owner: int) -> RingArray:
        """A committed masked input y_owner (after unmasking: every survivor's is stored)."""
        message = self._stored(MaskedInput, owner)
        return message.vector()



    def _valid_reveals(self, committed: frozenset[int] | None = None) -> dict[int, UnmaskShares]:
        """Stored reveals (of `committed` holders only, if given) from holders (members of U1) that only reveal
        the allowed kind per owner; a disallowed one is dropped from the store (`_allowed_reveals`)."""
        stored = {sender: message for sender, message in self._stored_all(UnmaskShares).items()
                  if committed is None or sender in committed}
        valid = self._allowed_reveals(stored)
        for sender in stored.keys() - valid.keys():
            del self._store[UnmaskShares][sender]
        return valid

    def _allowed_reveals(self, reveals: Mapping[int, UnmaskShares]) -> dict[int, UnmaskShares]:
        """The given reveals that only reveal what their sender may (else a violation): stored ones, or a check's
        (`try_finish`; signed, checked by the caller's ledger)."""
        survivors = set(self._input_digests)
        dropped = self._shares_set - survivors
        allowed = {}
        for sender, message in reveals.items():
            if message.sender == sender and allowed_reveal(sender, message, self._keys_set, survivors, dropped):
                allowed[sender] = message
            else:
                self._violations.append(ProtocolViolation("reveal of a share it must not reveal", sender))
        return allowed

    def recoverable(self, committed: frozenset[int] | None = None,
                    reveals: Mapping[int, UnmaskShares] | None = None) -> bool:
        """Whether the reveals stored so far (of `committed` holders only, if given), less every reveal of a share
        it must not reveal or off its owner's commitment, decide unmasking (`decide_unmask`): t + 1 shares of each
        secret unmasking needs, and no dealer contradicting its advert; only then does `try_finish(deadline_passed=
        True)` complete instead of aborting. The shell passes the committed reveals, so that every honest node goes
        late on the same shares (red team rt2-1: on gossiped reveals, a dealer that dealt off one polynomial made
        some nodes unmask and others abort). `reveals`: decide on these instead of the stored ones (as
        `try_finish`). Records nothing."""
        if self.phase is not Phase.UNMASK:
            return False
        survivors = frozenset(self._input_digests)
        dropped = self._shares_set - survivors
        source = self._stored_all(UnmaskShares) if reveals is None else reveals
        checked = {holder: message for holder, message in source.items()
                   if (committed is None or holder in committed)
                   and allowed_reveal(holder, message, self._keys_set, survivors, dropped)
                   and self._opens_all(holder, message)}
        return self._decide(checked).complete

    def _decide(self, reveals: Mapping[int, UnmaskShares]) -> UnmaskDecision:
        """`decide_unmask` on checked reveals (each share opens its owner's commitment to it)."""
        survivors = frozenset(self._input_digests)
        needed = needed_secrets(survivors, self._shares_set - survivors)
        return decide_unmask(revealed_shares(reveals.values()), needed, self.config.degree,
                             lambda owner, kind, secret: matches_advert(
                                 self.config, self._stored(AdvertiseKeys, owner), kind, secret))

    def _opens_all(self, holder: int, message: UnmaskShares) -> bool:
        return all(self._opens_commitment(owner, holder, kind, share) for owner, kind, share in _revealed(message))

    def _lying_revealers(self, reveals: Mapping[int, UnmaskShares]) -> frozenset[int]:
        """Holders with a revealed share that does not open its dealer's commitment (or is no share: an honest holder
        decoded every share it holds), each a `WrongReveal`.

        One wrong share proves the lie, so all of that holder's reveals are dropped for the round: checking
        costs one hash per revealed share, whatever the number of liars (a search over subsets of reveals
        against the owner's advert cost C(N, t + 1) reconstructions per secret).
        """
        liars = set()
        for holder, message in reveals.items():
            wrong = sorted(owner for owner, kind, share in _revealed(message)
                           if not self._opens_commitment(owner, holder, kind, share) or not _is_share(share))
            if wrong:
                liars.add(holder)
                self._violations.append(WrongReveal(f"revealed shares off their commitments for {wrong}", holder))
        return frozenset(liars)

    # ----------------------------------------------------------------- excising convicted survivors

    def excise_reveal(self, excised: frozenset[int]) -> UnmaskShares | None:
        """A blame verdict on the ledger convicted `excised`, members of U3 (never us): our shares of their mask
        keys, signed, so that the round finishes over U3 without them (`excise`); None if we hold none (not in
        U1). Their self seeds were revealed at unmasking: revealing both secrets of a convicted member exposes its
        own input only (module doc). Returns the same reveal if called again with the same set."""
        assert self.phase in (Phase.UNMASK, Phase.DONE), f"excise in phase {self.phase}"
        survivors = frozenset(self._input_digests)
        assert excised and excised <= survivors and self.me not in excised, "excised: convicted members of U3"
        if self._excise_reveal is not None:
            assert {o for o, _ in self._excise_reveal.mask_key_shares} <= excised, "excised twice, differently"
            return self._excise_reveal
        held = {owner: shares for owner, shares in self._held_shares.items() if owner in excised}
        if not held:
            return None
        self.guard.convict(excised)
        self.guard.record(dict.fromkeys(held, SecretKind.MASK_KEY))
        reveal = UnmaskShares(self.config.round_id, self.me, (),
                              tuple((owner, encode_share(shares[1])) for owner, shares in sorted(held.items())))
        self._excise_reveal = self._sign(reveal)
        return self._excise_reveal

    def excise(self, excised: frozenset[int], reveals: Mapping[int, UnmaskShares],
               excise_reveals: Mapping[int, UnmaskShares]) -> SecAggResult:
        """The ring sum of the quantized updates of U3 \\ `excised`, from the unmask phase's committed `reveals` and
        the committed `excise_reveals` (by sender; each checked by the ledger), with the members of `excised`
        treated as dropped: their mask keys recovered from the excise reveals, every pair mask between them (and the
        members of U2 \\ U3) and U3 \\ `excised` removed. Raises RoundAborted (the machine stays as it is: the
        ledger decides the round) when fewer than t + 1 members remain, a secret has t or fewer shares, or a
        dealer's shares contradict its advert (`RoundAborted.culprit`). Records nothing."""
        survivors = frozenset(self._input_digests)
        assert self.phase in (Phase.UNMASK, Phase.DONE) and excised <= survivors, "excise after unmasking, of U3"
        kept = survivors - excised
        if len(kept) < self.config.degree + 1:
            raise RoundAborted(f"excise: {len(kept)} members remain, need t + 1 = {self.config.degree + 1}")
        self._require_messages(MaskedInput, kept, "unmask")
        dropped = self._shares_set - survivors
        checked = [message for holder, message in reveals.items()
                   if message.sender == holder and allowed_reveal(holder, message, self._keys_set, survivors, dropped)
                   and self._opens_all(holder, message)]
        checked += [message for holder, message in excise_reveals.items()
                    if message.sender == holder and allowed_excise_reveal(holder, message, self._keys_set, excised)
                    and self._opens_all(holder, message)]
        gone = dropped | excised
        decision = decide_unmask(revealed_shares(checked), needed_secrets(kept, gone), self.config.degree,
                                 lambda owner, kind, secret: matches_advert(
                                     self.config, self._stored(AdvertiseKeys, owner), kind, secret))
        return self._sum_of(decision, kept, gone, frozenset())

    def abort(self, reason: str) -> RoundAborted:
        """The caller gives up on the round (e.g. the contract aborted it); returns the error to log."""
        return self._abort(reason)


def _revealed(message: UnmaskShares) -> list[tuple[int, SecretKind, bytes]]:
    """A reveal's shares as (owner, kind, share)."""
    return ([(owner, SecretKind.SELF_SEED, share) for owner, share in message.self_seed_shares]
            + [(owner, SecretKind.MASK_KEY, share) for owner, share in message.mask_key_shares])


def _is_share(share: bytes) -> bool:
    try:
        decode_share(share)
    except MalformedMessage:
        return False
    return True


def allowed_reveal(sender: int, message: UnmaskShares, keys_set: frozenset[int] | set[int],
                   survivors: frozenset[int] | set[int], dropped: frozenset[int] | set[int]) -> bool:
    """From a member of U1, revealing only self-seed shares of survivors and mask-key shares of the dropped: never
    both secrets of one owner (module doc, "Never both secrets")."""
    return (sender in keys_set and all(owner in survivors for owner, _ in message.self_seed_shares)
            and all(owner in dropped for owner, _ in message.mask_key_shares))


def allowed_excise_reveal(sender: int, message: UnmaskShares, keys_set: frozenset[int] | set[int],
                          excised: frozenset[int] | set[int]) -> bool:
    """An excise reveal (module doc, "Excising convicted survivors"): from a member of U1 not excised, revealing
    mask-key shares of excised members only, and no self-seed share. With the unmask reveal, both secrets of an
    excised (convicted) member, and of nobody else."""
    return (sender in keys_set and sender not in excised and not message.self_seed_shares
            and all(owner in excised for owner, _ in message.mask_key_shares))


def needed_secrets(survivors: Iterable[int], dropped: Iterable[int]) -> list[tuple[int, SecretKind]]:
    """What unmasking reconstructs: each survivor's self seed and each dropped member's mask key."""
    return ([(owner, SecretKind.SELF_SEED) for owner in sorted(survivors)]
            + [(owner, SecretKind.MASK_KEY) for owner in sorted(dropped)])


def revealed_shares(reveals: Iterable[UnmaskShares]) -> dict[tuple[int, SecretKind], dict[int, FieldArray]]:
    """The shares in `reveals` (each decodes: checked on admission), by secret then holder."""
    shares: dict[tuple[int, SecretKind], dict[int, FieldArray]] = {}
    for message in reveals:
        for owner, kind, share in _revealed(message):
            shares.setdefault((owner, kind), {})[message.sender] = decode_share(share)
    return shares


def matches_advert(config: RoundConfig, advert: AdvertiseKeys, kind: SecretKind, secret: bytes) -> bool:
    """Whether a reconstructed secret is the one its owner advertised: H(b) for a self seed, the public key for a
    mask key."""
    if kind is SecretKind.SELF_SEED:
        expected = self_seed_commitment(config.chain_id, config.round_id, advert.sender, secret)
        return expected == advert.self_seed_commitment
    return keypair_from_secret(secret).public_key == advert.mask_public_key


@dataclass(frozen=True, slots=True)
class UnmaskDecision:
    """What a set of reveals decides (`decide_unmask`)."""

    recovered: Mapping[tuple[int, SecretKind], bytes]
    missing: tuple[tuple[int, SecretKind], ...]
    """Secrets with at most t shares: wait for more reveals."""
    culprits: tuple[tuple[int, SecretKind], ...]
    """Secrets whose shares do not all lie on one degree-t polynomial whose secret is the advertised one: proof
    that their owner dealt badly (each share opens the owner's signed commitment to it)."""

    @property
    def complete(self) -> bool:
        return not self.missing and not self.culprits

    @property
    def dealers(self) -> tuple[int, ...]:
        """The owners the culprits prove faulty, sorted."""
        return tuple(sorted({owner for owner, _ in self.culprits}))


def decide_unmask(shares: Mapping[tuple[int, SecretKind], Mapping[int, FieldArray]],
                  needed: Iterable[tuple[int, SecretKind]], degree: int,
                  advertised: Callable[[int, SecretKind, bytes], bool]) -> UnmaskDecision:
    """Decide unmasking from checked shares (each opens its owner's commitment to it): a pure function of them.

    A secret with more than t shares is recovered only if all of them lie on one degree-t polynomial and its
    secret matches the owner's advert (`advertised`); otherwise the owner is a culprit. Every share opens the
    owner's signed per-share commitment, and an honest owner commits to points of one polynomial through its
    advertised secret, so an honest owner is never a culprit; and any t + 1 shares of a recovered secret give the
    same, advertised, secret, so which t + 1 holders revealed first does not matter. Every node deciding on the
    same shares (the ledger's) decides the same.
    """
    recovered: dict[tuple[int, SecretKind], bytes] = {}
    missing, culprits = [], []
    for key in needed:
        points = shares.get(key, {})
        if len(points) <= degree:
            missing.append(key)
            continue
        try:
            result = shamir.reconstruct(points, degree)
            secret = shamir.field_to_secret(result.secret)
        except InconsistentShares:
            culprits.append(key)
            continue
        if result.inconsistent_ids or not advertised(key[0], key[1], secret):
            culprits.append(key)
        else:
            recovered[key] = secret
    return UnmaskDecision(recovered, tuple(missing), tuple(culprits))
