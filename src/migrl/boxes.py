"""Boxes: coordinate spaces, conversions, parsing of model text, IoU.

Every box in migrl is ``[x1, y1, x2, y2]`` in a named space, relative to one image:

- ``pixels``      pixels of the original image (how ground truth is stored);
- ``qwen25``      pixels of the image as Qwen2.5-VL saw it, after ``smart_resize`` (each image of a
                  prompt has its own resized size, so the image index matters);
- ``normalized``  fractions of the image side, [0, 1];
- ``qwen2``       integers in [0, 1000] of each image: Qwen2-VL's and Qwen3-VL's (``migrl.models.family``).

The parser reads what models write (think/answer tags, JSON ``bbox_2d``, bare lists,
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, several boxes, an image index). It never raises and runs
in linear time on any string: every regex quantifier over digits is bounded, and tags are found
with ``str.find`` rather than backtracking patterns.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # annotations only: migrl.images takes its geometry from models/family.py, which needs Space
    from migrl.images import ImageSizing

Bbox = tuple[float, float, float, float]


class Space(str, Enum):
    PIXELS = "pixels"
    QWEN25 = "qwen25"
    NORMALIZED = "normalized"
    QWEN2 = "qwen2"


QWEN2_SCALE = 1000.0
# Acc@0.5: a box is right when its IoU with the ground truth is at least this (MIG-Bench's rule, the rewards',
# synthesis' consistency filter and every migrl scorer's; benchmarks whose official rule differs keep theirs).
ACCURACY_THRESHOLD = 0.5


def _scale_to_normalized(space: Space, size: tuple[int, int], sizing: ImageSizing | None) -> tuple[float, float]:
    """Per-axis divisors that take a box of ``space`` to [0, 1] for an image of original ``size``."""
    width, height = size
    if space is Space.PIXELS:
        return float(width), float(height)
    if space is Space.QWEN25:
        if sizing is None:  # no silent default: the resized size is the model's, and only its setting gives it
            raise ValueError("a qwen25 box needs the model's image setting (min/max pixels) to be converted")
        rw, rh = sizing.resized(width, height)
        return float(rw), float(rh)
    if space is Space.NORMALIZED:
        return 1.0, 1.0
    if space is Space.QWEN2:
        return QWEN2_SCALE, QWEN2_SCALE
    raise ValueError(f"unknown coordinate space {space!r}")


def convert(
    bbox: Sequence[float],
    src: Space | str,
    dst: Space | str,
    size: tuple[int, int],
    sizing: ImageSizing | None = None,
) -> Bbox:
    """Convert a box between spaces; ``size`` is the (width, height) of the original image the box is on."""
    src, dst = Space(src), Space(dst)
    sx, sy = _scale_to_normalized(src, size, sizing)
    dx, dy = _scale_to_normalized(dst, size, sizing)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return (x1 / sx * dx, y1 / sy * dy, x2 / sx * dx, y2 / sy * dy)


def round_box(bbox: Sequence[float]) -> list[int]:
    """Integers as a model writes them."""
    return [int(round(v)) for v in bbox]


def clip_box(bbox: Sequence[float], width: float, height: float) -> Bbox:
    x1, y1, x2, y2 = bbox
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Plain IoU (no +1). Inverted, empty or non-finite boxes score 0, as in the official scorers."""
    try:
        ax1, ay1, ax2, ay2 = (float(v) for v in a)
        bx1, by1, bx2, by2 = (float(v) for v in b)
    except (TypeError, ValueError):
        return 0.0
    if not all(math.isfinite(v) for v in (ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)):
        return 0.0
    if ax2 <= ax1 or ay2 <= ay1 or bx2 <= bx1 or by2 <= by1:
        return 0.0
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Parsing model text

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
MAX_ANSWER_CHARS = 4096  # a longer answer is not a well-formed answer; also bounds json.loads

_NUM = r"(-?[0-9]{1,12}(?:\.[0-9]{1,20})?)"  # ASCII digits only, bounded: no hang on 100k digits
_SEP = r"\s{0,8},\s{0,8}"
_LIST4 = rf"\[\s{{0,8}}{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}\s{{0,8}}\]"
_PAIR = rf"\(\s{{0,8}}{_NUM}{_SEP}{_NUM}\s{{0,8}}\)\s{{0,8}},\s{{0,8}}\(\s{{0,8}}{_NUM}{_SEP}{_NUM}\s{{0,8}}\)"
_OBJECT = r"\{[^{}]{0,400}\}"
# groups: 1 object, 2 pair (numbers 3-6), 7 list (numbers 8-11)
_BOX_RE = re.compile(rf"(?P<object>{_OBJECT})|(?P<pair>{_PAIR})|(?P<list>{_LIST4})")
_LIST4_RE = re.compile(_LIST4)
_IMAGE_KEY_RE = re.compile(r'"image(?:_index|_id)?"\s{0,8}:\s{0,8}"?(?:image\s{0,4})?([0-9]{1,2})', re.I)
_IMAGE_WORD_RE = re.compile(r"image[\s_\-]{0,3}([0-9]{1,2})", re.I)
_IMAGE_LOOKBACK = 32


