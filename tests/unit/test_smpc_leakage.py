"""Why secure aggregation: a one-record logistic-regression update leaks the record exactly, what
peers receive under secure aggregation does not, and the revealed sum mixes every hospital's records.

For the logistic loss on one record (x, y), the gradient is (sigmoid(w.x + b) - y) * (x, 1), so the
update of one local step is proportional to (x, 1) and x = update_w / update_b (the analytic
attack of Phong et al. 2017 / Zhu et al.'s DLG in closed form).
"""

import numpy as np

from smpc import field
from smpc.messages import MaskedInput, decode
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams, dequantize_sum, quantize
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round

FEATURES, N = 12, 5


def one_record_update(x: np.ndarray, y: float, w: np.ndarray, b: float, lr: float = 0.5) -> np.ndarray:
    residual = 1.0 / (1.0 + np.exp(-(w @ x + b))) - y
    return -lr * residual * np.append(x, 1.0)


def analytic_attack(update: np.ndarray) -> np.ndarray:
    return update[:FEATURES] / update[FEATURES]


def test_plaintext_update_leaks_the_record_but_the_masked_one_does_not() -> None:
    rng = np.random.default_rng(20)
    w, b = rng.standard_normal(FEATURES) * 0.1, 0.0
    records = {i: (rng.uniform(0.0, 3.0, FEATURES), float(i % 2)) for i in range(1, N + 1)}
    updates = {i: one_record_update(x, y, w, b) for i, (x, y) in records.items()}
    params = QuantParams.for_participants(clip_l2=10.0, max_participants=N)
    rand = SeededRandomBytes.from_int(20)
    quantized = {i: quantize(u, params, rand) for i, u in updates.items()}

    victim_x = records[1][0]
    assert np.allclose(analytic_attack(updates[1]), victim_x)
    dequantized = field.ring_to_signed(quantized[1]) / params.scale
    assert np.allclose(analytic_attack(dequantized), victim_x, rtol=1e-4)

    config = RoundConfig(b"leak", 1, tuple(range(1, N + 1)), 2, FEATURES + 1)
    outcome = run_round(config, quantized, DropSchedule(), seed=20)
    received = [decode(data, config.limits) for data in outcome.wire]
    masked = next(m for m in received if isinstance(m, MaskedInput) and m.sender == 1).vector()
    guess = analytic_attack(field.ring_to_signed(masked) / params.scale)
    assert np.max(np.abs(guess - victim_x)) > 1.0
    assert abs(float(np.corrcoef(guess, victim_x)[0, 1])) < 0.9

    total = dequantize_sum(outcome.results[2].total, params)
    assert np.allclose(total, sum(updates.values()), atol=N / params.scale)
    mixture = analytic_attack(total)
    assert all(np.max(np.abs(mixture - x)) > 0.1 for x, _ in records.values())
