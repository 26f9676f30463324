"""ReVOS-grounding: six frames of a ReVOS video, ground the expression in the third.

Official protocol (read): AMAP-ML/UniVG-R1 ``eval/zero_shot/revos_evaluation/eval.py``
(``get_sorted_frames``, ``evaluate_model``, ``compute_iou``) and ``merge.py`` (Acc@0.5 with ``>=``).

- Items ``{"video_id", "frames": [6 indices], "question", "bbox_list": [6 xyxy pixel boxes]}``. Frame
  ``k`` is ``sorted_frames[frames[k]]`` where the video folder's ``.jpg``/``.png`` files are sorted by
  the first integer in their name. The prompt asks for the third image; the ground truth is
  ``bbox_list[2]``, each value cast with ``int`` (truncated) before dividing by the frame's size.
- Scoring is LISA's (first Qwen2 pair of the whole response / 1000, IoU with ``+ 1e-6``, ``>= 0.5``).

Denominator: every item of the file, as the official loop (``try: ... except Exception: ious.append(0)``).
An item it fails on -- a video folder it cannot list, a frame name without a number (its sort key
raises, so every item of that video fails), a frame index past the video, fewer than three frames, no
third box, a box that is not numbers, an unreadable frame -- is scored 0 here too and listed in
``zero_for_bad_input_items`` (unreadable frames in ``errors``); the official script stops outright on an
item without ``frames``, here that item is scored 0 as well. Read as the official code reads them: a
negative frame index counts from the last frame (Python indexing; each such item is named in
``warnings``), and a list of other than six frames is used as it is (the third is grounded). Strings of
digits in a box, which ``int()`` would read, are bad input here.

Items from the ReVOS masks (``mask_dict.json`` + ``meta_expressions``), as the paper describes them:
``benchmarks.revos_masks`` (``migrl revos-from-masks``) writes this same JSON format. The paper's
exact frame sampling is not published; that module samples uniformly, as the ReVOS readers do.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from migrl.benchmarks.base import protocol, read_json, require, root_of
from migrl.benchmarks.lisa import box_fields, denominator, official_detail, score_scan
from migrl.benchmarks.zero import Scan, ZeroItem
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, RecordError, record_from_dict

N_FRAMES, TARGET = 6, 2
TASK = "revos"


def sorted_frames(video_dir: Path) -> list[str]:
    """``get_sorted_frames``: by the first integer in the file name."""
    names = [f for f in os.listdir(video_dir) if f.endswith((".jpg", ".png"))]
    unnumbered = sorted(n for n in names if not re.search(r"\d", n))
    if unnumbered:  # the official sort key raises IndexError on them
        raise ValueError(f"frame files without a number in their name: {unnumbered[:3]}")
    return sorted(names, key=lambda x: int(re.findall(r"\d+", x)[0]))


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # int() fails on inf/nan


def _frames_of(video: str, root: Path, where: str, cache: dict[str, list[str] | str]) -> list[str]:
    """The video's sorted frame names; a folder the official code cannot list or sort fails each of its items."""
    if video not in cache:
        try:
            cache[video] = sorted_frames(root / video)
        except (OSError, ValueError) as exc:
            cache[video] = f"cannot list the frames of {str(root / video)!r}: {exc}"
    names = cache[video]
    if isinstance(names, str):
        raise RecordError(where, "video_id", names)
    return names


def _target_box(item: dict[str, Any], where: str) -> list[float]:
    boxes = require(item, "bbox_list", list, where)
    if len(boxes) <= TARGET:
        raise RecordError(where, "bbox_list", f"expected a box for frame {TARGET + 1}, got {len(boxes)} boxes")
    box = boxes[TARGET]
    if not isinstance(box, list) or len(box) < 4 or not all(_is_number(v) for v in box):
        raise RecordError(where, f"bbox_list[{TARGET}]", f"expected [x1, y1, x2, y2] (int() of each), got {box!r}")
    return [float(v) for v in box[:4]]


def _item_record(item: Any, i: int, where: str, root: Path, cache: dict, notes: list[str]) -> dict[str, Any]:
    frames = require(item, "frames", list, where)
    if len(frames) <= TARGET or not all(_is_index(f) for f in frames):
        raise RecordError(where, "frames", f"expected at least {TARGET + 1} frame indices, got {frames!r}")
    video = require(item, "video_id", str, where)
    names = _frames_of(video, root, where, cache)
    wrong = [f for f in frames if not -len(names) <= f < len(names)]
    if wrong:  # sorted_frames[frame_idx] raises IndexError
        raise RecordError(where, "frames", f"{wrong} out of range for the {len(names)} frames of {video!r}")
    question = require(item, "question", str, where)
    fields = box_fields(_target_box(item, where), TARGET)
    if any(f < 0 for f in frames):
        notes.append(f"{where}: frames {frames}: a negative index counts from the last frame, as the official "
                     "sorted_frames[frame_idx] reads it")
    return {
        "id": str(i), "task": TASK, "images": [f"{video}/{names[f]}" for f in frames], "question": question,
        "source": "revos", "boxes": fields["boxes"], "meta": {"video_id": video, "frames": frames, **fields["meta"]},
    }


def scan(data_path: str | Path, image_root: str | Path | None = None) -> Scan:
    """Every item of the file: a record, or a zero item (see ``migrl.benchmarks.zero``)."""
    root = root_of(data_path, image_root)
    out = Scan(LoadReport(), [])
    items = read_json(data_path)
    if not isinstance(items, list):
        out.report.errors.append(f"{data_path}: expected a JSON list of ReVOS items")
        return out
    cache: dict[str, list[str] | str] = {}
    for i, item in enumerate(items):
        where = f"{data_path}: item {i}"
        try:
            out.report.records.append(record_from_dict(_item_record(item, i, where, root, cache, out.notes), where))
        except RecordError as exc:
            out.keep_zero(TASK, ZeroItem.from_error(exc, str(i)))
    return out


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """The released ReVOS-grounding JSON; ids are 0-based positions; frames are listed from ``image_root``."""
    found = scan(data_path, image_root)
    found.report.source = found
    return found.report


REVOS_DETAIL = ("UniVG-R1 revos_evaluation eval.py + merge.py: Acc@0.5 (IoU with + 1e-6, >= 0.5) on the third "
                "of the item's frames against int(bbox_list[2]) / frame size; every item of the file counted")


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 on the third frame; a missing prediction, a bad item or any failure counts as wrong."""
    found: Scan = loaded.source
    out = score_scan(found, predictions, coords, root, sizing, integer_gt=True, check_images=True)
    if found.notes:
        out["warnings"] = found.notes
    out["protocol"] = protocol("official", official_detail(coords, REVOS_DETAIL), *denominator(out))
    return out
