"""Bootstrap intervals over items, computed once here for every figure the demo and the report print.

A run's outcomes are ``{item id: [task, 1 if right else 0]}`` (``per_item`` in scores.json of migrl records and
MIG-Bench). Items are resampled with replacement within each task, so each task keeps its size, and every
figure is recomputed from the draw as the scorer computes it: a task's accuracy, and the ID / OOD / overall
means over tasks. The interval of a difference is *paired*: both runs take the same draw of the items they
share, so what the items have in common (an easy task, a hard picture) cancels. 2,000 draws; the 2.5th and
97.5th percentiles (95%).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

DRAWS = 2000
LEVEL = 0.95
AVERAGES = ("id_avg", "ood_avg", "avg")

Outcomes = dict[str, Any]  # item id -> [task, 0 | 1]


def _by_task(outcomes: Outcomes, ids: Iterable[str]) -> dict[str, list[str]]:
    tasks: dict[str, list[str]] = {}
    for rid in ids:
        tasks.setdefault(outcomes[rid][0], []).append(rid)
    return tasks


def _draws(outcomes: Outcomes, tasks: dict[str, list[str]], picks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each task's accuracy (percent) in every draw."""
    return {t: 100.0 * np.array([outcomes[r][1] for r in rids], dtype=float)[picks[t]].mean(axis=1)
            for t, rids in tasks.items()}


def _figures(per_task: dict[str, np.ndarray], id_tasks: set[str]) -> dict[str, np.ndarray]:
    """The scorer's figures in every draw: per task, and the means over tasks."""
    def mean(names: list[str]) -> np.ndarray | None:
        return np.mean([per_task[t] for t in names], axis=0) if names else None

    out: dict[str, np.ndarray] = dict(per_task)
    for key, names in (("id_avg", [t for t in per_task if t in id_tasks]),
                       ("ood_avg", [t for t in per_task if t not in id_tasks]), ("avg", list(per_task))):
        value = mean(names)
        if value is not None:
            out[key] = value
    return out


def _bounds(values: np.ndarray) -> list[float]:
    tail = 100 * (1 - LEVEL) / 2
    return [round(float(np.percentile(values, tail)), 2), round(float(np.percentile(values, 100 - tail)), 2)]


def intervals(outcomes: Outcomes, id_tasks: Iterable[str], other: Outcomes | None = None, draws: int = DRAWS,
              seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of a run's figures, or, with ``other``, of ``other`` minus this run on the items both have."""
    ids = sorted(outcomes) if other is None else sorted(set(outcomes) & set(other))
    tasks = _by_task(outcomes, ids)
    rng = np.random.default_rng(seed)
    picks = {t: rng.integers(0, len(rids), size=(draws, len(rids))) for t, rids in sorted(tasks.items())}
    id_tasks = set(id_tasks)
    figures = _figures(_draws(outcomes, tasks, picks), id_tasks)
    if other is not None:
        theirs = _figures(_draws(other, tasks, picks), id_tasks)
        figures = {k: theirs[k] - v for k, v in figures.items()}
    return {k: _bounds(v) for k, v in figures.items()}


def point(outcomes: Outcomes, id_tasks: Iterable[str], other: Outcomes | None = None) -> dict[str, float]:
    """The figures themselves (the difference with ``other``), as the intervals' centre."""
    ids = sorted(outcomes) if other is None else sorted(set(outcomes) & set(other))
    tasks = _by_task(outcomes, ids)
    every = {t: np.arange(len(rids))[None, :] for t, rids in tasks.items()}
    mine = _figures(_draws(outcomes, tasks, every), set(id_tasks))
    if other is not None:
        theirs = _figures(_draws(other, tasks, every), set(id_tasks))
        mine = {k: theirs[k] - v for k, v in mine.items()}
    return {k: round(float(v[0]), 2) for k, v in mine.items()}
