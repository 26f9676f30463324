"""Ref-L4: referring expressions with long captions, one box per annotation.

Official protocol (read): JierunChen/Ref-L4 ``ref_l4/evaluation.py`` ``RefL4Evaluator.evaluate`` and
``ref_l4/overlaps.py`` ``bbox_overlaps`` (mmdet, ``is_aligned=True``, ``eps=1e-6``).

- Annotations carry ``id``, ``caption``, ``bbox`` (xywh pixels), ``file_name``, ``ori_category_id``;
  a split is a parquet/JSON/JSONL export of the Hugging Face dataset (``split`` field or file name).
- IoU: width/height clamped at 0, ``overlap / max(union, 1e-6)``, no +1, in float32. Correct when
  IoU > th (STRICT), compared in float32 like the official NumPy array (0.8 is 0.800000011920929 there,
  so an IoU of exactly float32(0.8) fails th 0.8); Acc@0.5/0.75/0.9, mAcc over 0.50:0.05:0.95 (mean
  of the unrounded per-threshold fractions, times 100), size buckets by sqrt(w*h) of the ground truth
  (< 128 small, <= 256 medium, else large). Figures are rounded to 2 decimals only when stored, as the
  official "for copy" lines. The official code raises on a missing id; here a missing or unreadable
  prediction scores IoU 0, as the dummy box the README asks for would.
- Class-level average (``category_map``): each ``ori_category_id`` is first renamed by the official
  refcoco -> o365 merge table, Acc per class, then the mean over classes (mAcc: that mean per
  threshold, then over thresholds). The table is read from the official ``ref_l4/evaluation.py``
  (its ``mapping_dict``) or a JSON of it, so it is not copied here; without it no class average is
  reported. The paper reports Acc@0.5 per split only.
"""

from __future__ import annotations

import ast
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from migrl.benchmarks.base import (
    ImageSizes,
    build_record,
    model_box,
    number_list,
    protocol,
    read_json,
    require,
    result,
    xywh_to_xyxy,
)
from migrl.boxes import Space
from migrl.images import ImageError, ImageSizing
from migrl.records import LoadReport, Record, RecordError

ACC_THRESHOLDS = (0.5, 0.75, 0.9)
MACC_THRESHOLDS = tuple(i / 100 for i in range(50, 100, 5))


def passes(value: float, th: float) -> bool:
    """``iou > th`` as the official code decides it: its IoUs are a float32 NumPy array, so the
    threshold is compared in float32 too (NumPy casts the Python float to the array's type)."""
    return bool(np.float32(value) > np.float32(th))


def percent(hits: int, n: int) -> float:
    """``hits / n * 100`` in the official order of operations (``100 * hits / n`` can round differently)."""
    return hits / n * 100


def official_iou(gt: list[float], pred: list[float], eps: float = 1e-6) -> float:
    """``bbox_overlaps(gt, pred, mode='iou', is_aligned=True)`` for one pair, op for op.

    In float32: ``evaluate`` builds its tensors with ``torch.tensor`` of Python floats, so the official
    IoU is single precision; in float64, 2 of 2,000,000 threshold decisions on random boxes came out
    differently (an IoU of 0.50000006 in float32 is 0.5000000000000001 in float64).
    """
    g, p = np.asarray(gt, dtype=np.float32), np.asarray(pred, dtype=np.float32)
    area1 = (g[2] - g[0]) * (g[3] - g[1])
    area2 = (p[2] - p[0]) * (p[3] - p[1])
    w = max(min(g[2], p[2]) - max(g[0], p[0]), np.float32(0))
    h = max(min(g[3], p[3]) - max(g[1], p[1]), np.float32(0))
    overlap = w * h
    union = area1 + area2 - overlap
    return float(overlap / max(union, np.float32(eps)))


def read_category_map(path: str | Path) -> dict[str, str]:
    """The refcoco -> o365 merge table: ``mapping_dict`` of the official ``evaluation.py``, or a JSON object."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        found = [node.value for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "mapping_dict" for t in node.targets)]
        if not found:
            raise ValueError(f"{path}: no `mapping_dict = {{...}}` (expected Ref-L4's ref_l4/evaluation.py)")
        table = ast.literal_eval(found[0])
    else:
        table = json.loads(text)
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ValueError(f"{path}: the category map must map category ids (text) to category ids")
    return table


def class_average(ious: list[float], categories: list[Any], table: dict[str, str]) -> dict[str, Any]:
    """Acc@0.5 and mAcc averaged over the merged classes, as ``RefL4Evaluator.evaluate``."""
    per_class: dict[Any, list[float]] = defaultdict(list)
    for value, category in zip(ious, categories):
        per_class[table.get(category, category)].append(value)

    def mean_over_classes(th: float) -> float:  # unrounded: the official code rounds only to print
        return statistics.mean(percent(sum(passes(v, th) for v in vs), len(vs)) for vs in per_class.values())

    return {"classes": len(per_class), "acc50": round(mean_over_classes(0.5), 2),
            "macc": round(statistics.mean(mean_over_classes(th) for th in MACC_THRESHOLDS), 2)}


def plain(value: Any) -> Any:
    """A parquet cell as the JSON export would hold it: pandas gives a list column as a NumPy array
    and integers as NumPy scalars, which the official code indexes like lists (``bbox[0]``)."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rows(path: Path) -> list[Any]:
    if path.suffix == ".parquet":
        import pandas as pd  # only for the Hugging Face export

        return [{k: plain(v) for k, v in row.items()} for row in pd.read_parquet(path).to_dict(orient="records")]
    rows = read_json(path)
    return rows if isinstance(rows, list) else []


