"""One percentile definition (device.percentiles): nearest rank, a measured value, the same in every report."""

from __future__ import annotations

import random

import pytest

from device.percentiles import Recent, quantile


def test_quantile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert quantile(values, 0.5) == 51.0
    assert quantile(values, 0.99) == 100.0
    assert quantile(values, 1.0) == 100.0
    assert quantile(values, 0.0) == 1.0
    assert quantile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_recent_holds_the_last_n_values() -> None:
    window = Recent(n=4)
    assert window.quantile(0.5) is None and window.summary() is None
    for v in (100.0, 1.0, 2.0, 3.0, 4.0):  # 100 falls out
        window.add(v)
    assert len(window) == 4
    assert window.quantile(1.0) == 4.0
    assert sorted(window.values()) == [1.0, 2.0, 3.0, 4.0]
    assert window.summary(scale=1000.0) == {"n": 4, "p50": 3000.0, "p90": 4000.0, "p99": 4000.0, "max": 4000.0}


def test_extend_keeps_the_same_values_as_adding_one_at_a_time() -> None:
    rng = random.Random(7)
    for n in (1, 3, 8):
        one, many = Recent(n=n), Recent(n=n)
        for _ in range(20):
            chunk = [rng.random() for _ in range(rng.randrange(0, 12))]
            for v in chunk:
                one.add(v)
            many.extend(iter(chunk))  # any iterable, not only lists
            assert many.values() == one.values(), n
