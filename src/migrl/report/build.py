"""``migrl report``: eval folders in, ``report.md`` + ``report.html`` + box pictures out.

The numbers are the eval folders' ``scores.json`` as written (never re-scored here), so the report
says exactly what the scorer said. Pictures and per-item answers come from ``predictions.jsonl``
and the records the eval ran on. The charts (``charts``, inline SVG) show those numbers with the bootstrap
intervals of their ``per_item``, the answers' format / right-image rates, and the training curves of the model
folder each eval folder names (``runinfo``); report.md gives each chart's figures as a table.
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
from migrl.boxes import Space, parse_answer
from migrl.images import ImageError, ImageSizing, resolve_image_path
from migrl.jsonl import write_text_atomic
from migrl.records import LoadReport, Record, load_records
from migrl.report import runinfo
from migrl.report.charts import Bars, bar_chart, line_chart
from migrl.report.paper import paper_rows
from migrl.report.pictures import (
    BoxReader,
    draw_item,
    load_images,
    place_every_box,
    place_prediction,
    save_png_atomic,
)
from migrl.report.render import Chart, Item, Table, to_html, to_markdown
from migrl.scoring.chains import ChainRates, chain_rates
from migrl.scoring.intervals import intervals
from migrl.scoring.judge import first_box, target_box
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


CHAIN_FIGURES = (("right step", "right_step"), ("hit | right", "hit_after_right"), ("hit | other", "hit_after_other"))


def chain_table(runs: list[Run], records: list[Record], domains: dict[str, str]) -> Table | None:
    """Per task and run: how often the chain's last locate step was right, and the hits after a right step and
    after any other (``migrl.scoring.chains``); None where no record carries a worked chain (not the world's)."""
    rates = {run.label: chain_rates(records, run.predictions, run.scores.get("per_item") or {}) for run in runs}
    tasks = [t for t in _task_order(runs, domains) if any(t in r for r in rates.values())]
    if not tasks:
        return None

    def cells(of: dict[str, ChainRates], names: list[str]) -> list[str]:
        out = []
        for _, field_name in CHAIN_FIGURES:
            values = [getattr(of[t], field_name) for t in names if t in of]
            values = [v for v in values if v is not None]
            out.append(_number(sum(values) / len(values)) if values else "-")
        return out

    rows = [[t, domains.get(t, "").upper() or "-"] + [c for run in runs for c in cells(rates[run.label], [t])]
            for t in tasks]
    for domain, name in (("id", "ID avg"), ("ood", "OOD avg")):
        group = [t for t in tasks if domains.get(t) == domain]
        if group:
            rows.append([name, ""] + [c for run in runs for c in cells(rates[run.label], group)])
    header = ["task", "domain"] + [f"{run.label}: {name}" for run in runs for name, _ in CHAIN_FIGURES]
    note = ("right step: the answer's last 'Locate the <name> in image <k>.' names the object and image of the worked "
            "chain (percent of the task's items); hit | right, hit | other: the scorer's hits among those answers and "
            "among the rest. Better grounding alone can add at most right step x (100 - hit | right) / 100 points "
            "to a task; the rest needs the chain to pick the right object and image. Averages are means over tasks.")
    return Table("Chains of thought: the last step, and the hits after it (%)", header, rows, note)


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
    """Up to ``per_task`` grounding records of each task that some run answered: first one the last run got
    right and one it got wrong (its scores' ``per_item``), where they exist, so the pictures show both; then
    the task's first others. In the records' order."""
    answered = {rid for run in runs for rid in run.predictions}
    outcome = runs[-1].scores.get("per_item") or {} if runs else {}
    by_task: dict[str, list[Record]] = {}
    for record in records:
        if record.boxes and record.id in answered:
            by_task.setdefault(record.task, []).append(record)
    chosen: set[str] = set()
    for candidates in by_task.values():
        hit = next((r.id for r in candidates if r.id in outcome and outcome[r.id][1]), None)
        miss = next((r.id for r in candidates if r.id in outcome and not outcome[r.id][1]), None)
        picks = [rid for rid in (hit, miss) if rid is not None][:per_task]
        picks += [r.id for r in candidates if r.id not in picks][:per_task - len(picks)]
        chosen.update(picks)
    return [r for r in records if r.id in chosen]


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


def figure_intervals(runs: list[Run], domains: dict[str, str], entry: Benchmark) -> dict[str, dict[str, list[float]]]:
    """Each run's 95% bootstrap intervals (``migrl.scoring.intervals``, seed 0) from its ``per_item``, computed
    here once for every chart and table; a run whose scorer keeps no ``per_item`` has none."""
    from migrl.tasks import ID_TASKS

    in_domain = {t for t, d in domains.items() if d == "id"} if domains else set(ID_TASKS)
    out = {}
    for run in runs:
        per_item = run.scores.get("per_item")
        if per_item:  # without a split "id_avg" is the mean of every task, as the scorer has it
            id_tasks = in_domain if entry.id_ood_split else {task for task, _ in per_item.values()}
            out[run.label] = intervals(per_item, id_tasks, seed=0)
    return out


def _groups(runs: list[Run], domains: dict[str, str], entry: Benchmark) -> list[tuple[str, str]]:
    """(figure key, name) of each bar group: the tasks, then the averages the score table shows."""
    averages = AVERAGES if entry.id_ood_split else AVERAGES[-1:]
    return [(t, t) for t in _task_order(runs, domains)] + list(averages)


def _figure(scores: dict[str, Any], key: str) -> Any:
    return scores.get("tasks", {}).get(key) if key in scores.get("tasks", {}) else scores.get(key)


def score_chart(runs: list[Run], domains: dict[str, str], entry: Benchmark,
                bounds: dict[str, dict[str, list[float]]]) -> Chart:
    """Bars per task and average, one per run, with the 95% intervals as whiskers; its table for report.md."""
    groups = _groups(runs, domains, entry)
    series = [Bars(run.label, {name: _figure(run.scores, key) for key, name in groups},
                   {name: bounds[run.label][key] for key, name in groups if key in bounds.get(run.label, {})})
              for run in runs]
    rows = [[name] + [_number(s.values[name]) + (" [{:.2f}, {:.2f}]".format(*s.bounds[name]) if name in s.bounds else "")
                      for s in series] for _, name in groups]
    missing = [run.label for run in runs if run.label not in bounds]
    note = "95% bootstrap intervals over the items, resampled within each task (2,000 draws, seed 0)" + (
        f"; no interval for {', '.join(missing)}: its scores.json keeps no per_item" if missing else "")
    title = entry.score_title.replace("Scores", "Accuracy") + " with 95% intervals"
    return Chart(title, bar_chart(title, [n for _, n in groups], series, order=[r.label for r in runs]),
                 Table(title, ["figure"] + [r.label for r in runs], rows, note))


def answer_rates(records: list[Record], run: Run) -> dict[str, float]:
    """Percent of the run's scored grounding items whose answer has the trained format (the format reward's
    rule, ``parse_answer(...).format_ok``) and whose box lies on the target image (the judge's ``target_box``:
    the image the answer names, else the target); {} where no such item was answered."""
    scored = run.scores.get("per_item") or run.predictions
    items = [r for r in records if r.target is not None and r.id in scored]
    texts = [(run.predictions.get(r.id), r) for r in items]
    if not run.predictions or not items:
        return {}
    formatted = sum(t is not None and parse_answer(t).format_ok for t, _ in texts)
    on_target = sum(t is not None and target_box(t, r.target.image_index) is not None for t, r in texts)
    return {"format": 100.0 * formatted / len(items), "right image": 100.0 * on_target / len(items),
            "items": float(len(items))}


def rates_chart(runs: list[Run], rates: dict[str, dict[str, float]]) -> Chart | None:
    shown = [run for run in runs if rates.get(run.label)]
    if not shown:
        return None
    groups = ["format", "right image"]
    series = [Bars(run.label, {g: rates[run.label][g] for g in groups}) for run in shown]
    rows = [[run.label] + [_number(rates[run.label][g]) for g in groups] + [f"{rates[run.label]['items']:.0f}"]
            for run in shown]
    title = "Answers with the trained format / the box on the right image (%)"
    note = ("format: <think>..</think><answer> with a JSON box (the format reward's rule); right image: the answer's "
            "first box lies on the image the object is in; over the run's scored items with a target box")
    return Chart(title, bar_chart(title, groups, series, order=[r.label for r in runs]),
                 Table(title, ["run", "format", "right image", "items"], rows, note))


def curve_charts(logs: dict[str, list[dict[str, Any]]], order: list[str]) -> list[Chart]:
    """The trainers' curves over steps (``runinfo.CURVES``), with first / last / min / max for report.md."""
    charts = []
    for title, unit, series in runinfo.curves(logs):
        rows = [[label, f"{pts[0][0]:g}-{pts[-1][0]:g}", f"{pts[0][1]:.4g}", f"{pts[-1][1]:.4g}",
                 f"{min(v for _, v in pts):.4g}", f"{max(v for _, v in pts):.4g}"] for label, pts in series.items()]
        charts.append(Chart(title, line_chart(title, series, unit, order),
                            Table(title, ["run", "steps", "first", "last", "min", "max"], rows,
                                  "from the model folder's trainer_state.json (log_history)")))
    return charts


def runs_table(runs: list[Run], models: dict[str, tuple[Path | None, str]], log_notes: dict[str, str]) -> Table:
    """Which model answered each run, found from its eval folder (``runinfo``), and how it was evaluated."""
    rows = []
    for run in runs:
        model, why = models[run.label]
        settings = runinfo.eval_identity(run.folder)
        asked = ", ".join(f"{k} {settings[k]}" for k in ("max_new_tokens", "cot") if k in settings) or "-"
        rows.append([run.label, str(run.folder), str(model) if model else f"unknown ({why})",
                     runinfo.family_name(model), runinfo.recipe_of(model), runinfo.evaluated_at(run.folder),
                     asked, log_notes.get(run.label) or ("-" if model is None else "trainer_state.json")])
    return Table("Runs", ["run", "eval folder", "model folder", "family", "recipe", "evaluated", "eval settings",
                          "training log"], rows, f"Report written by migrl {runinfo.migrl_version()}; model folders "
                 "found by the weight fingerprint the eval recorded (predictions.run.json).")


def run_figures(runs: list[Run], records: list[Record], domains: dict[str, str],
                entry: Benchmark) -> tuple[list[Table], list[Chart]]:
    """The runs table, and every chart: accuracy with intervals, answer rates, training curves."""
    models = runinfo.find_models({run.label: run.folder for run in runs})
    logs, log_notes = {}, {}
    for run in runs:
        logs[run.label], log_notes[run.label] = runinfo.training_log(models[run.label][0])
    rates = {run.label: answer_rates(records, run) for run in runs}
    charts = [score_chart(runs, domains, entry, figure_intervals(runs, domains, entry)), rates_chart(runs, rates)]
    charts += curve_charts(logs, [run.label for run in runs])
    return [runs_table(runs, models, log_notes)], [c for c in charts if c is not None]


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
    meta, charts = run_figures(loaded, records.records, domains, entry)
    tables = meta + [score_table(loaded, domains, entry)]
    chains = chain_table(loaded, records.records, domains)
    if chains is not None:
        tables.append(chains)
    comparison = paper_table(loaded, entry)
    if comparison is not None:
        tables.append(comparison)
    notes = run_notes(loaded) + [f"records: {e}" for e in records.errors[:20]]
    if unreadable:  # grey panels: say where the images were looked for
        notes.append(f"pictures: {len(unreadable)} image(s) not found or unreadable under {root} (e.g. {unreadable[0]}); "
                     "pass --image-root, the folder the data's image paths are relative to")
    title = f"migrl report: {benchmark}"
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, to_markdown(title, tables, items, notes, charts))
    write_text_atomic(page, to_html(title, tables, items, notes, charts))
    return md, page
