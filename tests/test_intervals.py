"""Bootstrap intervals over items (migrl.scoring.intervals): each task resampled within itself, the means over
tasks as the scorer takes them, a difference paired on the same items."""

from __future__ import annotations

import random

import pytest

from migrl.scoring.intervals import intervals, point


def _run(rates: dict[str, float], n: int, seed: int) -> dict:
    rng = random.Random(seed)
    return {f"{t}-{i}": [t, int(rng.random() < p)] for t, p in rates.items() for i in range(n)}


def test_a_certain_run_has_no_width_and_an_interval_holds_its_figure():
    sure = {f"a-{i}": ["a", 1] for i in range(50)} | {f"b-{i}": ["b", 0] for i in range(50)}
    got = intervals(sure, ["a"])
    assert got["a"] == [100.0, 100.0] and got["b"] == [0.0, 0.0] and got["avg"] == [50.0, 50.0]
    run = _run({"a": 0.3, "b": 0.6, "c": 0.1}, 200, seed=1)
    figures, bounds = point(run, ["a"]), intervals(run, ["a"])
    for key in ("a", "b", "c", "id_avg", "ood_avg", "avg"):
        assert bounds[key][0] <= figures[key] <= bounds[key][1], key
    assert figures["avg"] == pytest.approx((figures["a"] + figures["b"] + figures["c"]) / 3, abs=0.01)  # mean over tasks


def test_more_items_give_a_narrower_interval():
    def width(n: int) -> float:
        low, high = intervals(_run({"a": 0.4}, n, seed=2), ["a"])["avg"]
        return high - low

    assert width(800) < width(50) / 2


def test_a_difference_is_paired_on_the_same_items():
    """Two runs equal on every item differ by exactly 0 in every draw; unpaired draws would not."""
    run = _run({"a": 0.5, "b": 0.5}, 300, seed=3)
    assert intervals(run, ["a"], other=dict(run))["avg"] == [0.0, 0.0]
    better = {k: [t, 1 if k.endswith(("0", "1")) else r] for k, (t, r) in run.items()}  # ~a fifth more right
    diff, bounds = point(run, ["a"], better), intervals(run, ["a"], better)
    assert diff["avg"] > 0 and 0 < bounds["avg"][0] <= diff["avg"] <= bounds["avg"][1]
    assert point(better, ["a"], run)["avg"] == -diff["avg"]
