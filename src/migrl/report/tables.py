"""Plain-text tables of scores for the terminal."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def stage_table(stages: dict[str, dict[str, Any]]) -> str:
    """Tasks as rows, stages as columns, then the ID / OOD / overall averages."""
    names = list(stages)
    tasks: list[str] = []
    for scores in stages.values():
        tasks += [t for t in scores.get("tasks", {}) if t not in tasks]
    width = max([len(t) for t in tasks] + [8])
    header = f"{'task':<{width}}  " + "  ".join(f"{n:>8}" for n in names)
    lines = [header, "-" * len(header)]
    for t in tasks:
        lines.append(f"{t:<{width}}  " + "  ".join(f"{_cell(stages[n].get('tasks', {}).get(t)):>8}" for n in names))
    lines.append("-" * len(header))
    for key, label in (("id_avg", "ID avg"), ("ood_avg", "OOD avg"), ("avg", "avg")):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{_cell(stages[n].get(key)):>8}" for n in names))
    return "\n".join(lines)
