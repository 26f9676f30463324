"""The one record schema every stage reads and writes (JSONL, one record per line).

A record is a multi-image grounding (or multiple-choice) item::

    {"id": "common_object-test-00012", "task": "common_object",
     "images": ["images/test/00012_0.png", "images/test/00012_1.png"],
     "question": "These images share one object in common. ...",
     "boxes": [{"image_index": 1, "bbox": [31.0, 40.0, 77.0, 81.0], "space": "pixels"}],
     "split": "test", "domain": "id", "choices": null, "answer": null,
     "response": null, "source": "world", "meta": {}}

``image_index`` is 0-based into ``images``; prompts speak of "image 1" for index 0. ``response``
holds an assistant answer (SFT records); ``answer`` the gold option letter of multiple-choice items.
Relative image paths are resolved against the data root (the folder of the records file unless said
otherwise) and may not leave it; records a stage derives into another folder carry absolute paths.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from migrl.boxes import Space

DOMAINS = ("id", "ood")


class RecordError(ValueError):
    """A record that cannot be used; the message names where it is, which field, and why."""

    def __init__(self, where: str, field_name: str, reason: str):
        self.where, self.field_name, self.reason = where, field_name, reason
        super().__init__(f"{where}: field {field_name!r}: {reason}")


@dataclass(frozen=True)
class GroundTruthBox:
    image_index: int
    bbox: tuple[float, float, float, float]
    space: str = Space.PIXELS.value


@dataclass(frozen=True)
class Record:
    id: str
    task: str
    images: tuple[str, ...]
    question: str
    boxes: tuple[GroundTruthBox, ...] = ()
    split: str = "test"
    domain: str = "id"
    choices: tuple[str, ...] | None = None
    answer: str | None = None
    response: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> GroundTruthBox | None:
        """The box the question asks for (the first one)."""
        return self.boxes[0] if self.boxes else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = list(self.images)
        d["boxes"] = [{**asdict(b), "bbox": list(b.bbox)} for b in self.boxes]
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def with_response(self, response: str | None) -> "Record":
        return Record(**{**self.__dict__, "response": response})

    def with_absolute_images(self, root: str | Path) -> "Record":
        """The record with image paths made absolute: for files a stage writes into another folder."""
        from migrl.images import resolve_image_path

        return Record(**{**self.__dict__, "images": tuple(str(resolve_image_path(p, root)) for p in self.images)})


def _require(d: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise RecordError(where, key, "missing")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RecordError(where, key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def _parse_box(raw: Any, n_images: int, where: str, name: str) -> GroundTruthBox:
    if not isinstance(raw, dict):
        raise RecordError(where, name, f"expected an object, got {type(raw).__name__}")
    index = raw.get("image_index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise RecordError(where, f"{name}.image_index", f"expected an integer, got {index!r}")
    if not 0 <= index < n_images:
        raise RecordError(where, f"{name}.image_index", f"{index} is not an index into {n_images} image(s)")
    bbox = raw.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise RecordError(where, f"{name}.bbox", f"expected [x1, y1, x2, y2], got {bbox!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        raise RecordError(where, f"{name}.bbox", f"expected 4 finite numbers, got {bbox!r}")
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if x2 <= x1 or y2 <= y1:
        raise RecordError(where, f"{name}.bbox", f"degenerate or inverted box {bbox!r} (need x1 < x2 and y1 < y2)")
    space = raw.get("space", Space.PIXELS.value)
    if space not in {s.value for s in Space}:
        raise RecordError(where, f"{name}.space", f"unknown coordinate space {space!r}")
    if space == Space.NORMALIZED.value and (min(x1, y1) < 0 or max(x2, y2) > 1):
        raise RecordError(where, f"{name}.bbox", f"normalized box {bbox!r} leaves [0, 1]")
    if min(x1, y1) < 0:
        raise RecordError(where, f"{name}.bbox", f"negative coordinate in {bbox!r}")
    return GroundTruthBox(index, (x1, y1, x2, y2), space)


def record_from_dict(d: Any, where: str = "record") -> Record:
    """Validate a decoded JSON object; raise RecordError naming the first bad field."""
    if not isinstance(d, dict):
        raise RecordError(where, "<record>", f"expected a JSON object, got {type(d).__name__}")
    rid = d.get("id")
    if isinstance(rid, (str, int)) and not isinstance(rid, bool):
        where = f"{where} (id {rid!s})"
    rid = _require(d, "id", (str, int), where)
    task = _require(d, "task", str, where)
    if not task:
        raise RecordError(where, "task", "empty")
    images = _require(d, "images", list, where)
    if not images:
        raise RecordError(where, "images", "no images")
    for i, p in enumerate(images):
        if not isinstance(p, str) or not p:
            raise RecordError(where, f"images[{i}]", f"expected a path, got {p!r}")
    question = _require(d, "question", str, where)
    raw_boxes = d.get("boxes") or []
    if not isinstance(raw_boxes, list):
        raise RecordError(where, "boxes", f"expected a list, got {type(raw_boxes).__name__}")
    boxes = tuple(_parse_box(b, len(images), where, f"boxes[{i}]") for i, b in enumerate(raw_boxes))
    choices = d.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise RecordError(where, "choices", "expected a list of strings or null")
    if not boxes and choices is None:
        raise RecordError(where, "boxes", "a grounding record needs at least one box (or 'choices' for multiple choice)")
    domain = d.get("domain", "id")
    if domain not in DOMAINS:
        raise RecordError(where, "domain", f"expected one of {DOMAINS}, got {domain!r}")
    for key in ("split", "source"):
        if key in d and not isinstance(d[key], str):
            raise RecordError(where, key, f"expected str, got {type(d[key]).__name__}")
    for key in ("answer", "response"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise RecordError(where, key, f"expected str or null, got {type(d[key]).__name__}")
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise RecordError(where, "meta", f"expected an object, got {type(meta).__name__}")
    return Record(
        id=str(rid),
        task=task,
        images=tuple(images),
        question=question,
        boxes=boxes,
        split=d.get("split", "test"),
        domain=domain,
        choices=tuple(choices) if choices is not None else None,
        answer=d.get("answer"),
        response=d.get("response"),
        source=d.get("source", ""),
        meta=meta,
    )


@dataclass
class LoadReport:
    """Records that loaded and the errors of those that did not, so one bad line never sinks a file."""

    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def iter_record_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def load_records(path: str | Path, strict: bool = False) -> LoadReport:
    """Read a JSONL file of records. Bad lines become errors ("file:line (id X): field ...: reason")."""
    report = LoadReport()
    seen: set[str] = set()
    for lineno, line in iter_record_lines(path):
        where = f"{path}:{lineno}"
        try:
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise RecordError(where, "<line>", f"not valid JSON ({exc})") from None
            record = record_from_dict(raw, where)
            if record.id in seen:
                raise RecordError(where, "id", f"duplicate id {record.id!r}")
            seen.add(record.id)
            report.records.append(record)
        except RecordError as exc:
            if strict:
                raise
            report.errors.append(str(exc))
    return report


def read_records(path: str | Path) -> list[Record]:
    """All records of a file, raising on the first bad one (for files migrl wrote itself)."""
    return load_records(path, strict=True).records


def data_root(path: str | Path) -> Path:
    """Image paths in a records file are relative to its folder."""
    return Path(path).resolve().parent
