"""Pieces every source loader shares: the load report, record validation, COCO boxes, image paths."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrl.records import BadRecord, Record, RecordError, record_from_dict


class SourceError(ValueError):
    """A whole source file cannot be used (missing, not JSON, wrong top-level shape)."""


@dataclass
class SourceReport:
    """What a loader built: records, one error per bad item, and counts of items left out on purpose."""

    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    bad: list[BadRecord] = field(default_factory=list)  # the errors, structured

    def reject(self, exc: RecordError, file: str | Path) -> None:
        """An item that cannot become a record: reported, never fatal."""
        self.errors.append(str(exc))
        self.bad.append(BadRecord.from_error(exc, str(file)))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except ValueError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from None


def build_record(fields: dict[str, Any], where: str) -> Record:
    """Validate through the one schema, so a loader can never write a record ``load_records`` rejects."""
    return record_from_dict(fields, where)


def image_path(root: str | Path, name: Any, where: str, field_name: str) -> str:
    """Absolute path of a source image: the prepared pools live in another folder than the images.
    A relative name may not climb out of ``root`` (``../../``)."""
    from migrl.images import ImageError, resolve_image_path

    if not isinstance(name, str) or not name.strip():
        raise RecordError(where, field_name, f"expected an image path, got {name!r}")
    try:
        return str(resolve_image_path(name, root))
    except ImageError as exc:
        raise RecordError(where, field_name, str(exc)) from None


def _finite_numbers(raw: Any, n: int) -> bool:
    return (
        isinstance(raw, list)
        and len(raw) == n
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in raw)
    )


def coco_box_to_xyxy(raw: Any, width: Any, height: Any, where: str, field_name: str = "bbox") -> tuple[float, ...]:
    """COCO ``[x, y, w, h]`` pixels -> ``[x1, y1, x2, y2]`` pixels, clipped to the image.

    COCO boxes sometimes overhang the image by a fraction of a pixel; clipping keeps them valid
    ground truth. A box with no area (before or after clipping) is an error, not a silent skip.
    """
    if not _finite_numbers(raw, 4):
        raise RecordError(where, field_name, f"expected [x, y, w, h] of 4 finite numbers, got {raw!r}")
    x, y, w, h = (float(v) for v in raw)
    if w <= 0 or h <= 0:
        raise RecordError(where, field_name, f"box {raw!r} has no area (w and h must be > 0)")
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), x + w, y + h
    if _finite_numbers([width, height], 2) and width > 0 and height > 0:
        x2, y2 = min(x2, float(width)), min(y2, float(height))
    if x2 <= x1 or y2 <= y1:
        raise RecordError(where, field_name, f"box {raw!r} lies outside the {width}x{height} image")
    return (x1, y1, x2, y2)


def index_by_id(rows: Any, path: str | Path, key: str) -> dict[Any, dict]:
    """``{row["id"]: row}`` of a COCO list (images, annotations, categories); rows without an id are skipped."""
    if not isinstance(rows, list):
        raise SourceError(f"{path}: {key!r} should be a list, got {type(rows).__name__}")
    return {r["id"]: r for r in rows if isinstance(r, dict) and "id" in r}


def coco_tables(path: str | Path) -> tuple[dict, dict, list]:
    """(images by id, categories by id, annotations) of a COCO-format JSON file."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a COCO object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise SourceError(f"{path}: COCO key {key!r} missing")
    if not isinstance(data["annotations"], list):
        raise SourceError(f"{path}: 'annotations' should be a list")
    return index_by_id(data["images"], path, "images"), index_by_id(data["categories"], path, "categories"), data["annotations"]
