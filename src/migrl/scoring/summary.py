"""Per-task accuracy and the averages every report uses: plain means over tasks, not over items."""

from __future__ import annotations

from typing import Iterable


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def summarize(hits: dict[str, int], totals: dict[str, int], id_tasks: Iterable[str]) -> dict:
    """``{"tasks": {task: percent}, "avg", "id_avg", "ood_avg", "counts": {task: [hits, total]}}``."""
    id_tasks = set(id_tasks)
    tasks = {t: round(100.0 * hits.get(t, 0) / totals[t], 2) for t in sorted(totals) if totals[t]}
    return {
        "tasks": tasks,
        "avg": mean(tasks.values()),
        "id_avg": mean(v for t, v in tasks.items() if t in id_tasks),
        "ood_avg": mean(v for t, v in tasks.items() if t not in id_tasks),
        "counts": {t: [hits.get(t, 0), totals[t]] for t in tasks},
    }
