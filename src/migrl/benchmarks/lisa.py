"""LISA-grounding: LISA ReasonSeg turned into box grounding, scored as Visual-RFT / UniVG-R1 do.

Official protocol (read): AMAP-ML/UniVG-R1 ``eval/zero_shot/lisa_evaluation/eval.py`` ``evaluate_model``
and ``compute_iou``, ``merge.py`` (Acc@0.5 with ``>=``); the same code as Visual-RFT
``lisa_evaluation/Qwen2_VL_lisa_infere.py`` (there ``instruction`` is a list and its first entry is used).

- Items ``{"image_path", "instruction", "boxes": [[x1, y1, x2, y2], ...]}`` (``lisa_{split}.json``);
  the ground truth is ``boxes[0]`` in pixels (its first four values), divided by the image size as it
  is (a negative value too: the Record's box is clipped at 0, the file's is scored).
- The model box is the FIRST match of ``\\(\\s*(\\d+)\\s*,\\s*(\\d+)\\s*\\)\\s*,\\s*\\(...\\)`` in the WHOLE
  response, divided by 1000 (Qwen2-VL). IoU has ``+ 1e-6`` in the denominator; any failure scores 0.
  (The official script decodes ``generated_ids`` untrimmed, so its "response" starts with the prompt;
  an instruction holding a ``(x1,y1),(x2,y2)`` pair would be read there first. migrl reads the model's
  text only.)
- Denominator: every item of the file, as the official loop (``try: ... except Exception:
  ious.append(0)``). An item it fails on -- no box (``"boxes": []``), a box that is not numbers, no
  instruction, an image that cannot be read -- is scored 0 here too and listed in
  ``zero_for_bad_input_items`` (unreadable images in ``errors``); an item without ``image_path`` or
  that is no object stops the official script outright (it is read outside the ``try``): here it is
  scored 0 as well.

The items come from Visual-RFT ``lisa_evaluation/gen_box_ann.py``, which this module also is for a
LISA ReasonSeg folder (one ``name.json`` with ``text`` and ``shapes`` per image): a ``.json`` becomes an
item only when ``name.jpg`` exists (``.jpg`` only; the others are left out, and named in ``errors``);
the box is the min/max of the points of ``shapes[:1]`` (label not checked), and with no shape the item
has ``"boxes": []`` and is scored 0; the instruction is ``text`` (the eval takes ``text[0]``). Where
gen_box_ann.py stops (a file that is not JSON, a shape without points), the item is scored 0 here.
Files are taken in sorted order (gen_box_ann.py: ``os.listdir`` order); ids are the file stems.

``coords=qwen2`` is the official rule itself; any other space reads the box with migrl's parser and
converts it from that space on this image (Qwen2.5-VL answers in pixels of the resized image).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from migrl.benchmarks.base import (
    ImageSizes,
    model_box,
    number_list,
    protocol,
    read_json,
    require,
    result,
)
from migrl.benchmarks.zero import ZERO_KEY, Scan, ZeroItem, count_zeros, zero_entries
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError, record_from_dict
from migrl.scoring.judge import tally

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
    raw = list(record.meta.get(OFFICIAL_BOX, gt.bbox))  # the file's box, negative values and all
    raw = [float(int(v)) for v in raw] if integer_gt else raw  # ReVOS casts to int first
    truth = [raw[0] / size[0], raw[1] / size[1], raw[2] / size[0], raw[3] / size[1]]
    if coords is Space.QWEN2:
        pred = official_box(text)
    else:
        box = model_box(text, record, gt.image_index, Space.NORMALIZED, coords, sizes, sizing)
        pred = list(box) if box is not None else None
    return pred is not None and official_iou(pred, truth) >= 0.5


# The box as the file gives it, which the official code divides by the image size as it is. A Record holds
# no negative coordinate, so its box is clipped at 0 and this unclipped one is what is scored.
OFFICIAL_BOX = "official_box"


def official_gt(value: Any, where: str, name: str) -> list[float]:
    """The official code reads ``box[0..3]`` of a list: at least 4 values, the first 4 finite numbers."""
    if not isinstance(value, (list, tuple)) or len(value) < 4:
        raise RecordError(where, name, f"expected [x1, y1, x2, y2], got {value!r}")
    return number_list(list(value[:4]), 4, where, name)


def box_fields(bbox: list[float], image_index: int = 0) -> dict[str, Any]:
    """The record's ``boxes`` (clipped at 0) and ``meta`` (the box to score)."""
    clipped = [max(0.0, v) for v in bbox]
    return {"boxes": [{"image_index": image_index, "bbox": clipped, "space": "pixels"}], "meta": {OFFICIAL_BOX: bbox}}


def _item_record(item: Any, i: int, where: str, split: str) -> dict[str, Any]:
    path = require(item, "image_path", str, where)
    instruction = require(item, "instruction", (str, list), where)
    if isinstance(instruction, list):  # Visual-RFT's files keep the ReasonSeg list; it uses the first
        if not instruction or not isinstance(instruction[0], str):
            raise RecordError(where, "instruction", "expected a string or a non-empty list of strings")
        instruction = instruction[0]
    boxes = require(item, "boxes", list, where)
    if not boxes:
        raise RecordError(where, "boxes", "empty (no box to ground)")
    bbox = official_gt(boxes[0], where, "boxes[0]")
    return {
        "id": str(i), "task": split, "images": [path], "question": instruction, "split": split, "source": "lisa",
        **box_fields(bbox),
    }


