"""What every benchmark module shares: the Benchmark entry, reading annotation files, image sizes,
turning a model's text into a box in the benchmark's space, and the result dictionary.

A benchmark module exposes ``load(data_path, image_root=None) -> LoadReport`` and
``score(data_path, predictions, coords, image_root, sizing) -> dict``; the dict has the keys of
MIG-Bench scoring (``tasks``, ``avg``, ``id_avg``, ``ood_avg``, ``counts``, ``missing_predictions``)
plus its own. Annotation files are read as they are published; a bad record becomes one error
string naming the file, the record and the field, and the other records still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from migrl.boxes import Space, convert, parse_answer
from migrl.images import ImageError, ImageSizes, ImageSizing
from migrl.records import LoadReport, Record, RecordError, record_from_dict
from migrl.scoring.summary import summarize


class Loader(Protocol):
    def __call__(self, data_path: str | Path, image_root: str | Path | None = None) -> LoadReport: ...


class Scorer(Protocol):
    def __call__(
        self,
        data_path: str | Path,
        predictions: dict[str, str],
        coords: Space | str = ...,
        image_root: str | Path | None = None,
        sizing: ImageSizing | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Loader
    score: Scorer
    official_source: str  # repository, file and function the scorer reproduces


@dataclass(frozen=True)
class InvalidLine:
    """A JSONL line that is not JSON. It keeps its place in the list, so ids that are positions stay
    stable, and ``require`` turns it into that item's error while the other lines load."""

    lineno: int
    reason: str


def read_json(path: str | Path) -> Any:
    """A JSON document, or a JSONL file (one object per line) as a list.

    The file is taken as JSONL when at least half of its non-empty lines are JSON objects (a broken
    pretty-printed document is not); its broken lines become ``InvalidLine`` items.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        whole = exc
    rows: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                rows.append(InvalidLine(lineno, str(exc)))
    if sum(isinstance(r, dict) for r in rows) * 2 < max(len(rows), 1):
        raise ValueError(f"{path}: not valid JSON or JSONL ({whole})")
    return rows


def root_of(data_path: str | Path, image_root: str | Path | None) -> Path:
    """Images are relative to ``image_root``, else to the annotation file's folder."""
    if image_root is not None:
        return Path(image_root)
    p = Path(data_path)
    return p if p.is_dir() else p.resolve().parent


def build_record(raw: dict[str, Any], where: str, report: LoadReport) -> Record | None:
    """Validate through the one record schema; a failure is reported, never raised."""
    try:
        record = record_from_dict(raw, where)
    except RecordError as exc:
        report.errors.append(str(exc))
        return None
    report.records.append(record)
    return record


def require(item: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``item[key]`` of the expected type, or a RecordError naming the field."""
    if isinstance(item, InvalidLine):
        raise RecordError(where, "<line>", f"line {item.lineno} is not valid JSON ({item.reason})")
    if not isinstance(item, dict):
        raise RecordError(where, "<record>", f"expected a JSON object, got {type(item).__name__}")
    if key not in item:
        raise RecordError(where, key, "missing")
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise RecordError(where, key, f"expected {names}, got {type(value).__name__}")
    return value


def number_list(value: Any, n: int, where: str, name: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise RecordError(where, name, f"expected {n} numbers, got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise RecordError(where, name, f"expected {n} numbers, got {value!r}")
    return [float(v) for v in value]


def xywh_to_xyxy(b: list[float]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]



def model_box(
    text: str, record: Record, index: int, dst: Space, coords: Space, sizes: ImageSizes, sizing: ImageSizing
) -> tuple[float, float, float, float] | None:
    """The answer's first box converted from the model's space on image ``index`` to ``dst``.

    A box that names another image cannot match and gives None. Conversion is per image: Qwen2.5-VL
    answers in pixels of each image's own resized size, so dividing by 1000 would be wrong.
    """
    box = parse_answer(text).first_box
    if box is None or (box.image_index is not None and box.image_index != index):
        return None
    size = sizes(record.images[index])
    return convert(box.bbox, coords, dst, size, sizing)


def result(
    hits: dict[str, int],
    totals: dict[str, int],
    missing: int,
    errors: Iterable[str] = (),
    id_tasks: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The MIG-Bench result contract. With no ID/OOD split, ``id_avg`` is the average and ``ood_avg`` None."""
    out = summarize(hits, totals, totals.keys() if id_tasks is None else id_tasks)
    out["missing_predictions"] = missing
    errors = list(errors)
    if errors:
        out["errors"] = errors
    return out


def count_item(
    record: Record,
    predictions: dict[str, str],
    judge: Callable[[str], bool],
    hits: dict[str, int],
    totals: dict[str, int],
    errors: list[str],
) -> bool:
    """Add one record to the tallies; returns whether its prediction was missing."""
    totals[record.task] = totals.get(record.task, 0) + 1
    text = predictions.get(record.id)
    if text is None:
        return True
    try:
        correct = judge(text)
    except ImageError as exc:
        errors.append(f"record {record.id}: {exc}")
        correct = False
    hits[record.task] = hits.get(record.task, 0) + bool(correct)
    return False


# How a figure was computed, said beside it (migrl score prints it, the report shows it):
PROTOCOL_KINDS = (
    "official",  # the benchmark's official code and its item set
    "paper subset",  # the official rule on the subset the paper reports (its tasks, subsets or styles)
    "fixed",  # the official rule with a documented bug fixed (shown beside the official figure)
    "rule-only",  # the official rule-based extraction, without its LLM judge (cannot run offline)
    "migrl",  # migrl's own records (the embedded world, prepared pools): no official code exists
)


def protocol(kind: str, detail: str, items: int, zero_for_bad_input: int = 0) -> dict[str, Any]:
    """The ``protocol`` entry of a result: which protocol (``PROTOCOL_KINDS``), what it means in a few words,
    the denominator (items counted) and how many of them were scored 0 because their input was bad
    (an annotation without a box, a missing frame: the official code keeps them and scores them 0)."""
    if kind not in PROTOCOL_KINDS:
        raise ValueError(f"unknown protocol kind {kind!r}; one of {PROTOCOL_KINDS}")
    return {"kind": kind, "detail": detail, "items": items, "zero_for_bad_input": zero_for_bad_input}
