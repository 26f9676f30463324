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

from migrl.answer_space import SPACES_NEEDING_SIZING, AnswerSpace
from migrl.bad_records import OptionError
from migrl.benchmarks import Benchmark, get
from migrl.benchmarks.base import root_of
from migrl.boxes import Space
from migrl.images import ImageError, ImageSizing, resolve_image_path
from migrl.jsonl import write_text_atomic
from migrl.records import LoadReport, Record, load_records
from migrl.report.paper import paper_rows
from migrl.report.pictures import (
    BoxReader,
    draw_item,
    load_images,
    place_every_box,
    place_prediction,
    save_png_atomic,
)
from migrl.report.render import Item, Table, to_html, to_markdown
from migrl.scoring.judge import first_box
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


def read_scores(label: str, folder: Path) -> dict[str, Any]:
    """An eval folder's ``scores.json``."""
    scores_path = folder / "scores.json"
    if not scores_path.is_file():
        raise FileNotFoundError(
            f"run {label!r}: {scores_path} does not exist; pass the folder `migrl eval --out` wrote "
            "(it holds scores.json and predictions.jsonl)"
        )
    return json.loads(scores_path.read_text(encoding="utf-8"))


def load_run(label: str, folder: Path) -> Run:
    scores = read_scores(label, folder)
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


def score_table(runs: list[Run], domains: dict[str, str], entry: Benchmark) -> Table:
    """Acc@0.5 per task per run (hits / items), then the ID / OOD / overall means over tasks."""
    rows = []
    for task in _task_order(runs, domains):
        cells = [task, domains.get(task, "").upper() or "-"]
        for run in runs:
            value = run.scores.get("tasks", {}).get(task)
            count = run.scores.get("counts", {}).get(task)
            cells.append(_number(value) + (f" ({count[0]}/{count[1]})" if value is not None and count else ""))
        rows.append(cells)
    # the ID / OOD means exist for MIG-Bench's split (and the world's); elsewhere "id_avg" is just the mean
    for key, name in AVERAGES if entry.id_ood_split else AVERAGES[-1:]:
        rows.append([name, ""] + [_number(run.scores.get(key)) for run in runs])
    if any(run.scores.get("class_avg") for run in runs):  # Ref-L4 scored with its category table
        rows.append(["class average", ""] + [_number((run.scores.get("class_avg") or {}).get("acc50")) for run in runs])
    return Table(entry.score_title, ["task", "domain"] + [r.label for r in runs], rows,
                 protocol_note(runs))


def protocol_note(runs: list[Run]) -> str:
    """Each run's figure labelled with its protocol and denominator (what ``migrl score`` prints)."""
    parts = []
    for run in runs:
        p = run.scores.get("protocol")
        if not p:
            continue
        averaged = run.scores.get("averaged")  # ODinW: the subsets in avg (the others are shown, outside it)
        mean_of = f"; avg over {', '.join(averaged)}" if averaged else ""
        parts.append(f"{run.label}: {p['kind']} ({p['detail']}); {p['items']} items, "
                     f"{p['zero_for_bad_input']} scored 0 for bad input{mean_of}")
    return "Protocol -- " + " | ".join(parts) if parts else ""


def _our_value(scores: dict[str, Any], key: str) -> Any:
    return scores.get("tasks", {}).get(key, scores.get(key))


def paper_table(runs: list[Run], entry: Benchmark) -> Table | None:
    """The paper's rows for this benchmark with ours under them; None where the paper has no table."""
    columns, rows = paper_rows(entry.name)
    if not columns:
        return None
    columns = columns + list(entry.extra_columns)
    keys = [k for k, _ in columns]
    body = [[f"paper: {model}"] + [_number(values.get(k)) for k in keys] for model, values in rows.items()]
    body += [[f"ours: {run.label}" + (" (rule-only)" if run.scores.get("rule_only") else "")]
             + [_number(_our_value(run.scores, k)) for k in keys] for run in runs]
    return Table("The paper beside ours", ["model"] + [label for _, label in columns], body, entry.paper_note)


def run_notes(runs: list[Run]) -> list[str]:
    notes = []
    for run in runs:
        missing = run.scores.get("missing_predictions")
        if missing:
            notes.append(f"{run.label}: {missing} item(s) had no prediction and count as wrong")
        if run.scores.get("rule_only"):
            notes.append(f"{run.label}: rule-only figure: {run.scores.get('judge_needed', 0)} answer(s) the official "
                         "code would hand to its GPT judge count as wrong (no judge offline)")
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
    records: list[Record], runs: list[Run], root: Path, out: Path, coords: Space, sizing: ImageSizing,
    reader: BoxReader = first_box,
    every_box: bool = False,
) -> list[Item]:
    items = []
    for n, record in enumerate(records):
        images = load_images(record, root)
        if every_box:
            preds = [place_every_box(r.label, r.predictions.get(record.id), record, images, coords, sizing) for r in runs]
        else:
            preds = [place_prediction(r.label, r.predictions.get(record.id), record, images, coords, sizing, reader)
                     for r in runs]
        name = f"{PICTURES}/{_picture_name(n, record)}"
        save_png_atomic(draw_item(record, images, preds, sizing), out / name)
        items.append(Item(record, name, preds))
    keep = {out / item.picture for item in items}
    for old in (out / PICTURES).glob("*.png"):  # pictures of an earlier report would mislead
        if old not in keep:
            old.unlink()
    return items


