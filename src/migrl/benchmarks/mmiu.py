"""MMIU, the paper's nineteen tasks of four relation types (Table 8), multiple choice.

Official protocol (read): OpenGVLab/MMIU ``evaluate.py`` ``process_data`` / ``remove_punctuation`` (choice
extraction) and ``evaluate_correct.py`` (accuracy per task, mean over tasks).

``process_data`` in its order: strip; the error strings and ``""`` give ``Z``; drop U+00A0; strip
leading/trailing ``.,()``; a single letter ``a``..``n`` (any case) is the choice; anything else goes to
the GPT-4o-mini judge. Offline the judge's case counts as WRONG and is tallied in ``judge_needed``: the
figure is ``rule_only``. ``evaluate_correct.py``: an item whose gold ``output`` is null is skipped
(not counted); correct when ``choice.strip().lower()`` is a SUBSTRING of ``output.strip().lower()``.
Documented extension, as for BLINK: the rule reads the WHOLE answer first, as the official code does;
only where that leaves the judge's case, the same rule on the ``<answer>...</answer>`` part stands in
for the judge (``judge_stand_in``), so no answer the official rule decides is decided otherwise.

Tasks scored (``score(..., tasks=...)``):

- ``"paper"`` (default): Table 8's nineteen tasks, by its abbreviations. MMIU's 52 tasks are 59
  folders in the release (seven tasks are split by source dataset, e.g. ``forensic_detection_blink``
  and ``forensic_detection_forgerynet``); a paper task is the accuracy over all its folders' items
  (``folders`` keeps each folder's official figure). Sem = mean of the ten semantic tasks (high-level
  objective VGR STS VCor SC FC, subjective ER CR MIC, low-level VQA FD), Spa = mean of the nine
  two-dimensional spatial tasks (ISTE HE PT RPM JPS ICSC IQASC ITRSC SOT), as the paper defines them.
  Its printed row puts the nine spatial names first, but its Sem / Spa are the means of the first ten
  / last nine VALUES, which fit semantic-first (GPT-4o 67.8 / 41.7; MMIU finds spatial the harder):
  the values are semantic-first, the names are not, so compare Sem / Spa, not single columns.
- ``"types"``: every task of the four relation types (34 folders), each folder a task, Sem/Spa by type.
- ``"all"``: every task of the file (59 folders), ``evaluate_correct.py``'s overall mean.

Items are those of the released JSON (``task``, ``options`` "A: ...\\nB: ...", ``question``,
``context``, ``input_image_path``, ``output``); ids are 0-based positions. The relation type is the
first folder of the image paths (e.g. ``./Low-level-semantic/...``). The paper keeps four types:
low-level semantic, high-level semantic (objective / subjective), two-dimensional spatial (folders
``Low-level-semantic``, ``High-level-obj-semantic``, ``High-level-sub-semantic``, ``2D-spatial``; the
names are matched loosely).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

from migrl.benchmarks.base import build_record, protocol, read_json, require, result
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError
from migrl.boxes import answer_part
from migrl.scoring.summary import mean

_ERROR_ANSWERS = ("image none", "model error or image error", "image error", "model error", "")
_LETTERS = tuple("abcdefghijklmn")
_OPTION_LINE = re.compile(r"^\s{0,8}([A-Za-z])\s{0,4}[:.)]\s?(.*)$")
SEMANTIC, SPATIAL = "semantic", "spatial"
TASK_CHOICES = ("paper", "types", "all")

# Table 8's tasks by its abbreviations (the report's column order) -> MMIU's task names: the folders of
# the release (a task split by source dataset lists each folder, then the task's own name).
PAPER_TASKS: dict[str, tuple[str, ...]] = {
    # two-dimensional spatial (2D-spatial): Spa
    "ISTE": ("Image_Spatial_Transformation_Estimation",),
    "HE": ("Homography_estimation",),
    "PT": ("point_tracking",),
    "RPM": ("ravens_progressive_matrices",),
    "JPS": ("jigsaw_puzzle_solving",),
    "ICSC": ("Image_Captioning_with_Spatial_Context",),
    "IQASC": ("Icon_Question_Answering_with_Spatial_Context",),
    "ITRSC": ("Image_text_retrieval_with_Spatial_Context",),
    "SOT": ("single_object_tracking",),
    # high-level objective semantic (High-level-obj-semantic): Sem
    "VGR": ("visually_grounded_reasoning_marvl", "visually_grounded_reasoning_nlvr2", "visually_grounded_reasoning"),
    "STS": ("spot_the_similarity",),
    "VCor": ("visual_correspondence_blink", "visual_correspondence_scannet", "visual_correspondence"),
    "SC": ("semantic_correspondence_blink", "semantic_correspondence_misc210k", "semantic_correspondence"),
    "FC": ("functional_correspondence_blink", "functional_correspondence_funk_point", "functional_correspondence"),
    # high-level subjective semantic (High-level-sub-semantic): Sem
    "ER": ("emotion_recognition_expw", "emotion_recognition_findingemo", "emotion_recognition"),
    "CR": ("casuality_reasoning_next_qa", "casuality_reasoning_var", "casuality_reasoning"),
    "MIC": ("multiple_image_captioning",),
    # low-level semantic (Low-level-semantic): Sem
    "VQA": ("visual_quality_assessment_ve_lol_l", "visual_quality_assessment"),
    "FD": ("forensic_detection_blink", "forensic_detection_forgerynet", "forensic_detection"),
}
SPATIAL_TASKS = ("ISTE", "HE", "PT", "RPM", "JPS", "ICSC", "IQASC", "ITRSC", "SOT")
SEMANTIC_TASKS = ("VGR", "STS", "VCor", "SC", "FC", "ER", "CR", "MIC", "VQA", "FD")
_PAPER_TASK_OF = {name.lower(): abbr for abbr, names in PAPER_TASKS.items() for name in names}


def paper_task(task: str) -> str | None:
    """Table 8's abbreviation for an MMIU task name, or None when the paper does not report it."""
    return _PAPER_TASK_OF.get(task.strip().lower())


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


