"""MMIU, the paper's four relation types, multiple choice.

Official protocol (read): OpenGVLab/MMIU ``evaluate.py`` ``process_data`` / ``remove_punctuation`` (choice
extraction) and ``evaluate_correct.py`` (accuracy per task, mean over tasks).

``process_data`` in its order: strip; the error strings and ``""`` give ``Z``; drop U+00A0; strip
leading/trailing ``.,()``; a single letter ``a``..``n`` (any case) is the choice; anything else goes to
the GPT-4o-mini judge. Offline the judge's case counts as WRONG and is tallied in ``judge_needed``: the
figure is ``rule_only``. ``evaluate_correct.py``: an item whose gold ``output`` is null is skipped
(not counted); correct when ``choice.strip().lower()`` is a SUBSTRING of ``output.strip().lower()``.
Documented extension, as for BLINK: when the text has ``<answer>...</answer>``, that part is read.

Items are those of the released JSON (``task``, ``options`` "A: ...\\nB: ...", ``question``,
``context``, ``input_image_path``, ``output``); ids are 0-based positions. The relation type is the
first folder of the image paths (e.g. ``./Low-level-semantic/...``). The paper keeps four types:
low-level semantic, high-level semantic (objective / subjective), two-dimensional spatial; only
"Low-level-semantic" was seen in the official files, the other folder names are matched loosely.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrl.benchmarks.base import build_record, read_json, require
from migrl.benchmarks.blink import score_choices
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError
from migrl.scoring.summary import mean

_ERROR_ANSWERS = ("image none", "model error or image error", "image error", "model error", "")
_LETTERS = tuple("abcdefghijklmn")
_OPTION_LINE = re.compile(r"^\s{0,8}([A-Za-z])\s{0,4}[:.)]\s?(.*)$")
SEMANTIC, SPATIAL = "semantic", "spatial"


def relation_type(image_path: str) -> str:
    parts = [p for p in image_path.replace("\\", "/").split("/") if p not in ("", ".")]
    return parts[0] if len(parts) > 1 else ""


def paper_group(rel_type: str) -> str | None:
    """Which of the paper's two averages (Sem, Spa) a relation type belongs to, or None if not kept."""
    key = re.sub(r"[^a-z0-9]", "", rel_type.lower())
    if key.startswith(("lowlevel", "highlevel")):
        return SEMANTIC
    if key.startswith(("2d", "twod")):
        return SPATIAL
    return None


def remove_punctuation(text: str) -> str:
    return re.sub(r"^[.,()]+|[.,()]+$", "", text)


def extract_choice(prediction: str) -> str | None:
    """``process_data``: the choice letter, ``Z`` for an error answer, None for the judge's case."""
    prediction = prediction.strip()
    if prediction in _ERROR_ANSWERS:
        return "Z"
    prediction = remove_punctuation(prediction.replace("\u00a0", "").strip())
    return prediction.strip() if prediction.strip().lower() in _LETTERS else None


def is_correct(choice: str | None, gold: str) -> bool:
    """``evaluate_correct.py``: substring test on lower-cased strings."""
    return choice is not None and choice.strip().lower() in gold.strip().lower()


def parse_options(options: str) -> list[str]:
    lines = [m.group(2).strip() for line in options.splitlines() if (m := _OPTION_LINE.match(line))]
    return lines or [options]


def _record(item: Any, i: int, where: str) -> dict[str, Any] | None:
    task = require(item, "task", str, where)
    images = require(item, "input_image_path", list, where)
    if not images or not all(isinstance(p, str) and p for p in images):
        raise RecordError(where, "input_image_path", "expected a non-empty list of paths")
    gold = item.get("output")
    if gold is None:
        return None  # evaluate_correct.py skips items without gold
    if not isinstance(gold, str):
        raise RecordError(where, "output", f"expected a string or null, got {type(gold).__name__}")
    options = require(item, "options", str, where)
    rel = relation_type(images[0])
    return {
        "id": str(i), "task": task, "images": [p.removeprefix("./") for p in images],
        "question": require(item, "question", str, where), "choices": parse_options(options), "answer": gold,
        "domain": "ood", "source": "mmiu", "meta": {"relation_type": rel, "context": item.get("context", "")},
    }


def load(data_path: str | Path, image_root: str | Path | None = None, paper_types: bool = True) -> LoadReport:
    """Items of the paper's four relation types (all with ``paper_types=False``)."""
    report = LoadReport()
    items = read_json(data_path)
    if not isinstance(items, list):
        report.errors.append(f"{data_path}: expected a JSON list of MMIU items")
        return report
    for i, item in enumerate(items):
        where = f"{data_path}: item {i}"
        try:
            raw = _record(item, i, where)
        except RecordError as exc:
            report.errors.append(str(exc))
            continue
        if raw is not None and (not paper_types or paper_group(raw["meta"]["relation_type"])):
            build_record(raw, where, report)
    return report


def score(
    data_path: str | Path,
    predictions: dict[str, str],
    coords: Space | str = Space.QWEN25,
    image_root: str | Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Rule-only accuracy per task, mean over tasks, and the paper's Sem / Spa averages over tasks."""
    loaded = load(data_path, image_root)
    extract = lambda text, r: _gold_choice(extract_choice(text), r)  # noqa: E731
    out = score_choices(loaded.records, predictions, extract, list(loaded.errors))
    group = {r.task: paper_group(r.meta["relation_type"]) for r in loaded.records}
    out["sem"] = mean(v for t, v in out["tasks"].items() if group.get(t) == SEMANTIC)
    out["spa"] = mean(v for t, v in out["tasks"].items() if group.get(t) == SPATIAL)
    return out


def _gold_choice(choice: str | None, record: Record) -> str | None:
    """Map a correct choice to the gold string so ``score_choices``' exact match applies the substring rule."""
    if choice is None:
        return None
    return record.answer if is_correct(choice, record.answer or "") else choice
