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
from typing import Any, Callable

from migrl.benchmarks.base import protocol, score_records_with
from migrl.boxes import PredictedBox, Space, answer_part
from migrl.images import ImageSizes, ImageSizing
from migrl.records import GroundTruthBox, LoadReport, Record
from migrl.scoring.judge import is_hit, target_box
from migrl.tasks import ID_TASKS


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



def predicted_box(text: str, record: Record, coords: Space, sizes: ImageSizes | None, sizing: ImageSizing | None) -> list:
    """The box to score, in [0, 1] of the target image, following the official rule where it applies."""
    part = answer_part(text)
    if coords in (Space.QWEN2, Space.NORMALIZED):
        return official_scored_box(part)
    if sizes is None:
        raise ValueError(f"--coords {coords.value} needs the image sizes: pass the MIG-Bench image folder")
    gt = record.boxes[0]
    box = target_box(part, gt.image_index, coords, Space.NORMALIZED, lambda i: sizes(record.images[i]), sizing)
    return [] if box is None else list(box)


def official_reader(coords: Space) -> Callable[[str], PredictedBox | None] | None:
    """The box the scorer reads, for the report's pictures: eval/utils.py's on the <answer> part (first box, no
    image check) where the official rule applies, else None (migrl's reading)."""
    if coords not in (Space.QWEN2, Space.NORMALIZED):
        return None
    scale = 1000.0 if coords is Space.QWEN2 else 1.0  # the official box is in [0, 1]; back to the model's space

    def read(text: str) -> PredictedBox | None:
        found = official_extract_bbox(answer_part(text))
        if not found:
            return None
        box = found[0] if isinstance(found[0], list) else found
        return PredictedBox(tuple(v * scale for v in box), None, "official")  # type: ignore[arg-type]

    return read


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """MIG-Bench items as migrl records (``migrl eval --benchmark mig-bench``).

    The id is the 0-based position (the file has none); the box is the normalized ground truth on the
    target image. Records are built directly, not validated: the released file has inverted boxes that
    the official rule scores 0, and they must stay in the denominator.
    """
    out = LoadReport()
    for i, r in enumerate(load_migbench(data_path)):
        box = GroundTruthBox(target_image(r), tuple(float(v) for v in r["answer"]), Space.NORMALIZED.value)
        out.records.append(Record(
            id=str(i), task=r["task"], images=tuple(r["images"]), question=r["question"], boxes=(box,),
            split="test", domain="id" if r["task"] in ID_TASKS else "ood", source="mig-bench",
        ))
    return out


def _inverted(bbox: tuple[float, ...]) -> bool:
    return bbox[2] < bbox[0] or bbox[3] < bbox[1]


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 per task; a record without a prediction counts as wrong. Record id = position in file."""
    sizes = ImageSizes(root) if root is not None else None

    def judge(r: Record, text: str) -> bool:
        return is_hit(official_iou(list(r.boxes[0].bbox), predicted_box(text, r, coords, sizes, sizing)))

    result = score_records_with(loaded.records, predictions, judge, ID_TASKS)
    errors = result.get("errors", [])
    inverted = [r for r in loaded.records if _inverted(r.boxes[0].bbox)]
    result["zero_for_bad_input_items"] = [
        {"record": r.id, "field": "answer", "reason": f"inverted ground-truth box {list(r.boxes[0].bbox)}: the official rule scores it 0"}
        for r in inverted]
    result["protocol"] = protocol(
        "official", "Migician eval/utils.py: Acc@0.5 per task, mean of the 10 tasks; only the <answer> part is read "
        "when there is one (migrl's documented extension); object_tracking on the 550 released items (the paper's "
        "figures are of 440)", len(loaded.records), len(inverted) + len(errors))
    return result
