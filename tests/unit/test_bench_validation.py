"""The validation benchmark at toy size: it drives a whole validated round and counts bytes exactly."""

from __future__ import annotations

from scripts.bench_validation import (
    BASELINE_STEPS,
    DEALT_TX_BYTES,
    REVEAL_TX_BYTES,
    VALIDATION_STEPS,
    measure,
    share_payload_bytes,
    sketch_sum_payload_bytes,
    stats_tx_bytes,
    validation_bytes_formula,
)


def test_measure_reports_times_and_bytes_matching_the_documented_formula() -> None:
    n, length, width = 4, 1000, 64
    res = measure(n, length, width, degree=1, repeats=1, seed=3)
    assert (res["nodes"], res["length"], res["width"], res["accepted"]) == (n, length, width, n)
    median = res["median_ms"]
    for step in VALIDATION_STEPS + BASELINE_STEPS + ("validation", "secure", "ratio", "cpu_ratio"):
        assert median[step] > 0, step
    b = res["bytes"]
    # 5 fixints, then bins: share (bin16), 2 contributions, 3 commitments and a signature (bin8)
    assert b["sketch_shares"] == (n - 1) * share_payload_bytes(n, width, 1) == (n - 1) * (8 * width + 5 * 32 + 64 + 14)
    assert b["tx_stats"] == stats_tx_bytes(n) == 8 * 10 + 114 and b["tx_dealt"] == DEALT_TX_BYTES == 146
    assert b["tx_reveal"] == REVEAL_TX_BYTES == 147
    assert b["sketch_sum"] == (n - 1) * sketch_sum_payload_bytes(width) == (n - 1) * (8 * width + 64 + 9)
    assert b["validation"] == b["formula"] == validation_bytes_formula(n, width, 1)
    masked_one = b["masked"] // (n - 1)
    assert b["masked"] == (n - 1) * masked_one and 4 * (length + 1) < masked_one < 4 * (length + 1) + 400
    assert res["bytes_ratio"] == b["validation"] / b["masked"]
