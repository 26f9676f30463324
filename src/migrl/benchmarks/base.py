"""What every benchmark module shares: the Benchmark entry, reading annotation files, image sizes,
turning a model's text into a box in the benchmark's space, and the result dictionary.

A benchmark module exposes ``load(data_path, image_root=None) -> LoadReport`` (its ``source`` holds what the
scorer needs beyond the records) and ``score(loaded, predictions, coords, root, sizing) -> dict``, so the
annotation file is read once; the dict has the keys of
MIG-Bench scoring (``tasks``, ``avg``, ``id_avg``, ``ood_avg``, ``counts``, ``missing_predictions``)
plus its own. Annotation files are read as they are published; a bad record becomes one error
string naming the file, the record and the field, and the other records still load.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from migrl.bad_records import OptionError
from migrl.boxes import Space
from migrl.images import ImageSizes, ImageSizing
from migrl.records import LoadReport, Record, RecordError, record_from_dict
from migrl.scoring.judge import tally, target_box
from migrl.scoring.summary import summarize

if TYPE_CHECKING:
    from migrl.boxes import PredictedBox


class Loader(Protocol):
    def __call__(self, data_path: str | Path, image_root: str | Path | None = None, **subset: Any) -> LoadReport: ...


class Scorer(Protocol):
    def __call__(
        self,
        loaded: LoadReport,
        predictions: dict[str, str],
        coords: Space,
        root: Path,
        sizing: ImageSizing | None = None,
        **options: Any,
    ) -> dict[str, Any]: ...


PAPER_ONLY: dict[str, tuple[dict, dict]] = {"paper": ({}, {})}
PAPER_SUBSET = "paper"


@dataclass(frozen=True)
class Benchmark:
    """Everything migrl knows of one benchmark; ``migrl.benchmarks.get(name)`` gives it. Code outside the
    registry asks an entry, never a benchmark's name."""

    name: str
    module: str  # migrl.benchmarks.<module>: its ``load`` and ``score`` (imported when first used)
    official_source: str  # repository, file and function the scorer reproduces
    # --subset: which items and tasks a figure covers; "paper" (the default) is what the paper reports.
    subsets: Mapping[str, tuple[dict, dict]] = field(default_factory=lambda: dict(PAPER_ONLY))
    keeps_denominator: bool = True  # a bad item scores 0 (the official rule); False: left out (migrl records)
    checks_boxes: bool = False  # eval also checks that each record's boxes lie on their image (migrl records)
    id_ood_split: bool = False  # the scores have in-domain / out-of-domain means (else id_avg is the mean)
    score_title: str = "Scores per task (Acc@0.5, %)"
    official_reader: str | None = None  # the module's ReaderFor: the official reading of a box, where it has one
    every_box: bool = False  # answers hold several boxes, each scored (detections): pictures draw them all
    extra_columns: tuple[tuple[str, str], ...] = ()  # figures of ours without a column in the paper's table
    paper_note: str = "The paper's figures as printed (tables named in migrl/report/paper.py)."
    category_map: bool = False  # takes Ref-L4's --category-map (its class-level average)
    aliases: tuple[str, ...] = ()

    @property
    def _module(self) -> Any:
        return importlib.import_module(f"migrl.benchmarks.{self.module}")

    @property
    def load(self) -> Loader:
        """The annotation file -> records (+ ``source``: what the scorer needs beyond them)."""
        return self._module.load

    @property
    def score(self) -> Scorer:
        """What ``load`` gave (the file is read once) + predictions -> the result contract."""
        return self._module.score

    def box_reader(self, coords: Space) -> Callable[[str], "PredictedBox | None"] | None:
        """How the scorer reads a box from an answer when it is not migrl's parser (None: migrl's)."""
        return getattr(self._module, self.official_reader)(coords) if self.official_reader else None

    def subset_kwargs(self, subset: str = PAPER_SUBSET) -> tuple[dict, dict]:
        """(load kwargs, score kwargs) of ``subset``; OptionError for a subset this benchmark does not have."""
        if subset not in self.subsets:
            raise OptionError(f"--subset {subset!r}: {self.name} has {', '.join(sorted(self.subsets))}")
        return self.subsets[subset]

    def load_subset(self, data_path: str | Path, image_root: str | Path | None = None,
                    subset: str = PAPER_SUBSET) -> LoadReport:
        return self.load(data_path, image_root, **self.subset_kwargs(subset)[0])

    def score_loaded(self, loaded: LoadReport, predictions: dict[str, str], coords: Space | str, root: str | Path,
                     sizing: ImageSizing | None = None, subset: str = PAPER_SUBSET,
                     category_map: str | Path | None = None) -> dict[str, Any]:
        options = dict(self.subset_kwargs(subset)[1])
        if category_map is not None:
            self.check_category_map(category_map, read=False)  # the table itself is read by the scorer
            options["category_map"] = category_map
        return self.score(loaded, predictions, Space(coords), Path(root), sizing, **options)

    def score_file(self, data_path: str | Path, predictions: dict[str, str], coords: Space | str = Space.QWEN25,
                   image_root: str | Path | None = None, sizing: ImageSizing | None = None,
                   subset: str = PAPER_SUBSET, category_map: str | Path | None = None) -> dict[str, Any]:
        """Load the file, then score it (``migrl score``; eval scores what it already loaded)."""
        loaded = self.load_subset(data_path, image_root, subset)
        return self.score_loaded(loaded, predictions, coords, root_of(data_path, image_root), sizing, subset,
                                 category_map)

    def check_category_map(self, category_map: str | Path, read: bool = True) -> None:
        """Before any generation: the option is this benchmark's, and the file holds a table."""
        if not self.category_map:
            raise OptionError(f"--category-map is Ref-L4's (its class-level average), not {self.name!r}'s")
        if read:
            from migrl.benchmarks.ref_l4 import read_category_map

            try:
                read_category_map(category_map)
            except (OSError, ValueError, SyntaxError) as exc:
                raise OptionError(f"--category-map {category_map}: {exc}") from None


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
    text: str, record: Record, index: int, dst: Space, coords: Space, sizes: ImageSizes, sizing: ImageSizing | None
) -> tuple[float, float, float, float] | None:
    """The answer's box in ``dst`` on image ``index`` of the record (None: no box, or on another image)."""
    return target_box(text, index, coords, dst, lambda i: sizes(record.images[i]), sizing)


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


def score_records_with(records: Iterable[Record], predictions: dict[str, str], judge: Callable[[Record, str], bool],
                       id_tasks: Iterable[str] | None = None) -> dict[str, Any]:
    """The result contract of Acc-style scoring: each record tallied with ``judge(record, text)``, and each item's
    outcome under ``per_item`` (what the bootstrap intervals resample)."""
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors: list[str] = []
    outcomes: dict[str, Any] = {}
    missing = sum(tally(r, predictions, lambda text, r=r: judge(r, text), hits, totals, errors, outcomes) for r in records)
    out = result(hits, totals, missing, errors, id_tasks)
    out["per_item"] = outcomes
    return out


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
