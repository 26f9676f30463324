"""BLINK (val), the paper's seven multi-image subtasks, multiple choice.

Official protocol (read): zeyofu/BLINK_Benchmark ``eval/test_benchmark.py`` ``analyze_answer`` (letter
extraction) and ``eval/evaluate.py`` ``eval_prediction`` (exact match with the gold ``(X)``, mean over
subtasks, the subtask parsed from ``idx``).

``analyze_answer`` in its order: the whole answer equal to ``A``..``E`` gives ``(X)``; equal to
``(A)``..``(E)`` is kept; otherwise the whitespace tokens that are one of this item's choices
``(A)``.. are intersected with the answer and with its last paragraph (split on a blank line); when
neither has exactly one, or the answer has none, the official code asks GPT-3.5 to pick
(``multiple_choice.match_multiple_choice``); an answer that is no string raises inside its ``try`` and
gives no prediction (wrong, no judge).

Offline there is no judge, so the figure is rule-only (``protocol`` kind "rule-only", ``rule_only``): the
rule is read on the WHOLE answer first, as the official code reads it, so every answer it decides is
decided the same way; only where it would ask the judge, the same rule on the ``<answer>...</answer>``
part stands in for it (``judge_stand_in`` answers: a reasoning model's letter is in that tag, a token
such as ``<answer>(B)</answer>`` is none of the choices), and where that decides nothing either the
answer counts as WRONG (``judge_needed``).

Denominator: ``eval_prediction`` counts every ``idx`` of the answer file, so an item of a scored subtask
whose other fields are bad (no gold among its choices, no choices) is scored 0 and listed in
``zero_for_bad_input_items``; an item without a usable ``idx`` belongs to no subtask and is an error.

Records are read from a JSON/JSONL export of the Hugging Face dataset (``idx``, ``question``,
``choices``, ``answer``, ``prompt``, ``sub_task``, ``image_1``..``image_4`` as image paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.benchmarks.base import protocol, read_json, require, result
from migrl.benchmarks.zero import ZERO_KEY, Scan, ZeroItem, count_zeros, zero_entries
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, RecordError, record_from_dict
from migrl.boxes import answer_part

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


def _task_of(item: Any) -> str | None:
    """The subtask an item counts in (``sub_task``, else from ``idx``); None without a string ``idx``."""
    if not isinstance(item, dict) or not isinstance(item.get("idx"), str):
        return None
    sub_task = item.get("sub_task")
    return sub_task.replace(" ", "_") if isinstance(sub_task, str) and sub_task else subtask_of(item["idx"])


def scan(data_path: str | Path, paper_subtasks: bool = True) -> Scan:
    """The items of the scored subtasks: records, and zero items (see ``migrl.benchmarks.zero``)."""
    out = Scan(LoadReport(), [])
    items = read_json(data_path)
    if not isinstance(items, list):
        out.report.errors.append(f"{data_path}: expected a JSON list (or JSONL) of BLINK items")
        return out
    for i, item in enumerate(items):
        where = f"{data_path}: item {i}"
        task = _task_of(item)
        if task is not None and paper_subtasks and task not in PAPER_SUBTASKS:
            continue
        try:
            out.report.records.append(record_from_dict(_record(item, where), where))
        except RecordError as exc:
            if task is None:
                out.report.errors.append(str(exc))
            else:
                out.keep_zero(task, ZeroItem.from_error(exc, item["idx"]))
    return out


def load(data_path: str | Path, image_root: str | Path | None = None, paper_subtasks: bool = True) -> LoadReport:
    """Items of the paper's seven subtasks (all 14 with ``paper_subtasks=False``); ids are ``idx``."""
    found = scan(data_path, paper_subtasks)
    found.report.source = found
    return found.report


def read_choice(text: Any, n_choices: int) -> tuple[str | None, str]:
    """The choice, and how it was read: "rule" (the official rule on the whole answer), "stand-in" (the
    rule on the ``<answer>`` part, where the official code would ask its judge), "judge" (undecided:
    wrong offline) or "error" (no string: the official ``try`` gives no prediction)."""
    if not isinstance(text, str):
        return None, "error"
    choice = analyze_answer(text, n_choices)
    if choice is not None:
        return choice, "rule"
    part = answer_part(text)
    choice = analyze_answer(part, n_choices) if part != text else None
    return (choice, "stand-in") if choice is not None else (None, "judge")


def mean_of_fractions(hits: dict[str, int], totals: dict[str, int]) -> float | None:
    """``eval_prediction``'s average: the mean of the unrounded subtask accuracies, rounded once (the mean of
    rounded percentages can be 0.01 off: 33.33 and 100 give 66.66, the official 66.67)."""
    fractions = [hits.get(t, 0) / n for t, n in totals.items() if n]
    return round(100 * sum(fractions) / len(fractions), 2) if fractions else None


def _detail(paper_subtasks: bool, ways: dict[str, int]) -> str:
    subset = ("paper subset: the paper's seven subtasks (Table 6)" if paper_subtasks else "all 14 subtasks")
    return (f"BLINK eval/test_benchmark.py analyze_answer + eval/evaluate.py eval_prediction (exact match, mean over "
            f"subtasks) on {subset}; no GPT-3.5 judge offline: of the {ways['stand-in'] + ways['judge']} answers the "
            f"official code would hand to it, {ways['stand-in']} read from their <answer> part, {ways['judge']} "
            "counted wrong")


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space = Space.QWEN25,
    root: Path | None = None,
    sizing: ImageSizing | None = None,
    paper_subtasks: bool = True,
) -> dict[str, Any]:
    """Rule-only accuracy per subtask (``coords``/``sizing`` unused: no boxes)."""
    found: Scan = loaded.source
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    ways = {"rule": 0, "stand-in": 0, "judge": 0, "error": 0}
    missing = 0
    for record in found.report.records:
        totals[record.task] = totals.get(record.task, 0) + 1
        if record.id not in predictions:
            missing += 1
            continue
        choice, how = read_choice(predictions[record.id], len(record.choices or ()))
        ways[how] += 1
        hits[record.task] = hits.get(record.task, 0) + (choice is not None and choice == record.answer)
    count_zeros(found.zeros, totals)
    out = result(hits, totals, missing, found.other_errors())
    out["avg"] = out["id_avg"] = mean_of_fractions(hits, totals)
    out.update(rule_only=True, judge_needed=ways["judge"], judge_stand_in=ways["stand-in"])
    out[ZERO_KEY] = zero_entries(found.zeros)
    out["protocol"] = protocol("rule-only", _detail(paper_subtasks, ways), sum(totals.values()), len(found.zeros))
    return out
