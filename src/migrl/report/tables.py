"""Plain-text tables of scores for the terminal: two decimals, in-domain tasks first, each figure with its 95%
interval where one is given (``migrl.scoring.intervals``)."""

from __future__ import annotations

from typing import Any

AVERAGES = (("id_avg", "ID avg"), ("ood_avg", "OOD avg"), ("avg", "avg"))


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _with(value: Any, bounds: list[float] | None) -> str:
    return _cell(value) + (f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds and value is not None else "")


def stage_line(stage: str, scores: dict[str, Any], bounds: dict[str, list[float]] | None = None) -> str:
    """One stage's averages with their intervals, e.g. ``base: ID 1.00 [0.62, 1.50]  OOD ...``."""
    bounds = bounds or {}
    return f"{stage}: " + "  ".join(f"{label.replace(' avg', '')} {_with(scores.get(k), bounds.get(k))}"
                                    for k, label in AVERAGES)


def difference_line(name: str, diff: dict[str, Any]) -> str:
    """``rl-cot_sft: ID +0.12 [-0.40, 0.65]  OOD ...``: a difference and its paired interval."""
    value, bounds = diff["value"], diff["interval"]
    return f"{name}: " + "  ".join(
        f"{label.replace(' avg', '')} {value[k]:+.2f} [{bounds[k][0]:+.2f}, {bounds[k][1]:+.2f}]"
        for k, label in AVERAGES if k in value)


def stage_table(stages: dict[str, dict[str, Any]], intervals: dict[str, dict[str, list[float]]] | None = None,
                domains: dict[str, str] | None = None, reference: dict[str, dict[str, Any]] | None = None,
                reference_name: str = "README") -> str:
    """Tasks as rows (in-domain first), stages as columns, then the ID / OOD / overall averages; a 95% interval
    beside each figure that has one. ``reference`` (stage -> the same scores of another run, e.g. the README's)
    adds a last column with that run's figures of the same stages, ``a / b / c``."""
    from migrl.tasks import ID_TASKS

    intervals = intervals or {}
    names = list(stages)
    tasks: list[str] = []
    for scores in stages.values():
        tasks += [t for t in scores.get("tasks", {}) if t not in tasks]
    in_domain = set(ID_TASKS) if domains is None else {t for t, d in domains.items() if d == "id"}
    tasks.sort(key=lambda t: (t not in in_domain, t))
    shown = [n for n in names if n in (reference or {})]
    def beside(figure: Any) -> list[str]:
        return [" / ".join(_cell(figure(reference[n])) for n in shown)] if shown else []
    rows = [[f"{t} ({'ID' if t in in_domain else 'OOD'})"] +
            [_with(stages[n].get("tasks", {}).get(t), intervals.get(n, {}).get(t)) for n in names] +
            beside(lambda s, t=t: s.get("tasks", {}).get(t)) for t in tasks]
    averages = [[label] + [_with(stages[n].get(k), intervals.get(n, {}).get(k)) for n in names] +
                beside(lambda s, k=k: s.get(k)) for k, label in AVERAGES]
    columns = names + ([f"{reference_name}: " + " / ".join(shown)] if shown else [])
    width = max(len(r[0]) for r in rows + averages)
    cols = [max([len(n)] + [len(r[i + 1]) for r in rows + averages]) for i, n in enumerate(columns)]
    def line(cells: list[str]) -> str:
        return f"{cells[0]:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells[1:], cols))
    header = line(["task"] + columns)
    return "\n".join([header, "-" * len(header), *map(line, rows), "-" * len(header), *map(line, averages)])
