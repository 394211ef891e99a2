"""The simulation's judge, written independently of the code it judges.

It does not reuse the replica's quorum, certificate verification or bookkeeping: it computes the quorum
from N and f itself, counts DISTINCT valid signers of every certificate, and measures a replica's memory
by walking its containers generically. What it shares with the code under test is only the data format
(block hash, the bytes a COMMIT signs) and the simulator's signature scheme.

Checked on every delivery by an honest node: heights in order, a certificate with a quorum of distinct
valid signers for exactly that block, no fork, validity (every transaction acceptable to the
application). Checked on every evidence record: two different messages, validly signed by one replica,
never an honest one. Checked periodically: the state an honest replica holds stays under a bound that
is linear in N (per-peer state bounded). Liveness is judged by the simulation's main loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from consensus import codec
from consensus import messages as wire
from consensus.block import Block, CommitCertificate, commit_statement

Verify = Callable[[int, bytes, bytes], bool]


def safe_quorum(n: int, f: int) -> int:
    """Smallest q with 2q - n >= f + 1 (two quorums share an honest replica), by search, not formula."""
    return next(q for q in range(1, n + 1) if 2 * q - n >= f + 1)


def state_entries(obj: object) -> int:
    """Entries held in the containers of `obj` (and one level inside them), stats Counters excluded."""
    total = 0
    for value in vars(obj).values():
        if isinstance(value, Counter) or not isinstance(value, (dict, list, set, tuple)):
            continue
        total += len(value)
        inner = value.values() if isinstance(value, dict) else value
        total += sum(len(v) for v in inner if isinstance(v, (dict, list, set)))
    return total


def memory_limit(n: int, window: int, interval: int, watched: int) -> int:
    """The bound the checker enforces: a constant plus, per peer, a few dozen entries and one checkpoint
    vote per height of the window, plus the shell's watched transactions (not peer-controlled)."""
    return 100 + n * (40 + 2 * (window // interval + 1)) + watched


class Checker:
    def __init__(self, chain_id: bytes, n: int, f: int, verify: Verify,
                 tx_valid: Callable[[bytes], bool]) -> None:
        self.chain_id, self.n, self.f, self.verify, self.tx_valid = chain_id, n, f, verify, tx_valid
        self.quorum = safe_quorum(n, f)
        self.chain: dict[int, bytes] = {}
        self.violations: list[str] = []
        self.validity_violations: list[str] = []
        self.peak_memory = 0

    def delivered(self, node: int, previous_height: int, block: Block, cert: CommitCertificate) -> None:
        block_hash = block.hash()
        if block.height != previous_height + 1:
            self.violations.append(f"node {node} delivered height {block.height} after {previous_height}")
        problem = self._certificate_problem(block, block_hash, cert)
        if problem:
            self.violations.append(f"node {node} delivered height {block.height} with a bad certificate: {problem}")
        known = self.chain.setdefault(block.height, block_hash)
        if known != block_hash:
            self.violations.append(f"fork at height {block.height}: node {node} delivered "
                                   f"{block_hash.hex()[:12]}, another honest node {known.hex()[:12]}")
        bad = [tx for tx in block.txs if not self.tx_valid(tx)]
        if bad:
            self.validity_violations.append(f"node {node} delivered height {block.height} with {len(bad)} "
                                            f"transaction(s) the application rejects")

    def _certificate_problem(self, block: Block, block_hash: bytes, cert: CommitCertificate) -> str:
        if block.chain_id != self.chain_id or (cert.height, cert.block_hash) != (block.height, block_hash):
            return "not this block's certificate"
        statement = commit_statement(self.chain_id, cert.view, cert.height, cert.block_hash)
        signers = {r for r, sig in cert.signatures if 0 <= r < self.n and self.verify(r, statement, sig)}
        if len(signers) < self.quorum:
            return f"{len(signers)} distinct valid signers, quorum {self.quorum}"
        return ""

    def evidence(self, node: int, kind: str, data: bytes, honest: frozenset[int]) -> None:
        """Evidence must hold two different messages validly signed by one replica, never an honest one."""
        first, second = (wire.decode(m) for m in codec.decode(data, max_bytes=2 * wire.MAX_MESSAGE_BYTES))
        signer = first.sender
        genuine = (second.sender == signer and first != second
                   and all(self.verify(signer, wire.signing_bytes(self.chain_id, m), m.signature)
                           for m in (first, second)))
        if not genuine or signer in honest:
            self.violations.append(f"node {node} recorded false {kind} evidence against replica {signer}")

    def memory(self, node: int, replica: object, limit: int) -> None:
        size = state_entries(replica)
        self.peak_memory = max(self.peak_memory, size)
        if size > limit and not any(v.startswith(f"memory: node {node}") for v in self.violations):
            self.violations.append(f"memory: node {node} holds {size} entries, limit {limit}")
