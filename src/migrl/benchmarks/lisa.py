"""LISA-grounding: LISA ReasonSeg turned into box grounding, scored as Visual-RFT / UniVG-R1 do.

Official protocol (read): AMAP-ML/UniVG-R1 ``eval/zero_shot/lisa_evaluation/eval.py`` ``evaluate_model``
and ``compute_iou``, ``merge.py`` (Acc@0.5 with ``>=``); the same code as Visual-RFT
``lisa_evaluation/Qwen2_VL_lisa_infere.py`` (there ``instruction`` is a list and its first entry is used).

- Items ``{"image_path", "instruction", "boxes": [[x1, y1, x2, y2], ...]}`` (``lisa_{split}.json``);
  the ground truth is ``boxes[0]`` in pixels, divided by the image size.
- The model box is the FIRST match of ``\\(\\s*(\\d+)\\s*,\\s*(\\d+)\\s*\\)\\s*,\\s*\\(...\\)`` in the WHOLE
  response, divided by 1000 (Qwen2-VL). IoU has ``+ 1e-6`` in the denominator; any failure scores 0.
  (The official script decodes ``generated_ids`` untrimmed, so its "response" starts with the prompt;
  an instruction holding a ``(x1,y1),(x2,y2)`` pair would be read there first. migrl reads the model's
  text only. A record the official loop fails on counts 0 there; here it is a load error, reported.)
- Also read: a LISA ReasonSeg folder (one ``name.json`` with ``text`` and ``shapes`` per ``name.jpg``);
  the box is the min/max of the first shape's points (label not checked), the instruction ``text[0]``.
  The conversion script itself was not found; this follows /work/shared/BENCHMARKS.md.

``coords=qwen2`` is the official rule itself; any other space reads the box with migrl's parser and
converts it from that space on this image (Qwen2.5-VL answers in pixels of the resized image).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from migrl.benchmarks.base import (
    ImageSizes,
    build_record,
    count_item,
    model_box,
    number_list,
    read_json,
    require,
    result,
    root_of,
)
from migrl.boxes import Space, convert
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError

# Possessive digits (Python 3.11) keep the official pattern's matches while ruling out backtracking.
_OFFICIAL_PAIR = re.compile(r"\(\s*(\d++)\s*,\s*(\d++)\s*\)\s*,\s*\(\s*(\d++)\s*,\s*(\d++)\s*\)")


def official_box(text: str) -> list[float] | None:
    """First ``(x1,y1),(x2,y2)`` of the whole text, / 1000; None where the official code raises."""
    m = _OFFICIAL_PAIR.search(text)
    return [int(v) / 1000 for v in m.groups()] if m else None


def official_iou(pred: list[float], gt: list[float]) -> float:
    """``compute_iou(pred, gt)``: no clipping of inverted boxes, ``+ 1e-6``; a division error scores 0."""
    x_a, y_a = max(pred[0], gt[0]), max(pred[1], gt[1])
    x_b, y_b = min(pred[2], gt[2]), min(pred[3], gt[3])
    inter = max(0, x_b - x_a) * max(0, y_b - y_a)
    area_p = (pred[2] - pred[0]) * (pred[3] - pred[1])
    area_g = (gt[2] - gt[0]) * (gt[3] - gt[1])
    try:
        return inter / float(area_p + area_g - inter + 1e-6)
    except ZeroDivisionError:
        return 0.0


def grounding_hit(
    text: str, record: Record, coords: Space, sizes: ImageSizes, sizing: ImageSizing, integer_gt: bool = False
) -> bool:
    """IoU >= 0.5 in [0, 1] of the target image, as ``evaluate_model`` + ``merge.py`` (shared with ReVOS)."""
    gt = record.target
    if gt is None:
        return False
    size = sizes(record.images[gt.image_index])
    raw = [float(int(v)) for v in gt.bbox] if integer_gt else list(gt.bbox)  # ReVOS casts to int first
    truth = list(convert(raw, gt.space, Space.NORMALIZED, size, sizing))
    if coords is Space.QWEN2:
        pred = official_box(text)
    else:
        box = model_box(text, record, gt.image_index, Space.NORMALIZED, coords, sizes, sizing)
        pred = list(box) if box is not None else None
    return pred is not None and official_iou(pred, truth) >= 0.5


def _item_record(item: Any, i: int, where: str, split: str) -> dict[str, Any]:
    path = require(item, "image_path", str, where)
    instruction = require(item, "instruction", (str, list), where)
    if isinstance(instruction, list):  # Visual-RFT's files keep the ReasonSeg list; it uses the first
        if not instruction or not isinstance(instruction[0], str):
            raise RecordError(where, "instruction", "expected a string or a non-empty list of strings")
        instruction = instruction[0]
    boxes = require(item, "boxes", list, where)
    if not boxes:
        raise RecordError(where, "boxes", "empty")
    bbox = number_list(boxes[0], 4, where, "boxes[0]")
    return {
        "id": str(i), "task": split, "images": [path], "question": instruction, "split": split,
        "boxes": [{"image_index": 0, "bbox": bbox, "space": "pixels"}], "source": "lisa",
    }


def _reasonseg_record(path: Path, where: str, split: str) -> dict[str, Any]:
    item = read_json(path)
    texts = require(item, "text", (list, str), where)
    text = texts if isinstance(texts, str) else (texts[0] if texts and isinstance(texts[0], str) else None)
    if not text:
        raise RecordError(where, "text", "expected a non-empty instruction")
    shapes = require(item, "shapes", list, where)
    points = shapes[0].get("points") if shapes and isinstance(shapes[0], dict) else None
    if not isinstance(points, list) or not points:
        raise RecordError(where, "shapes[0].points", "expected a polygon")
    pts = [number_list(p, 2, where, "shapes[0].points[]") for p in points]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    image = next((path.with_suffix(s).name for s in (".jpg", ".png", ".jpeg") if path.with_suffix(s).exists()), None)
    return {
        "id": path.stem, "task": split, "images": [image or path.with_suffix(".jpg").name], "question": text,
        "split": split, "boxes": [{"image_index": 0, "bbox": [min(xs), min(ys), max(xs), max(ys)], "space": "pixels"}],
        "source": "lisa",
    }


def _split_name(path: Path) -> str:
    name = path.stem if path.is_file() else path.name
    return name.removeprefix("lisa_") or "lisa"


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """``lisa_{split}.json`` (ids = 0-based positions) or a ReasonSeg folder (ids = file stems)."""
    path = Path(data_path)
    split = _split_name(path)
    report = LoadReport()
    if path.is_dir():
        for j, file in enumerate(sorted(path.glob("*.json"))):
            where = f"{file}"
            try:
                build_record(_reasonseg_record(file, where, split), where, report)
            except (RecordError, ValueError) as exc:
                report.errors.append(str(exc))
        return report
    items = read_json(path)
    if not isinstance(items, list):
        report.errors.append(f"{path}: expected a JSON list of LISA items")
        return report
    for i, item in enumerate(items):
        where = f"{path}: item {i}"
        try:
            build_record(_item_record(item, i, where, split), where, report)
        except RecordError as exc:
            report.errors.append(str(exc))
    return report


def score(
    data_path: str | Path,
    predictions: dict[str, str],
    coords: Space | str = Space.QWEN2,
    image_root: str | Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 of the split; a missing prediction or any failure counts as wrong."""
    loaded = load(data_path, image_root)
    return score_records(loaded, predictions, Space(coords), root_of(data_path, image_root), sizing)


def score_records(
    loaded: LoadReport, predictions: dict[str, str], coords: Space, root: Path, sizing: ImageSizing,
    integer_gt: bool = False,
) -> dict[str, Any]:
    sizes = ImageSizes(root)
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors = list(loaded.errors)
    missing = 0
    for record in loaded.records:
        judge = lambda text, r=record: grounding_hit(text, r, coords, sizes, sizing, integer_gt)  # noqa: E731
        missing += count_item(record, predictions, judge, hits, totals, errors)
    return result(hits, totals, missing, errors)