@dataclass(frozen=True)
class PredictedBox:
    bbox: Bbox
    image_index: int | None  # 0-based; None when the text does not say which image
    style: str  # "json", "list" or "pair" (Qwen2's (x1,y1),(x2,y2))


@dataclass(frozen=True)
class ParsedAnswer:
    think: str | None
    answer: str | None  # content of <answer>...</answer>; None without an answer tag
    boxes: tuple[PredictedBox, ...]  # in order of appearance, from the answer part when there is one
    format_ok: bool  # <think>..</think><answer>..</answer> and the answer is a JSON box

    @property
    def first_box(self) -> PredictedBox | None:
        return self.boxes[0] if self.boxes else None


def _between(text: str, open_tag: str, close_tag: str) -> tuple[str | None, bool]:
    """Content after the first ``open_tag`` (up to its close tag, when closed), and whether it was closed."""
    start = text.find(open_tag)
    if start < 0:
        return None, False
    start += len(open_tag)
    end = text.find(close_tag, start)
    if end < 0:
        return text[start:], False
    return text[start:end], True


def _image_index_from_number(raw: str) -> int | None:
    n = int(raw)
    return n - 1 if n >= 1 else None


def _image_before(text: str, pos: int) -> int | None:
    window = text[max(0, pos - _IMAGE_LOOKBACK) : pos]
    found = _IMAGE_WORD_RE.findall(window)
    return _image_index_from_number(found[-1]) if found else None


def _finite_box(values: Sequence[str]) -> Bbox | None:
    box = tuple(float(v) for v in values)
    return box if all(math.isfinite(v) for v in box) else None  # type: ignore[return-value]


def find_boxes(text: str) -> list[PredictedBox]:
    """Every box in ``text``, in order of appearance."""
    boxes: list[PredictedBox] = []
    for m in _BOX_RE.finditer(text):
        if m.group("object"):
            obj = m.group("object")
            inner = _LIST4_RE.search(obj)
            if not inner:
                continue
            key = _IMAGE_KEY_RE.search(obj)
            index = _image_index_from_number(key.group(1)) if key else _image_before(text, m.start())
            box, style = _finite_box(inner.groups()), "json"
        elif m.group("pair"):
            box, style = _finite_box(m.group(3, 4, 5, 6)), "pair"
            index = _image_before(text, m.start())
        else:
            box, style = _finite_box(m.group(8, 9, 10, 11)), "list"
            index = _image_before(text, m.start())
        if box is not None:
            boxes.append(PredictedBox(box, index, style))
    return boxes


def _strip_code_fence(s: str) -> str:
    s = s.strip()
    if s.startswith("```"):
        s = s[3:]
        if s[:4].lower() == "json":
            s = s[4:]
        if s.endswith("```"):
            s = s[:-3]
    return s.strip()


def _is_json_box(obj: object) -> bool:
    if not isinstance(obj, dict):
        return False
    bbox = obj.get("bbox_2d")
    return (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    )


def answer_is_json_box(answer: str) -> bool:
    """The answer is a JSON object with ``bbox_2d`` of 4 numbers, or a non-empty list of such objects."""
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        obj = json.loads(_strip_code_fence(answer))
    except (ValueError, RecursionError):
        return False
    if isinstance(obj, list):
        return bool(obj) and all(_is_json_box(o) for o in obj)
    return _is_json_box(obj)


def has_think_answer_format(text: str) -> bool:
    """``<think>...</think>`` then ``<answer>...</answer>``, each exactly once, nothing outside them."""
    s = text.strip()
    tags = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    if any(s.count(t) != 1 for t in tags):
        return False
    positions = [s.find(t) for t in tags]
    if positions != sorted(positions) or positions[0] != 0 or not s.endswith(ANSWER_CLOSE):
        return False
    return s[positions[1] + len(THINK_CLOSE) : positions[2]].strip() == ""


def answer_part(text: str) -> str:
    """The content of ``<answer>...</answer>`` when the text has one (the whole text without one)."""
    start = text.find(ANSWER_OPEN)
    if start < 0:
        return text
    end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
    return text[start + len(ANSWER_OPEN) : end] if end >= 0 else text


def parse_answer(text: object) -> ParsedAnswer:
    """Parse a completion. Never raises: anything that is not a string parses as empty."""
    if not isinstance(text, str):
        return ParsedAnswer(None, None, (), False)
    think, _ = _between(text, THINK_OPEN, THINK_CLOSE)
    answer, _ = _between(text, ANSWER_OPEN, ANSWER_CLOSE)
    boxes = find_boxes(answer if answer is not None else text)
    format_ok = has_think_answer_format(text) and answer is not None and answer_is_json_box(answer)
    return ParsedAnswer(think, answer, tuple(boxes), format_ok)


def format_answer(bbox: Sequence[float], image_index: int | None = None) -> str:
    """The JSON answer migrl's models are taught to write (image index 1-based, like the prompt)."""
    box = round_box(bbox)
    if image_index is None:
        return json.dumps({"bbox_2d": box})
    return json.dumps({"image": image_index + 1, "bbox_2d": box})