def _readable(path: str, root: Path) -> bool:
    try:
        return resolve_image_path(path, root).is_file()
    except ImageError:
        return False


def report_records(data: Path, entry: Benchmark, image_root: Path | None) -> tuple[LoadReport, Path]:
    """The records the runs answered, and the folder their images are relative to.

    A migrl records JSONL (the world, or a benchmark already converted) is read as such, whichever paper table
    goes beside it; otherwise the benchmark's own loader reads its official annotation file, with the ids its
    eval and scorer use, so the pictures show the official items.
    """
    root = image_root or root_of(data, None)
    if data.is_file() and data.suffix == ".jsonl":
        as_records = load_records(data)
        if as_records.records:
            return as_records, root
    return entry.load(data, image_root), root


def runs_answer_space(runs: dict[str, Path]) -> AnswerSpace:
    """The space the runs' answers are in, as ``migrl eval`` stored it in each ``scores.json``; refuses runs
    that stored none or that disagree (their boxes could not be drawn on one set of pictures)."""
    spaces = {}
    for label, folder in runs.items():
        scores = read_scores(label, Path(folder))  # not the predictions: write_report reads those once
        if "answer_space" not in scores:
            raise OptionError(f"run {label!r}: {Path(folder) / 'scores.json'} does not say which space its answers are in "
                              "(written by an older migrl): pass --model FOLDER, or --coords and --max-pixels")
        spaces[label] = AnswerSpace.from_dict(scores["answer_space"])
    if len(set(spaces.values())) > 1:
        raise OptionError(f"the runs answered in different spaces ({ {k: v.to_dict() for k, v in spaces.items()} }): "
                          "report them separately, or pass --coords / --max-pixels to draw them all one way")
    return next(iter(spaces.values()))


def write_report(
    runs: dict[str, Path],
    data: Path,
    out: Path,
    benchmark: str = "world",
    pictures_per_task: int = 2,
    coords: Space | None = None,
    sizing: ImageSizing | None = None,
    image_root: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``out/report.md``, ``out/report.html`` and ``out/pictures/*.png``; returns the two reports.

    ``runs`` maps a label to an eval folder; ``data`` is what the runs were evaluated on (a records JSONL,
    or the benchmark's official annotation file); ``coords`` / ``sizing`` are the space the models
    answered in and their processor's image setting (default: what eval stored, ``runs_answer_space``);
    ``image_root`` as for ``migrl eval``.
    """
    if not runs:
        raise ValueError("write_report needs at least one run: {label: eval folder}")
    if coords is None:
        stored = runs_answer_space(runs)
        coords, sizing = stored.coords, stored.sizing
    loaded = [load_run(label, Path(folder)) for label, folder in runs.items()]
    entry = get(benchmark)
    records, root = report_records(Path(data), entry, Path(image_root) if image_root else None)
    domains = {r.task: r.domain for r in records.records}
    chosen = select_records(records.records, loaded, pictures_per_task)
    out = Path(out)
    coords = Space(coords)
    if sizing is None and coords in SPACES_NEEDING_SIZING:
        raise OptionError(f"report: {coords.value} boxes need the models' image setting (sizing)")
    items = make_pictures(chosen, loaded, root, out, coords, sizing, entry.box_reader(coords) or first_box,
                          every_box=entry.every_box)
    unreadable = sorted({path for r in chosen for path in r.images if not _readable(path, root)})
    tables = [score_table(loaded, domains, entry)]
    comparison = paper_table(loaded, entry)
    if comparison is not None:
        tables.append(comparison)
    notes = run_notes(loaded) + [f"records: {e}" for e in records.errors[:20]]
    if unreadable:  # grey panels: say where the images were looked for
        notes.append(f"pictures: {len(unreadable)} image(s) not found or unreadable under {root} (e.g. {unreadable[0]}); "
                     "pass --image-root, the folder the data's image paths are relative to")
    title = f"migrl report: {benchmark}"
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, to_markdown(title, tables, items, notes))
    write_text_atomic(page, to_html(title, tables, items, notes))
    return md, page
