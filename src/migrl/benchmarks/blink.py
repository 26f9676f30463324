"""BLINK (val), the paper's seven multi-image subtasks, multiple choice.

Official protocol (read): zeyofu/BLINK_Benchmark ``eval/test_benchmark.py`` ``analyze_answer`` (letter
extraction) and ``eval/evaluate.py`` ``eval_prediction`` (exact match with the gold ``(X)``, mean over
subtasks, the subtask parsed from ``idx``).

``analyze_answer`` in its order: the whole answer equal to ``A``..``E`` gives ``(X)``; equal to
``(A)``..``(E)`` is kept; otherwise the whitespace tokens that are one of this item's choices
``(A)``.. are intersected with the answer and with its last paragraph (split on a blank line); when
neither has exactly one, or the answer has none, the official code asks GPT-3.5 to pick
(``multiple_choice.match_multiple_choice``). Offline that case counts as WRONG and is tallied in
``judge_needed``: the figure is ``rule_only``. A documented extension, as in MIG-Bench scoring: when
the text has ``<answer>...</answer>``, the rule reads that part.

Records are read from a JSON/JSONL export of the Hugging Face dataset (``idx``, ``question``,
``choices``, ``answer``, ``prompt``, ``sub_task``, ``image_1``..``image_4`` as image paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.benchmarks.base import build_record, read_json, require, result
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError
from migrl.scoring.migbench import answer_part

PAPER_SUBTASKS = (
    "Counting", "Forensic_Detection", "IQ_Test", "Jigsaw", "Multi-view_Reasoning", "Visual_Similarity",
    "Visual_Correspondence",
)
LETTERS = ("A", "B", "C", "D", "E")
OPTIONS = tuple(f"({c})" for c in LETTERS)


def analyze_answer(answer: str, n_choices: int) -> str | None:
    """The official extraction; None where the official code would ask the GPT judge."""
    all_choices = set(OPTIONS[:n_choices])
    intersect = all_choices & set(answer.split())
    intersect_last = all_choices & set(answer.split("\n\n")[-1].split())
    if answer in LETTERS:
        return f"({answer})"
    if answer in OPTIONS:
        return answer
    if (len(intersect) != 1 and len(intersect_last) != 1) or len(intersect) < 1:
        return None
    return next(iter(intersect_last if len(intersect_last) == 1 else intersect))


def subtask_of(idx: str) -> str:
    """``eval_prediction``: ``val_Multi-view_Reasoning_12`` -> ``Multi-view_Reasoning``."""
    split = idx.split("_", 1)[0]
    return "_".join(idx.split(split, 1)[1][1:].split("_")[:-1])


def _record(item: Any, where: str) -> dict[str, Any]:
    idx = require(item, "idx", str, where)
    choices = require(item, "choices", list, where)
    if not 1 <= len(choices) <= len(LETTERS) or not all(isinstance(c, str) for c in choices):
        raise RecordError(where, "choices", f"expected 1 to {len(LETTERS)} strings, got {choices!r}")
    answer = require(item, "answer", str, where)
    if answer not in OPTIONS[: len(choices)]:
        raise RecordError(where, "answer", f"expected one of {list(OPTIONS[:len(choices)])}, got {answer!r}")
    images = [item[k] for k in ("image_1", "image_2", "image_3", "image_4") if item.get(k)]
    if not all(isinstance(p, str) for p in images):
        raise RecordError(where, "image_1", "image fields must be paths (export the images first)")
    sub_task = item.get("sub_task")
    task = sub_task.replace(" ", "_") if isinstance(sub_task, str) and sub_task else subtask_of(idx)
    question = item.get("prompt") if isinstance(item.get("prompt"), str) else require(item, "question", str, where)
    return {
        "id": idx, "task": task, "images": images, "question": question, "choices": choices, "answer": answer,
        "split": idx.split("_", 1)[0], "domain": "ood", "source": "blink",
    }


def load(data_path: str | Path, image_root: str | Path | None = None, paper_subtasks: bool = True) -> LoadReport:
    """Items of the paper's seven subtasks (all 14 with ``paper_subtasks=False``); ids are ``idx``."""
    report = LoadReport()
    items = read_json(data_path)
    if not isinstance(items, list):
        report.errors.append(f"{data_path}: expected a JSON list (or JSONL) of BLINK items")
        return report
    for i, item in enumerate(items):
        where = f"{data_path}: item {i}"
        try:
            raw = _record(item, where)
        except RecordError as exc:
            report.errors.append(str(exc))
            continue
        if not paper_subtasks or raw["task"] in PAPER_SUBTASKS:
            build_record(raw, where, report)
    return report


def score_choices(
    records: list[Record], predictions: dict[str, str], extract, errors: list[str]
) -> dict[str, Any]:
    """Exact-match accuracy per task, mean over tasks; None from ``extract`` = the judge's case (wrong)."""
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    missing = judge_needed = 0
    for record in records:
        totals[record.task] = totals.get(record.task, 0) + 1
        text = predictions.get(record.id)
        if text is None:
            missing += 1
            continue
        choice = extract(answer_part(text) if isinstance(text, str) else "", record)
        judge_needed += choice is None
        hits[record.task] = hits.get(record.task, 0) + (choice is not None and choice == record.answer)
    out = result(hits, totals, missing, errors)
    out.update(rule_only=True, judge_needed=judge_needed)
    return out


def score(
    data_path: str | Path,
    predictions: dict[str, str],
    coords: Space | str = Space.QWEN25,
    image_root: str | Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Rule-only accuracy per subtask (``coords``/``sizing`` unused: no boxes)."""
    loaded = load(data_path, image_root)
    extract = lambda text, r: analyze_answer(text, len(r.choices or ()))  # noqa: E731
    return score_choices(loaded.records, predictions, extract, list(loaded.errors))
