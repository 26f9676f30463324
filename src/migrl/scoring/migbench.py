"""MIG-Bench scoring by the official protocol.

Reproduces Migician's scorer (github.com/Michael4933/Migician, ``eval/utils.py``: ``extract_bbox``
and ``calculate_iou``; ``eval/MIG_bench_eval.py``: ``compute_iou``, Acc@0.5 = IoU >= 0.5):
six patterns tried in a fixed order, the first that finds anything wins; with one match every
value ``>= 1`` is divided by 1000, with several only values ``> 1`` are, and the first box counts;
nothing found scores 0; the image index is never checked.

One documented extension: when the text holds ``<answer>...</answer>``, only that part is scored,
because a chain of thought mentions other boxes while thinking.

``--coords qwen2`` and ``normalized`` are the official rule itself. ``pixels`` and ``qwen25``
(Qwen2.5-VL's absolute pixels on the resized image) need each image's size: the box is read with
migrl's parser and converted from the space of the image it lies on, which the record implies
(``target_image``).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from migrl.boxes import ACCURACY_THRESHOLD, ANSWER_CLOSE, ANSWER_OPEN, Space, convert, parse_answer
from migrl.images import ImageError, ImageSizing, image_size, resolve_image_path
from migrl.records import GroundTruthBox, Record
from migrl.scoring.summary import summarize

ID_TASKS = ("diff", "common_object", "region", "refer_grounding")
OOD_TASKS = ("object_tracking", "multi_view", "group_grounding", "reasoning", "correspondence", "view_diff")

# eval/utils.py extract_bbox, in its order.
_OFFICIAL_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)",
        r"\[(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+)\]",
        r"\((\d+\.\d+),(\d+\.\d+)\),\((\d+\.\d+),(\d+\.\d+)\)",
        r"\((\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+),\s*(\d+\.\d+)\)",
        r"\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\]",
        r"<box>(\d+)\s+(\d+)\s+(\d+)\s+(\d+)</box>",
    )
)


def official_extract_bbox(text: str) -> list:
    """``extract_bbox`` exactly: a flat box for one match, a list of boxes for several, [] for none."""
    matches: list = []
    for pattern in _OFFICIAL_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            break
    try:
        if len(matches) == 1:
            box = [float(v) for v in matches[0]]
            return [v / 1000 if v >= 1 else v for v in box]
        return [[float(v) / 1000 if float(v) > 1 else float(v) for v in m] for m in matches]
    except Exception:  # the official code returns a zero box on any failure
        return [0.0, 0.0, 0.0, 0.0]


def official_scored_box(text: str) -> list[float]:
    """The box ``calculate_iou`` reads from ``extract_bbox(text)`` (its first), without building the rest.

    Same result as ``official_extract_bbox`` for scoring: the pattern order and the /1000 rules are
    the official ones, and whether the rule for one match or for several applies only needs to know
    that a second match exists. A model stuck repeating a box thousands of times then costs one
    match, not thousands of float conversions. (The official fallback to a zero box on a failed
    conversion cannot happen: ``\\d`` matches decimal digits only, which ``float`` accepts.)
    """
    for pattern in _OFFICIAL_PATTERNS:
        found = pattern.finditer(text)
        first = next(found, None)
        if first is None:
            continue
        values = [float(v) for v in first.groups()]
        if next(found, None) is None:
            return [v / 1000 if v >= 1 else v for v in values]
        return [v / 1000 if v > 1 else v for v in values]
    return []


def official_iou(gt: list[float], pred: list) -> float:
    """``calculate_iou(box1=ground truth, box2=prediction)`` exactly (an inverted GT scores 0).

    The official code divides by zero when both boxes have no area; that case scores 0 here.
    """
    if pred == []:
        return 0.0
    if isinstance(pred[0], list):
        pred = pred[0]
    try:
        x_left = max(gt[0], pred[0])
        y_top = max(gt[1], pred[1])
        x_right = min(gt[2], pred[2])
        y_bottom = min(gt[3], pred[3])
    except Exception:
        return 0.0
    if x_right < x_left or y_bottom < y_top:
        return 0.0
    inter = (x_right - x_left) * (y_bottom - y_top)
    union = (gt[2] - gt[0]) * (gt[3] - gt[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1]) - inter
    try:
        return inter / union
    except ZeroDivisionError:
        return 0.0


def answer_part(text: str) -> str:
    """The documented extension: the content of ``<answer>...</answer>`` when the text has one."""
    start = text.find(ANSWER_OPEN)
    if start < 0:
        return text
    end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
    return text[start + len(ANSWER_OPEN) : end] if end >= 0 else text


_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5}


def target_image(record: dict[str, Any]) -> int:
    """0-based index of the image the ground-truth box is on (MIG-Bench does not store it)."""
    task, q = record["task"], record["question"]
    if task == "region":
        return 0  # "locate the Nth region picture in the source image": the source is image 1
    if task == "group_grounding":
        m = re.search(r"in the (\w+) image", record.get("additional_info", ""))
        return _ORDINALS.get(m.group(1).lower(), 0) if m else 0
    if task in ("correspondence", "reasoning", "view_diff", "diff"):
        return 1
    numbers = re.findall(r"(?:the |image-)(\d+)(?:th)?", q, re.I)
    return int(numbers[-1]) - 1 if numbers else 0


def load_migbench(path: str | Path) -> list[dict[str, Any]]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of MIG-Bench records")
    for i, r in enumerate(records):
        for key in ("task", "images", "question", "answer"):
            if key not in r:
                raise ValueError(f"{path}: record {i}: field {key!r} missing")
    _warn_malformed(path, records)
    return records


def _warn_malformed(path: str | Path, records: list[dict[str, Any]]) -> None:
    bad = [i for i, r in enumerate(records) if r["answer"][2] < r["answer"][0] or r["answer"][3] < r["answer"][1]]
    far = [i for i, r in enumerate(records) if max(r["answer"]) > 1.0]
    if bad:
        warnings.warn(f"{path}: records {bad} have an inverted ground-truth box; the official rule scores them 0")
    if far:
        warnings.warn(f"{path}: records {far} have a ground-truth box past 1.0")



def predicted_box(text: str, record: dict[str, Any], coords: Space, image_root: Path | None, sizing: ImageSizing) -> list:
    """The box to score, in [0, 1] of the target image, following the official rule where it applies."""
    part = answer_part(text)
    if coords in (Space.QWEN2, Space.NORMALIZED):
        return official_scored_box(part)
    box = parse_answer(part).first_box
    if box is None:
        return []
    if image_root is None:
        raise ValueError(f"--coords {coords.value} needs the image sizes: pass the MIG-Bench image folder")
    index = box.image_index if box.image_index is not None else target_image(record)
    if not 0 <= index < len(record["images"]):
        return []
    size = image_size(resolve_image_path(record["images"][index], image_root))
    if index != target_image(record):
        return []  # a box on another image cannot match
    return list(convert(box.bbox, coords, Space.NORMALIZED, size, sizing))


def score_migbench(
    data_path: str | Path,
    predictions: dict[str, str],
    coords: Space | str = Space.QWEN2,
    image_root: str | Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 per task; a record without a prediction counts as wrong. Record id = position in file."""
    coords = Space(coords)
    records = load_migbench(data_path)
    root = Path(image_root) if image_root is not None else None
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors: list[str] = []
    for i, record in enumerate(records):
        task = record["task"]
        totals[task] = totals.get(task, 0) + 1
        text = predictions.get(str(i))
        if text is None:
            continue
        try:
            pred = predicted_box(text, record, coords, root, sizing)
        except ImageError as exc:
            errors.append(f"record {i}: {exc}")
            continue
        if official_iou(record["answer"], pred) >= ACCURACY_THRESHOLD:
            hits[task] = hits.get(task, 0) + 1
    result = summarize(hits, totals, ID_TASKS)
    result["missing_predictions"] = sum(1 for i in range(len(records)) if str(i) not in predictions)
    if errors:
        result["errors"] = errors
    from migrl.benchmarks.base import protocol  # here: the benchmarks package imports this module

    inverted = [i for i, r in enumerate(records) if r["answer"][2] < r["answer"][0] or r["answer"][3] < r["answer"][1]]
    result["zero_for_bad_input_items"] = [
        {"record": str(i), "field": "answer", "reason": f"inverted ground-truth box {records[i]['answer']}: the official rule scores it 0"}
        for i in inverted]
    result["protocol"] = protocol(
        "official", "Migician eval/utils.py: Acc@0.5 per task, mean of the 10 tasks; only the <answer> part is read "
        "when there is one (migrl's documented extension); object_tracking on the 550 released items (the paper's "
        "figures are of 440)", len(records), len(inverted) + len(errors))
    return result


def migbench_records(path: str | Path) -> list[Record]:
    """MIG-Bench items as migrl records, for ``migrl eval --benchmark mig-bench``.

    The id is the 0-based position (the file has none); the box is the normalized ground truth on the
    target image. Records are built directly, not validated: the released file has inverted boxes that
    the official rule scores 0, and they must stay in the denominator.
    """
    out = []
    for i, r in enumerate(load_migbench(path)):
        box = GroundTruthBox(target_image(r), tuple(float(v) for v in r["answer"]), Space.NORMALIZED.value)
        out.append(Record(
            id=str(i), task=r["task"], images=tuple(r["images"]), question=r["question"], boxes=(box,),
            split="test", domain="id" if r["task"] in ID_TASKS else "ood", source="mig-bench",
        ))
    return out