def _reasonseg_record(path: Path, where: str, split: str) -> dict[str, Any]:
    """``gen_box_ann.py`` on one file: ``text`` as the instruction, min/max of ``shapes[:1]``'s points."""
    item = read_json(path)
    texts = require(item, "text", (list, str), where)
    text = texts if isinstance(texts, str) else (texts[0] if texts and isinstance(texts[0], str) else None)
    if not text:
        raise RecordError(where, "text", "expected a non-empty instruction")
    shapes = require(item, "shapes", list, where)
    if not shapes:
        raise RecordError(where, "shapes", "empty: gen_box_ann.py writes 'boxes': [], scored 0")
    points = shapes[0].get("points") if isinstance(shapes[0], dict) else None
    if not isinstance(points, list) or not points:
        raise RecordError(where, "shapes[0].points", "expected a polygon")
    pts = [number_list(p, 2, where, "shapes[0].points[]") for p in points]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return {
        "id": path.stem, "task": split, "images": [_image_of(path).name], "question": text, "split": split,
        "source": "lisa", **box_fields([min(xs), min(ys), max(xs), max(ys)]),
    }


def _image_of(json_path: Path) -> Path:
    return json_path.with_suffix(".jpg")  # gen_box_ann.py: json_path.replace(".json", ".jpg"), .jpg only


def _split_name(path: Path) -> str:
    name = path.stem if path.is_file() else path.name
    return name.removeprefix("lisa_") or "lisa"


def _keep(scan: Scan, raw: Callable[[], dict[str, Any]], rid: str, where: str, split: str) -> None:
    """A record, or (any RecordError / unreadable JSON) an item kept in the denominator and scored 0."""
    try:
        record = record_from_dict(raw(), where)
    except RecordError as exc:
        scan.keep_zero(split, ZeroItem.from_error(exc, rid))
        return
    except ValueError as exc:  # a file that is not JSON
        scan.keep_zero(split, ZeroItem(rid, "<file>", str(exc), f"{where}: field '<file>': {exc}"))
        return
    scan.report.records.append(record)


def scan(data_path: str | Path) -> Scan:
    """Every item of the official denominator: a record, or a zero item (see ``migrl.benchmarks.zero``)."""
    path = Path(data_path)
    split = _split_name(path)
    out = Scan(LoadReport(), [])
    if path.is_dir():
        for file in sorted(path.glob("*.json")):
            if not _image_of(file).exists():  # gen_box_ann.py writes no item for it
                out.report.errors.append(f"{file}: field 'image': no {_image_of(file).name}: gen_box_ann.py "
                                         "leaves the file out of the benchmark (not counted)")
                continue
            _keep(out, lambda f=file: _reasonseg_record(f, str(f), split), file.stem, str(file), split)
        return out
    items = read_json(path)
    if not isinstance(items, list):
        out.report.errors.append(f"{path}: expected a JSON list of LISA items")
        return out
    for i, item in enumerate(items):
        where = f"{path}: item {i}"
        _keep(out, lambda item=item, i=i, where=where: _item_record(item, i, where, split), str(i), where, split)
    return out


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """``lisa_{split}.json`` (ids = 0-based positions) or a ReasonSeg folder (ids = file stems)."""
    found = scan(data_path)
    found.report.source = found
    return found.report


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 of the split; a missing prediction, a bad item or any failure counts as wrong."""
    out = score_scan(loaded.source, predictions, coords, root, sizing)
    out["protocol"] = protocol("official", official_detail(coords, LISA_DETAIL), *denominator(out))
    return out


LISA_DETAIL = ("UniVG-R1 lisa_evaluation eval.py + merge.py on Visual-RFT gen_box_ann.py items: Acc@0.5 "
               "(IoU with + 1e-6, >= 0.5) against boxes[0] / image size; every item of the file counted")


def official_detail(coords: Space, what: str) -> str:
    read = ("the first (x1,y1),(x2,y2) of the response / 1000, the official reading" if coords is Space.QWEN2 else
            f"the first box of the answer, converted from {coords.value} on its image (the official / 1000 "
            "assumes Qwen2-VL)")
    return f"{what}; model box: {read}"


def denominator(out: dict[str, Any]) -> tuple[int, int]:
    """Items counted, and those scored 0 for bad input (zero items, and images that could not be read)."""
    return sum(t for _, t in out["counts"].values()), len(out[ZERO_KEY]) + out["unreadable_images"]


def score_scan(
    found: Scan, predictions: dict[str, str], coords: Space, root: Path, sizing: ImageSizing | None,
    integer_gt: bool = False, check_images: bool = False,
) -> dict[str, Any]:
    """Acc@0.5 per task over the records and the zero items; ``check_images``: every image of a record is read
    (ReVOS: the official code loads all six frames, so an unreadable one scores the item 0)."""
    sizes = ImageSizes(root)
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors = found.other_errors()
    before = len(errors)
    missing = 0
    for record in found.report.records:
        def judge(text: str, r: Record = record) -> bool:
            if check_images:
                for image in r.images:
                    sizes(image)
            return grounding_hit(text, r, coords, sizes, sizing, integer_gt)

        missing += tally(record, predictions, judge, hits, totals, errors)
    unreadable = len(errors) - before
    count_zeros(found.zeros, totals)
    out = result(hits, totals, missing, errors)
    out[ZERO_KEY] = zero_entries(found.zeros)
    out["unreadable_images"] = unreadable
    return out
