"""ReVOS-grounding items built from the ReVOS masks, as the paper describes it.

The paper: "we uniformly sample six frames and task the model with grounding one frame, deriving
ground-truth boxes from segmentation masks". The inputs are ReVOS's own files: the expressions
(``meta_expressions_valid_.json``: ``{"videos": {video: {"frames": [frame ids], "expressions": {exp_id:
{"exp", "obj_id", "anno_id"}}}}}``), the masks (``mask_dict.json``: ``{anno_id: [COCO RLE or null per frame
of the video, in the order of its "frames"]}``) and the frame folders (``<root>/<video>/<frame id>.jpg``).

For each expression: six frames at ``np.linspace(0, n - 1, 6, dtype=int)`` of the video's frames (the
uniform sampling of the ReVOS readers, e.g. VISA / Sa2VA), the third one grounded (the released
UniVG-R1 JSON's convention, which ``benchmarks.revos`` scores), and per frame the box of the union of
the expression's masks (``pycocotools`` ``merge`` + ``toBbox``), as xyxy pixels of its first and last
mask pixel (inclusive, as the ReVOS readers' ``generate_bbox`` writes them). The output is that
released JSON's format (``video_id``, ``frames`` as indices into the numerically sorted frame files,
``question``, ``bbox_list``), so the official loader and scorer apply unchanged. Expressions that
cannot make an item (fewer than six frames, no mask on the grounded frame, a missing mask or frame
file) are listed in ``bad_records.jsonl`` beside the output, with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from migrl.bad_records import BadRecords
from migrl.benchmarks.revos import N_FRAMES, TARGET, sorted_frames
from migrl.jsonl import write_json_atomic
from migrl.records import RecordError

EMPTY = [0.0, 0.0, 0.0, 0.0]  # a sampled frame the object is absent from (only the grounded frame is scored)


def sample_frames(n: int) -> list[int]:
    return np.linspace(0, n - 1, N_FRAMES, dtype=int).tolist()


def union_box(rles: list[Any]) -> list[float] | None:
    """xyxy pixels around the union of a frame's masks; None when every mask is empty or absent."""
    present = [_as_rle(r) for r in rles if r is not None]
    if not present:
        return None
    merged = mask_utils.merge(present, intersect=False) if len(present) > 1 else present[0]
    if mask_utils.area(merged) == 0:
        return None
    x, y, w, h = (float(v) for v in mask_utils.toBbox(merged))
    return [x, y, x + w - 1, y + h - 1]  # the readers' generate_bbox: first and last mask pixel, inclusive


def _as_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """pycocotools wants compressed counts as bytes; uncompressed (a list) is converted first."""
    if isinstance(rle.get("counts"), list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": rle["size"], "counts": rle["counts"].encode() if isinstance(rle["counts"], str) else rle["counts"]}


def _item(video: str, exp_id: str, info: dict[str, Any], masks: dict[str, Any], root: Path,
          listing: dict[str, dict[str | int, int]]) -> dict[str, Any]:
    where, exp = f"{video}/{exp_id}", info["expressions"][exp_id]
    frames = info.get("frames")
    if not isinstance(frames, list) or len(frames) < N_FRAMES:
        raise RecordError(where, "frames", f"{len(frames) if isinstance(frames, list) else 0} frames, {N_FRAMES} needed")
    anno_ids = exp.get("anno_id") or []
    if not anno_ids:
        raise RecordError(where, "anno_id", "the expression has no mask")
    missing = [a for a in anno_ids if str(a) not in masks]
    if missing:
        raise RecordError(where, "anno_id", f"{missing} not in mask_dict.json")
    picked = sample_frames(len(frames))
    boxes = []
    for f in picked:
        try:
            boxes.append(union_box([masks[str(a)][f] for a in anno_ids]))
        except (IndexError, TypeError, KeyError, ValueError, AttributeError) as exc:  # not an RLE
            raise RecordError(where, "anno_id", f"mask of frame {f} unreadable: {exc}") from None
    if boxes[TARGET] is None:
        raise RecordError(where, "anno_id", f"no mask on the grounded frame ({frames[picked[TARGET]]!r})")
    if video not in listing:
        try:
            listing[video] = _frame_positions(root / video)
        except (OSError, ValueError) as exc:
            raise RecordError(where, "video", f"cannot list the frames of {str(root / video)!r}: {exc}") from None
    at = [_position(listing[video], frames[f]) for f in picked]
    if None in at:
        absent = [frames[f] for f, i in zip(picked, at) if i is None]
        raise RecordError(where, "frames", f"frame files {absent} not in {str(root / video)!r}")
    return {"video_id": video, "frames": at, "question": exp.get("exp", ""),
            "bbox_list": [b if b is not None else EMPTY for b in boxes], "exp_id": exp_id}


def _frame_positions(video_dir: Path) -> dict[str | int, int]:
    """Each frame file's index among the numerically sorted ones (``sorted_frames``), by its name's stem
    ("00012") and by its number (12, the first file with it), once per video."""
    positions: dict[str | int, int] = {}
    for i, name in enumerate(sorted_frames(video_dir)):
        stem = Path(name).stem
        positions[stem] = i
        positions.setdefault(int(re.findall(r"\d+", stem)[0]), i)
    return positions


def _position(positions: dict[str | int, int], frame: Any) -> int | None:
    """Where frame id ``frame`` ("00012", or the integer 12) is: by name first, else by number."""
    if str(frame) in positions:
        return positions[str(frame)]
    if isinstance(frame, int) or str(frame).isdigit():
        return positions.get(int(frame))
    return None


def build(expressions: str | Path, masks: str | Path, frames_root: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the items to ``out`` (atomically) and ``bad_records.jsonl`` beside it; returns a summary."""
    videos = json.loads(Path(expressions).read_text())["videos"]
    mask_dict = json.loads(Path(masks).read_text())
    root, out = Path(frames_root), Path(out)
    bad = BadRecords(expressions)
    items: list[dict[str, Any]] = []
    listing: dict[str, dict[str | int, int]] = {}
    for video in sorted(videos):
        info = videos[video]
        for exp_id in sorted(info.get("expressions", {}), key=_numeric_first):
            try:
                items.append(_item(video, exp_id, info, mask_dict, root, listing))
            except RecordError as exc:
                bad.add(f"{video}/{exp_id}", exc.field_name, exc.reason)
    write_json_atomic(out, items)
    return {"items": len(items), "out": str(out), "bad_records": bad.finish(out.parent)}


def _numeric_first(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)
