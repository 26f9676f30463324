"""ReVOS-grounding: six frames of a ReVOS video, ground the expression in the third.

Official protocol (read): AMAP-ML/UniVG-R1 ``eval/zero_shot/revos_evaluation/eval.py``
(``get_sorted_frames``, ``evaluate_model``, ``compute_iou``) and ``merge.py`` (Acc@0.5 with ``>=``).

- Items ``{"video_id", "frames": [6 indices], "question", "bbox_list": [6 xyxy pixel boxes]}``. Frame
  ``k`` is ``sorted_frames[frames[k]]`` where the video folder's ``.jpg``/``.png`` files are sorted by
  the first integer in their name. The prompt asks for the third image; the ground truth is
  ``bbox_list[2]``, each value cast with ``int`` (truncated) before dividing by the frame's size.
- Scoring is LISA's (first Qwen2 pair of the whole response / 1000, IoU with ``+ 1e-6``, ``>= 0.5``).

Items from the ReVOS masks (``mask_dict.json`` + ``meta_expressions``), as the paper describes them:
``benchmarks.revos_masks`` (``migrl revos-from-masks``) writes this same JSON format. The paper's
exact frame sampling is not published; that module samples uniformly, as the ReVOS readers do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from migrl.benchmarks.base import build_record, number_list, read_json, require, root_of
from migrl.benchmarks.lisa import score_records
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, RecordError

N_FRAMES, TARGET = 6, 2


def sorted_frames(video_dir: Path) -> list[str]:
    """``get_sorted_frames``: by the first integer in the file name."""
    names = [f for f in os.listdir(video_dir) if f.endswith((".jpg", ".png"))]
    unnumbered = sorted(n for n in names if not re.search(r"\d", n))
    if unnumbered:  # the official sort key raises IndexError on them
        raise ValueError(f"frame files without a number in their name: {unnumbered[:3]}")
    return sorted(names, key=lambda x: int(re.findall(r"\d+", x)[0]))


def _item_record(item: Any, i: int, where: str, root: Path, frame_cache: dict[str, list[str]]) -> dict[str, Any]:
    video = require(item, "video_id", str, where)
    frames = require(item, "frames", list, where)
    if len(frames) != N_FRAMES or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise RecordError(where, "frames", f"expected {N_FRAMES} frame indices, got {frames!r}")
    question = require(item, "question", str, where)
    boxes = require(item, "bbox_list", list, where)
    if len(boxes) <= TARGET:
        raise RecordError(where, "bbox_list", f"expected a box for frame {TARGET + 1}, got {len(boxes)} boxes")
    bbox = number_list(boxes[TARGET], 4, where, f"bbox_list[{TARGET}]")
    if video not in frame_cache:
        try:
            frame_cache[video] = sorted_frames(root / video)
        except (OSError, ValueError) as exc:
            raise RecordError(where, "video_id", f"cannot list the frames of {str(root / video)!r}: {exc}") from None
    names = frame_cache[video]
    if any(not 0 <= f < len(names) for f in frames):
        raise RecordError(where, "frames", f"{frames} out of range for {len(names)} frames of {video!r}")
    return {
        "id": str(i), "task": "revos", "images": [f"{video}/{names[f]}" for f in frames], "question": question,
        "boxes": [{"image_index": TARGET, "bbox": bbox, "space": "pixels"}], "source": "revos",
        "meta": {"video_id": video, "frames": frames},
    }


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """The released ReVOS-grounding JSON; ids are 0-based positions; frames are listed from ``image_root``."""
    root = root_of(data_path, image_root)
    report = LoadReport()
    items = read_json(data_path)
    if not isinstance(items, list):
        report.errors.append(f"{data_path}: expected a JSON list of ReVOS items")
        return report
    cache: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        where = f"{data_path}: item {i}"
        try:
            build_record(_item_record(item, i, where, root, cache), where, report)
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
    """Acc@0.5 on the third frame; a missing prediction or any failure counts as wrong."""
    loaded = load(data_path, image_root)
    root = root_of(data_path, image_root)
    return score_records(loaded, predictions, Space(coords), root, sizing, integer_gt=True)
