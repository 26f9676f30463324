"""``migrl report``: eval folders in, ``report.md`` + ``report.html`` + box pictures out.

The numbers are the eval folders' ``scores.json`` as written (never re-scored here), so the report
says exactly what the scorer said. Pictures and per-item answers come from ``predictions.jsonl``
and the records the eval ran on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.jsonl import write_text_atomic
from migrl.records import Record, data_root, load_records
from migrl.report.paper import MIG_BENCH, paper_rows
from migrl.report.pictures import draw_item, load_images, place_prediction, save_png_atomic
from migrl.report.render import Item, Table, to_html, to_markdown
from migrl.scoring.predictions import read_predictions

PICTURES = "pictures"
AVERAGES = (("id_avg", "ID avg"), ("ood_avg", "OOD avg"), ("avg", "avg"))


@dataclass
class Run:
    label: str
    folder: Path
    scores: dict[str, Any]
    predictions: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_run(label: str, folder: Path) -> Run:
    scores_path = folder / "scores.json"
    if not scores_path.is_file():
        raise FileNotFoundError(
            f"run {label!r}: {scores_path} does not exist; pass the folder `migrl eval --out` wrote "
            "(it holds scores.json and predictions.jsonl)"
        )
    scores = json.loads(scores_path.read_text(encoding="utf-8"))
    preds_path = folder / "predictions.jsonl"
    if not preds_path.is_file():
        return Run(label, folder, scores, problems=[f"{preds_path} is missing: no answers or pictures for this run"])
    preds = read_predictions(preds_path)
    return Run(label, folder, scores, preds.texts, preds.errors)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _task_order(runs: list[Run], domains: dict[str, str]) -> list[str]:
    tasks = {t for run in runs for t in run.scores.get("tasks", {})}
    return sorted(tasks, key=lambda t: (domains.get(t) != "id", t))  # in-domain first, as the averages


def score_table(runs: list[Run], domains: dict[str, str]) -> Table:
    """Acc@0.5 per task per run (hits / items), then the ID / OOD / overall means over tasks."""
    rows = []
    for task in _task_order(runs, domains):
        cells = [task, domains.get(task, "").upper() or "-"]
        for run in runs:
            value = run.scores.get("tasks", {}).get(task)
            count = run.scores.get("counts", {}).get(task)
            cells.append(_number(value) + (f" ({count[0]}/{count[1]})" if value is not None and count else ""))
        rows.append(cells)
    for key, name in AVERAGES:
        rows.append([name, ""] + [_number(run.scores.get(key)) for run in runs])
    return Table("Scores per task (Acc@0.5, %)", ["task", "domain"] + [r.label for r in runs], rows)


def _our_value(scores: dict[str, Any], key: str) -> Any:
    return scores.get("tasks", {}).get(key, scores.get(key))


def paper_table(runs: list[Run], benchmark: str) -> Table | None:
    """The paper's rows for this benchmark with ours under them; None where the paper has no table."""
    columns, rows = paper_rows(benchmark)
    if not columns:
        return None
    keys = [k for k, _ in columns]
    body = [[f"paper: {model}"] + [_number(values.get(k)) for k in keys] for model, values in rows.items()]
    body += [[f"ours: {run.label}"] + [_number(_our_value(run.scores, k)) for k in keys] for run in runs]
    note = "The paper's figures as printed (tables named in migrl/report/paper.py)."
    if benchmark == MIG_BENCH:
        note = "Paper: Table 2 (per task, AVG) and Table 3 (in-domain / out-of-domain)."
    return Table("The paper beside ours", ["model"] + [label for _, label in columns], body, note)


def run_notes(runs: list[Run]) -> list[str]:
    notes = []
    for run in runs:
        missing = run.scores.get("missing_predictions")
        if missing:
            notes.append(f"{run.label}: {missing} item(s) had no prediction and count as wrong")
        errors = list(run.scores.get("errors", [])) + list(run.scores.get("record_errors", [])) + run.problems
        notes += [f"{run.label}: {e}" for e in errors[:20]]
        if len(errors) > 20:
            notes.append(f"{run.label}: ... and {len(errors) - 20} more problem(s)")
    return notes


def select_records(records: list[Record], runs: list[Run], per_task: int) -> list[Record]:
    """The first ``per_task`` grounding records of each task that some run answered."""
    answered = {rid for run in runs for rid in run.predictions}
    chosen, seen = [], {}
    for record in records:
        if record.boxes and record.id in answered and seen.get(record.task, 0) < per_task:
            seen[record.task] = seen.get(record.task, 0) + 1
            chosen.append(record)
    return chosen


def _picture_name(n: int, record: Record) -> str:
    return f"{n:03d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', record.id)[:80]}.png"


def make_pictures(
    records: list[Record], runs: list[Run], root: Path, out: Path, coords: Space, sizing: ImageSizing
) -> list[Item]:
    items = []
    for n, record in enumerate(records):
        images = load_images(record, root)
        preds = [place_prediction(r.label, r.predictions.get(record.id), record, images, coords, sizing) for r in runs]
        name = f"{PICTURES}/{_picture_name(n, record)}"
        save_png_atomic(draw_item(record, images, preds, sizing), out / name)
        items.append(Item(record, name, preds))
    keep = {out / item.picture for item in items}
    for old in (out / PICTURES).glob("*.png"):  # pictures of an earlier report would mislead
        if old not in keep:
            old.unlink()
    return items


def write_report(
    runs: dict[str, Path],
    data: Path,
    out: Path,
    benchmark: str = "world",
    pictures_per_task: int = 2,
    coords: Space = Space.QWEN25,
    sizing: ImageSizing | None = None,
) -> tuple[Path, Path]:
    """Write ``out/report.md``, ``out/report.html`` and ``out/pictures/*.png``; returns the two reports.

    ``runs`` maps a label to an eval folder; ``data`` is the records JSONL the runs were evaluated on;
    ``coords`` / ``sizing`` are the space the models answered in and their processor's image setting.
    """
    if not runs:
        raise ValueError("write_report needs at least one run: {label: eval folder}")
    loaded = [load_run(label, Path(folder)) for label, folder in runs.items()]
    records = load_records(data)
    domains = {r.task: r.domain for r in records.records}
    chosen = select_records(records.records, loaded, pictures_per_task)
    out = Path(out)
    items = make_pictures(chosen, loaded, data_root(data), out, Space(coords), sizing or ImageSizing())
    tables = [score_table(loaded, domains)]
    comparison = paper_table(loaded, benchmark)
    if comparison is not None:
        tables.append(comparison)
    notes = run_notes(loaded) + [f"records: {e}" for e in records.errors[:20]]
    title = f"migrl report: {benchmark}"
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, to_markdown(title, tables, items, notes))
    write_text_atomic(page, to_html(title, tables, items, notes))
    return md, page
