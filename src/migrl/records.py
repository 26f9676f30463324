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
# Every task a migrl records file may name: MIG-Bench's ten (the world uses the same names) and the
# training sources' (world "grounding", MGrounding "free_form", RefCOCO "rec", COCO-format "detection").
# A task outside this list is most likely a typo, which would silently score as a task of its own.
KNOWN_TASKS = frozenset({
    "common_object", "diff", "region", "refer_grounding", "group_grounding", "correspondence",
    "object_tracking", "multi_view", "reasoning", "view_diff",
    "grounding", "free_form", "rec", "detection",
})
# A ground-truth box may overhang its image by this much (original pixels): rounding, not a wrong box.
BOX_OVERHANG_PIXELS = 1.0


class RecordError(ValueError):
    """A record that cannot be used; the message names where it is, which field, and why."""

    def __init__(self, where: str, field_name: str, reason: str):
        self.where, self.field_name, self.reason = where, field_name, reason
        super().__init__(f"{where}: field {field_name!r}: {reason}")


@dataclass(frozen=True)
class BadRecord:
    """One record a stage skipped: a row of ``bad_records.jsonl`` (see ``migrl.bad_records``)."""

    where: str  # where a person finds it: "file:line (id X)", "source s: record X", ...
    field: str  # the field at fault ("images[1]", "boxes[0].bbox", "<line>" for broken JSON)
    reason: str
    file: str | None = None
    line: int | None = None  # 1-based line in ``file``, when it is a JSONL file
    record: str | None = None  # the record's id, when it has one

    def __str__(self) -> str:
        return f"{self.where}: field {self.field!r}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "record": self.record, "field": self.field,
                "reason": self.reason, "where": self.where}

    @classmethod
    def from_error(cls, exc: RecordError, file: str | None = None, line: int | None = None,
                   record: str | None = None) -> "BadRecord":
        return cls(exc.where, exc.field_name, exc.reason, file, line, record)


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

    def with_meta(self, key: str, value: Any) -> "Record":
        return Record(**{**self.__dict__, "meta": {**self.meta, key: value}})


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
    bad: list[BadRecord] = field(default_factory=list)  # the errors, structured (load_records fills it)
    lines: dict[str, int] = field(default_factory=dict)  # record id -> its line in the file
    source: Any = None  # what a benchmark's scorer needs beyond the records (its scan, its ground truth)


def iter_record_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def load_records(path: str | Path, strict: bool = False) -> LoadReport:
    """Read a JSONL file of records. Bad lines become errors ("file:line (id X): field ...: reason");
    ``strict`` raises the first one instead."""
    report = LoadReport()
    seen: set[str] = set()
    for lineno, line in iter_record_lines(path):
        where = f"{path}:{lineno}"
        rid = None
        try:
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise RecordError(where, "<line>", f"not valid JSON ({exc})") from None
            if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)) and not isinstance(raw.get("id"), bool):
                rid = str(raw["id"])
            record = record_from_dict(raw, where)
            if record.task not in KNOWN_TASKS:
                raise RecordError(f"{where} (id {record.id})", "task", f"unknown task {record.task!r}; known: {sorted(KNOWN_TASKS)}")
            if record.id in seen:
                raise RecordError(f"{where} (id {record.id})", "id", f"duplicate id {record.id!r}")
            seen.add(record.id)
            report.records.append(record)
            report.lines[record.id] = lineno
        except RecordError as exc:
            if strict:
                raise
            report.errors.append(str(exc))
            report.bad.append(BadRecord.from_error(exc, str(path), lineno, rid))
    return report


def read_records(path: str | Path) -> list[Record]:
    """All records of a file, raising on the first bad one (for files migrl wrote itself)."""
    return load_records(path, strict=True).records


def data_root(path: str | Path) -> Path:
    """Image paths in a records file are relative to its folder."""
    return Path(path).resolve().parent


def require_file(path: str | Path, option: str) -> None:
    """FileNotFoundError, in one line that names the option, for an input that is not there (a folder
    counts: some benchmarks are released as one, ODinW-35's or LISA's)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{option} {str(path)!r}: not found (from {str(Path.cwd())!r})")


# The field of a record skipped because it is too long for a setting (max_length, the context): a length
# problem, reported as one, not as a fault of its images.
LENGTH_FIELD = "length"


def record_image_sizes(record: Record, root: str | Path, where: str | None = None, check_boxes: bool = True,
                       sizing: Any = None, max_image_tokens: int | None = None) -> list[tuple[int, int]]:
    """(width, height) of each of a record's images, read from the headers, after checking what only
    the files can tell: each image exists, is readable and no bomb, lies inside the data root; each
    ground-truth box lies on its image (``check_boxes``); and, given ``sizing`` and
    ``max_image_tokens``, the images fit the model's context. Raises RecordError naming the field.
    """
    from migrl.images import ImageError, image_size, resolve_image_path

    where = where or f"record {record.id}"
    sizes = []
    for k, p in enumerate(record.images):
        try:
            sizes.append(image_size(resolve_image_path(p, root)))
        except ImageError as exc:
            raise RecordError(where, f"images[{k}]", str(exc)) from None
    if check_boxes:
        check_boxes_on_images(record, sizes, where)
    if sizing is not None and max_image_tokens is not None:
        # +2 per image: Qwen2.5-VL wraps each image's tokens in <|vision_start|> ... <|vision_end|>.
        tokens = sum(sizing.image_tokens(w, h) + 2 for w, h in sizes)
        if tokens > max_image_tokens:
            raise RecordError(where, LENGTH_FIELD, f"{len(sizes)} images make {tokens} image tokens, over the "
                              f"{max_image_tokens} the model's context leaves; truncating would cut image tokens")
    return sizes


def check_boxes_on_images(record: Record, sizes: list[tuple[int, int]], where: str) -> None:
    """RecordError for a ground-truth box that leaves its image (beyond ``BOX_OVERHANG_PIXELS``)."""
    from migrl.boxes import convert

    for i, box in enumerate(record.boxes):
        if box.space == Space.QWEN25.value:
            continue  # depends on a model's image-size setting the record does not carry
        w, h = sizes[box.image_index]
        x1, y1, x2, y2 = convert(box.bbox, box.space, Space.PIXELS, (w, h))
        tol = BOX_OVERHANG_PIXELS
        if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
            raise RecordError(where, f"boxes[{i}].bbox",
                              f"box {list(box.bbox)} ({box.space}) leaves image {box.image_index + 1}, which is {w}x{h} pixels")
