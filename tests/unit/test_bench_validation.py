"""The validation benchmark at toy size: it drives a whole validated round and counts the bytes each
node really sends. The transaction sizes are checked against transactions built here with the
contract's own encoder, the total against the sum of the measured parts, and the payload sizes against
the layouts written out below; the script's formula must agree with all of them."""

from __future__ import annotations

import pytest

from node import contract as rc
from scripts.bench_validation import (
    BASELINE_STEPS,
    VALIDATION_STEPS,
    dealt_tx_bytes,
    measure,
    reveal_tx_bytes,
    share_payload_bytes,
    sketch_sum_payload_bytes,
    stats_tx_bytes,
    validation_bytes_formula,
)

CHAIN = b"\x00" * 32


def _tx_bytes(kind: str, n: int, *fields: object) -> int:
    """Size of a real transaction from the last member (author n - 1) in round 1."""
    return len(rc.make_tx(CHAIN, kind, n - 1, 1, list(fields), lambda body: bytes(64)))


@pytest.mark.parametrize(("n", "width"), [(4, 64), (5, 40)])
def test_measured_bytes_match_independently_computed_sizes(n: int, width: int) -> None:
    res = measure(n, 300, width, degree=1, repeats=1, seed=3)
    assert (res["nodes"], res["length"], res["width"], res["accepted"]) == (n, 300, width, n)
    assert set(VALIDATION_STEPS + BASELINE_STEPS) <= set(res["median_ms"])
    b = res["bytes"]
    statistics = n * (n + 1) // 2  # n squared norms and n(n-1)/2 distances, one GF(p) element each
    assert b["tx_stats"] == _tx_bytes("stats", n, bytes(8 * statistics)) == stats_tx_bytes(n)
    assert b["tx_dealt"] == _tx_bytes("dealt", n, bytes(32), bytes(32 * n)) == dealt_tx_bytes(n)
    assert b["tx_reveal"] == _tx_bytes("reveal", n, bytes(32), bytes(32 * n)) == reveal_tx_bytes(n)
    # 5 fixints, then bins: the share (8 bytes per bucket), C(n-2, 1) contributions and C(n-1, 1)
    # commitments of 32 bytes, and a 64-byte signature
    share = 5 + (3 + 8 * width) + (2 + 32 * (n - 2)) + (2 + 32 * (n - 1)) + (2 + 64)
    assert b["sketch_shares"] == (n - 1) * share == (n - 1) * share_payload_bytes(n, width, 1)
    assert b["sketch_sum"] == (n - 1) * (4 + (3 + 8 * width) + (2 + 64)) == (n - 1) * sketch_sum_payload_bytes(width)
    parts = b["sketch_shares"] + b["sketch_sum"] + b["tx_stats"] + b["tx_dealt"] + b["tx_reveal"]
    assert b["validation"] == parts == b["formula"] == validation_bytes_formula(n, width, 1)
    masked_one = b["masked"] // (n - 1)
    assert b["masked"] == (n - 1) * masked_one and 4 * (300 + 1) < masked_one < 4 * (300 + 1) + 400
    assert res["bytes_ratio"] == b["validation"] / b["masked"]
