"""Scoring migrl records (the embedded world, or any benchmark converted to records): Acc@0.5.

The first box of the answer (the ``<answer>`` part when there is one) is converted from the
model's space to pixels of the image it lies on -- the image the answer names, or else the
target image -- and compared with the ground truth there. A box on the wrong image scores 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from migrl.boxes import ACCURACY_THRESHOLD, Space, convert, iou, parse_answer
from migrl.images import ImageError, ImageSizes, ImageSizing
from migrl.records import Record
from migrl.scoring.summary import summarize



def record_iou(text: str, record: Record, coords: Space, sizes: ImageSizes, sizing: ImageSizing) -> float:
    gt = record.target
    box = parse_answer(text).first_box
    if gt is None or box is None:
        return 0.0
    index = gt.image_index if box.image_index is None else box.image_index
    if index != gt.image_index:
        return 0.0
    size = sizes(record.images[index])
    pred = convert(box.bbox, coords, Space.PIXELS, size, sizing)
    truth = convert(gt.bbox, gt.space, Space.PIXELS, size, sizing)
    return iou(pred, truth)


def score_records(
    records: Iterable[Record],
    predictions: dict[str, str],
    root: str | Path,
    coords: Space | str = Space.QWEN25,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 per task in percent, with ID / OOD / overall means over tasks; missing predictions are wrong."""
    coords = Space(coords)
    sizes = ImageSizes(root)
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    id_tasks: set[str] = set()
    errors: list[str] = []
    missing = 0
    for record in records:
        totals[record.task] = totals.get(record.task, 0) + 1
        if record.domain == "id":
            id_tasks.add(record.task)
        text = predictions.get(record.id)
        if text is None:
            missing += 1
            continue
        try:
            correct = record_iou(text, record, coords, sizes, sizing) >= ACCURACY_THRESHOLD
        except ImageError as exc:
            errors.append(f"record {record.id}: {exc}")
            continue
        hits[record.task] = hits.get(record.task, 0) + correct
    result = summarize(hits, totals, id_tasks)
    result["missing_predictions"] = missing
    if errors:
        result["errors"] = errors
    from migrl.benchmarks.base import protocol

    result["protocol"] = protocol("migrl", "migrl records: Acc@0.5 (IoU >= 0.5 on the right image) per task, mean of tasks",
                                  sum(totals.values()), len(errors))
    return result
