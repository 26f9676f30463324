"""The one judge of a grounding answer, and the one tally of a scorer.

"Is this box right, on the right image": the answer's first box (its ``<answer>`` part when it has one)
lies on the image it names, else on the target image; a box on another image cannot match; the box is
converted from the model's space to the ground truth's on the image it lies on (Qwen2.5-VL answers in pixels
of each image's own resized size); it is right when its IoU is at least ``ACCURACY_THRESHOLD``. Rewards,
synthesis' consistency filter, migrl's records scorer and the benchmark scorers that read migrl's answers ask
this module. Where an official scorer reads answers its own way (MIG-Bench's ``extract_bbox``, LISA's / 1000,
Ref-L4's strict ``>``), the benchmark module keeps that rule and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from migrl.boxes import ACCURACY_THRESHOLD, Bbox, PredictedBox, Space, convert, iou, parse_answer
from migrl.images import ImageError, ImageSizing
from migrl.records import Record

SizeOf = Callable[[int], tuple[int, int]]  # image index -> (width, height) of that image


def first_box(text: object) -> PredictedBox | None:
    """The box an answer gives: the first of its ``<answer>`` part (of the whole text without one)."""
    return parse_answer(text).first_box


@dataclass(frozen=True)
class Placed:
    """Where an answer's box lies: ``image_index`` (None: no box) and the box in the asked space on that image
    (None: no box, or an image index the prompt does not have)."""

    image_index: int | None
    bbox: Bbox | None


def place(text: object, target_index: int, n_images: int, coords: Space, dst: Space,
          size_of: SizeOf, sizing: ImageSizing | None) -> Placed:
    """The answer's box on the image it lies on, converted from ``coords`` to ``dst`` there."""
    box = first_box(text)
    if box is None:
        return Placed(None, None)
    index = target_index if box.image_index is None else box.image_index
    if not 0 <= index < n_images:
        return Placed(index, None)
    return Placed(index, convert(box.bbox, coords, dst, size_of(index), sizing))


def target_box(text: object, target_index: int, coords: Space | None = None, dst: Space | None = None,
               size_of: SizeOf | None = None, sizing: ImageSizing | None = None) -> Bbox | None:
    """The answer's box on the target image, converted from ``coords`` to ``dst`` there (as written without
    them); None when it has none or it lies on another image (whose size is then never read)."""
    box = first_box(text)
    if box is None or (box.image_index is not None and box.image_index != target_index):
        return None
    if coords is None or dst is None:
        return tuple(box.bbox)
    return convert(box.bbox, coords, dst, size_of(target_index), sizing)


def is_hit(value: float) -> bool:
    """Acc@0.5's rule."""
    return value >= ACCURACY_THRESHOLD


def record_iou(text: object, record: Record, coords: Space, size_of_path: Callable[[str], tuple[int, int]],
               sizing: ImageSizing | None) -> float:
    """IoU of the answer with the record's target, in pixels of the target image (0 on another image)."""
    gt = record.target
    if gt is None:
        return 0.0
    def size_of(i: int) -> tuple[int, int]:
        return size_of_path(record.images[i])
    pred = target_box(text, gt.image_index, coords, Space.PIXELS, size_of, sizing)
    if pred is None:
        return 0.0
    return iou(pred, convert(gt.bbox, gt.space, Space.PIXELS, size_of(gt.image_index), sizing))


def tally(record: Record, predictions: dict[str, str], judge: Callable[[str], bool],
          hits: dict[str, int], totals: dict[str, int], errors: list[str], outcomes: dict[str, Any] | None = None) -> bool:
    """Add one record to a scorer's tallies (an unreadable image scores it 0 and is listed), and its outcome
    ``[task, 0 | 1]`` to ``outcomes`` (what ``migrl.scoring.intervals`` resamples); returns whether its
    prediction was missing (it counts as wrong)."""
    totals[record.task] = totals.get(record.task, 0) + 1
    text = predictions.get(record.id)
    correct = False
    if text is not None:
        try:
            correct = bool(judge(text))
        except ImageError as exc:
            errors.append(f"record {record.id}: {exc}")
        hits[record.task] = hits.get(record.task, 0) + correct
    if outcomes is not None:
        outcomes[record.id] = [record.task, int(correct)]
    return text is None