def _is_right(record: Record, text: Any) -> tuple[bool | None, bool]:
    """Correct or not by the rule (None: the official code asks its judge, wrong offline), and whether
    the ``<answer>`` part stood in for the judge."""
    text = text if isinstance(text, str) else ""
    choice, stand_in = extract_choice(text), False
    if choice is None and answer_part(text) != text:  # the judge's case: a reasoning model's tag
        choice = extract_choice(answer_part(text))
        stand_in = choice is not None
    return (None if choice is None else is_correct(choice, record.answer or "")), stand_in


def _tally(records: list[Record], predictions: dict[str, str], task_of: Callable[[Record], str]
           ) -> tuple[dict[str, int], dict[str, int], int, dict[str, int]]:
    """Hits and items per task (``task_of``), missing predictions, and how many answers were the
    judge's (``judge``) or read from the ``<answer>`` part in its stead (``stand-in``)."""
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    missing = 0
    ways = {"judge": 0, "stand-in": 0}
    for record in records:
        task = task_of(record)
        totals[task] = totals.get(task, 0) + 1
        if record.id not in predictions:
            missing += 1
            continue
        right, stand_in = _is_right(record, predictions[record.id])
        ways["judge"] += right is None
        ways["stand-in"] += stand_in
        hits[task] = hits.get(task, 0) + bool(right)
    return hits, totals, missing, ways


def _mean_of(counts: dict[str, list[int]], tasks: Iterable[str]) -> float | None:
    """Mean over tasks of the unrounded accuracies (only what is shown is rounded)."""
    return mean(100 * counts[t][0] / counts[t][1] for t in tasks if t in counts)


def _folder_figures(records: list[Record], predictions: dict[str, str]) -> dict[str, float]:
    """Each task of the file as ``evaluate_correct.py`` scores it: one accuracy per folder."""
    hits, totals, _, _ = _tally(records, predictions, lambda r: r.task)
    return {t: round(100 * hits.get(t, 0) / n, 2) for t, n in sorted(totals.items())}


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space = Space.QWEN25,
    root: Path | None = None,
    sizing: ImageSizing | None = None,
    tasks: str = "paper",
) -> dict[str, Any]:
    """Rule-only accuracy per task, mean over tasks, and the paper's Sem / Spa (``coords``/``sizing``
    unused: no boxes). ``tasks``: "paper" (Table 8's 19, the default), "types" (every task of the
    four relation types) or "all" (every task of the file; ``loaded`` then holds every relation type)."""
    if tasks not in TASK_CHOICES:
        raise ValueError(f"tasks must be one of {TASK_CHOICES}, not {tasks!r}")
    records = loaded.records
    if tasks == "paper":
        records = [r for r in records if paper_task(r.task)]
        task_of: Callable[[Record], str] = lambda r: paper_task(r.task) or r.task  # noqa: E731
        group_of = {**dict.fromkeys(SEMANTIC_TASKS, SEMANTIC), **dict.fromkeys(SPATIAL_TASKS, SPATIAL)}
    else:
        task_of = lambda r: r.task  # noqa: E731
        group_of = {r.task: paper_group(r.meta["relation_type"]) for r in records}
    hits, totals, missing, ways = _tally(records, predictions, task_of)
    out = result(hits, totals, missing, loaded.errors)
    counts = out["counts"]
    out["avg"] = out["id_avg"] = _mean_of(counts, counts)
    out["sem"] = _mean_of(counts, [t for t in counts if group_of.get(t) == SEMANTIC])
    out["spa"] = _mean_of(counts, [t for t in counts if group_of.get(t) == SPATIAL])
    out.update(rule_only=True, judge_needed=ways["judge"], judge_stand_in=ways["stand-in"],
               folders=_folder_figures(records, predictions))
    _label(out, tasks, ways)
    return out


def _label(out: dict[str, Any], tasks: str, ways: dict[str, int]) -> None:
    """The ``protocol`` entry: which tasks the figures are over, and that they are rule-only."""
    items = sum(n for _, n in out["counts"].values())
    judge = (f"rule-only: of the answers the GPT-4o-mini judge would read, {ways['stand-in']} read from "
             f"<answer>, {ways['judge']} count as wrong")
    if tasks == "paper":
        absent = [t for t in PAPER_TASKS if t not in out["counts"]]
        if absent:
            out["missing_tasks"] = absent
        detail = ("Table 8's 19 tasks (Sem: its 10 semantic tasks, Spa: its 9 two-dimensional spatial); "
                  + judge + (f"; not found: {', '.join(absent)}" if absent else ""))
        out["protocol"] = protocol("paper subset", detail, items)
    elif tasks == "types":
        detail = f"every task of the paper's four relation types ({len(out['counts'])}), not Table 8's 19; {judge}"
        out["protocol"] = protocol("paper subset", detail, items)
    else:
        detail = f"evaluate_correct.py: mean over every task of the file ({len(out['counts'])}); {judge}"
        out["protocol"] = protocol("rule-only", detail, items)