def _split_of(row: dict[str, Any], path: Path) -> str:
    split = row.get("split")
    if isinstance(split, str) and split:
        return split
    stem = path.stem.lower()
    return "test" if "test" in stem else "val" if "val" in stem else stem


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """One split file; ids are the official annotation ids."""
    path = Path(data_path)
    report = LoadReport()
    for i, row in enumerate(_rows(path)):
        where = f"{path}: annotation {i}"
        try:
            rid = require(row, "id", (str, int), where)
            bbox = number_list(list(require(row, "bbox", (list, tuple), where)), 4, where, "bbox")
            split = _split_of(row, path)
            raw = {
                "id": str(rid), "task": split, "split": split, "source": "ref-l4",
                "images": [require(row, "file_name", str, where)], "question": require(row, "caption", str, where),
                "boxes": [{"image_index": 0, "bbox": xywh_to_xyxy(bbox), "space": "pixels"}],
                "meta": {"xywh": bbox, "ori_category_id": row.get("ori_category_id")},
            }
        except RecordError as exc:
            report.errors.append(str(exc))
            continue
        build_record(raw, where, report)
    if not report.records and not report.errors:
        report.errors.append(f"{path}: no Ref-L4 annotations found")
    return report


def _size_bucket(xywh: list[float]) -> str:
    side = math.sqrt(xywh[2] * xywh[3])
    return "small" if side < 128 else "medium" if side <= 256 else "large"


def _fraction(ious: list[float], th: float) -> float:
    return sum(passes(v, th) for v in ious) / len(ious)


def _acc(ious: list[float], th: float) -> float | None:
    """Acc@th in percent, unrounded (round only what is stored or shown)."""
    return _fraction(ious, th) * 100 if ious else None


def _macc(ious: list[float]) -> float | None:
    """``mean(per-threshold fractions) * 100``, as ``evaluate`` (unrounded fractions, one product)."""
    return statistics.mean(_fraction(ious, th) for th in MACC_THRESHOLDS) * 100 if ious else None


def _size_macc(ious: list[float]) -> float | None:
    """The size buckets' mAcc: there the official code takes the mean of percentages."""
    if not ious:
        return None
    return statistics.mean(percent(sum(passes(v, th) for v in ious), len(ious)) for th in MACC_THRESHOLDS)


def _shown(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ious(loaded: LoadReport, predictions: dict[str, str], coords: Space, sizes: ImageSizes,
          sizing: ImageSizing | None, errors: list[str]) -> tuple[list[float], int, int]:
    """One IoU per annotation (0 when the prediction is missing or has no box), the missing count and
    the count scored 0 because the image could not be read (kept in the denominator)."""
    ious: list[float] = []
    missing = unreadable = 0
    for record in loaded.records:
        text = predictions.get(record.id)
        pred = None
        if text is None:
            missing += 1
        else:
            try:
                pred = model_box(text, record, 0, Space.PIXELS, coords, sizes, sizing)
            except ImageError as exc:
                errors.append(f"record {record.id}: {exc}")
                unreadable += 1
        ious.append(official_iou(list(record.boxes[0].bbox), list(pred)) if pred is not None else 0.0)
    return ious, missing, unreadable


def _per_split(records: list[Record], ious: list[float]) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
    hits: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for record, value in zip(records, ious):
        totals[record.task] += 1
        hits[record.task] += passes(value, 0.5)
    return dict(hits), dict(totals), {t: percent(hits[t], totals[t]) for t in sorted(totals)}


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
    category_map: str | Path | None = None,
) -> dict[str, Any]:
    """Acc@0.5 (IoU > 0.5) per split in ``tasks``; Acc@0.75/0.9, mAcc and size buckets as extras, and
    the class-level average when ``category_map`` names the official merge table."""
    table = read_category_map(category_map) if category_map else None
    errors = list(loaded.errors)
    ious, missing, unreadable = _ious(loaded, predictions, coords, ImageSizes(root), sizing, errors)
    hits, totals, per_split = _per_split(loaded.records, ious)
    out = result(hits, totals, missing, errors)
    # the official figure of each split, rounded once; the mean over splits is migrl's (no official one)
    out["tasks"] = {t: round(v, 2) for t, v in per_split.items()}
    out["avg"] = out["id_avg"] = _shown(statistics.mean(per_split.values())) if per_split else None
    out["acc"] = {str(th): _shown(_acc(ious, th)) for th in ACC_THRESHOLDS}
    out["macc"] = _shown(_macc(ious))
    buckets: dict[str, list[float]] = {"small": [], "medium": [], "large": []}
    for record, value in zip(loaded.records, ious):
        buckets[_size_bucket(record.meta["xywh"])].append(value)
    out["size_acc50"] = {k: _shown(_acc(v, 0.5)) for k, v in buckets.items()}
    out["size_macc"] = {k: _shown(_size_macc(v)) for k, v in buckets.items()}
    out["protocol"] = protocol(
        "official", "RefL4Evaluator.evaluate: IoU > th in float32, Acc@0.5 per split over annotations; "
        "a missing prediction scores IoU 0 (the official code stops)", len(ious), unreadable)
    if table is not None and ious:
        _class_avg(out, loaded.records, ious, table)
    return out


def _class_avg(out: dict[str, Any], records: list[Record], ious: list[float], table: dict[str, str]) -> None:
    categories = [r.meta["ori_category_id"] for r in records]
    unnamed = sum(c is None for c in categories)
    if unnamed:  # they would all fall into one class: a number that looks right and is not
        out["class_avg"] = None
        out.setdefault("errors", []).append(
            f"class average not computed: {unnamed} annotations have no ori_category_id")
    else:
        out["class_avg"] = class_average(ious, categories, table)
