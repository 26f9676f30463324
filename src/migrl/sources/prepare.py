"""Sample the cold-start mix and the RL pool from the training sources, by a YAML recipe.

Recipe (see ``recipes/paper/prepare.yaml``)::

    seed: 0
    root: /data/grounding      # relative paths below resolve here (default: the current directory)
    check_images: true         # a record whose image is missing or unreadable is an error; the next is drawn
    sources:                   # name -> kind and that loader's arguments
      mg_common: {kind: mgrounding, path: MGrounding-630k/Common_Object/common_train_70k.json, image_root: .}
      refcoco:   {kind: refcoco, refs: refcoco/refs(unc).json, instances: refcoco/instances.json,
                  image_root: coco/train2014, dataset: refcoco}
      odinw_pets: {kind: detection, path: odinw/pets/train/annotations_without_background.json,
                   image_root: odinw/pets/train, source: odinw-pets}
    coldstart: {mg_common: 22000, refcoco: 334}   # a count, or "all"
    rl_pool:   {mg_common: all}

Each source's records are shuffled once with a seed derived from (seed, source name); the cold start
takes from the front of that order and the RL pool continues where it stopped, so the two pools are
disjoint by construction and a rerun with the same seed writes the same files. Writes
``coldstart.jsonl``, ``rl_pool.jsonl``, ``bad_records.jsonl`` and ``prepare_stats.json`` into
``out_dir``, each atomically, one after the other once everything is drawn (the stats last), so a
``kill -9`` leaves each file whole and a rerun writes the same bytes.
In the stats, a pool's ``available`` for a source is what an earlier pool had not yet drawn, and each
source lists its errors (loader and image check) with file, record and field.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from migrl.bad_records import BadRecords
from migrl.images import ImageError, image_size
from migrl.jsonl import write_json_atomic, write_jsonl_atomic
from migrl.records import BadRecord, Record, RecordError, check_boxes_on_images
from migrl.sources.convert import SourceReport
from migrl.sources.detection import load_detection
from migrl.sources.mgrounding import load_mgrounding
from migrl.sources.refcoco import load_refcoco

POOLS = ("coldstart", "rl_pool")
MAX_LISTED_ERRORS = 200  # per source in the stats file; the total is always given


class RecipeError(ValueError):
    """The recipe itself is wrong (unknown source, bad count, unknown key)."""


def _path(root: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}: expected a path, got {value!r}")
    return root / value


def _names(spec: dict, key: str, where: str, default: list[str] | None) -> list[str] | None:
    value = spec.get(key, default)
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise RecipeError(f"{where}.{key}: expected a list of names, got {value!r}")
    return value


def _load_mgrounding(spec: dict, root: Path, where: str) -> SourceReport:
    image_root = _path(root, spec["image_root"], f"{where}.image_root") if "image_root" in spec else None
    return load_mgrounding(_path(root, spec.get("path"), f"{where}.path"), image_root, _names(spec, "tasks", where, None))


def _load_refcoco(spec: dict, root: Path, where: str) -> SourceReport:
    return load_refcoco(
        _path(root, spec.get("refs"), f"{where}.refs"),
        _path(root, spec.get("instances"), f"{where}.instances"),
        _path(root, spec.get("image_root"), f"{where}.image_root"),
        dataset=spec.get("dataset", "refcoco"),
        splits=_names(spec, "splits", where, ["train"]) or [],
        per=spec.get("per", "ref"),
        allow_pickle=spec.get("allow_pickle", False) is True,  # only a real YAML true unpickles
    )


def _load_detection(spec: dict, root: Path, where: str) -> SourceReport:
    return load_detection(
        _path(root, spec.get("path"), f"{where}.path"),
        _path(root, spec.get("image_root"), f"{where}.image_root"),
        source=spec.get("source", where.split(".")[-1]),
    )


# kind -> (loader, the keys a source of that kind may have besides "kind")
LOADERS: dict[str, tuple[Callable[[dict, Path, str], SourceReport], set[str]]] = {
    "mgrounding": (_load_mgrounding, {"path", "image_root", "tasks"}),
    "refcoco": (_load_refcoco, {"refs", "instances", "image_root", "dataset", "splits", "per", "allow_pickle"}),
    "detection": (_load_detection, {"path", "image_root", "source"}),
}


def _loader(name: str, spec: Any) -> Callable[[dict, Path, str], SourceReport]:
    where = f"sources.{name}"
    if not isinstance(spec, dict) or spec.get("kind") not in LOADERS:
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        raise RecipeError(f"{where}: kind {kind!r} is not one of {sorted(LOADERS)}")
    loader, allowed = LOADERS[spec["kind"]]
    unknown = set(spec) - allowed - {"kind"}
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)} for kind {spec['kind']!r}; allowed: {sorted(allowed)}")
    return loader


def load_source(name: str, spec: Any, root: Path) -> SourceReport:
    return _loader(name, spec)(spec, root, f"sources.{name}")


def _counts(recipe: dict, pool: str, sources: dict) -> dict[str, int | None]:
    """Requested count per source; None means all that is left."""
    raw = recipe.get(pool) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{pool}: expected a mapping of source name -> count")
    counts: dict[str, int | None] = {}
    for name, n in raw.items():
        if name not in sources:
            raise RecipeError(f"{pool}.{name}: no such source (known: {sorted(sources)})")
        if n == "all":
            counts[name] = None
        elif isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            counts[name] = n
        else:
            raise RecipeError(f"{pool}.{name}: expected a count >= 0 or 'all', got {n!r}")
    return counts


@dataclass
class _Draw:
    """One source's shuffled records and how far the pools have read into them."""

    name: str
    records: list[Record]
    order: list[int]
    cursor: int = 0
    errors: list[tuple[str, RecordError]] = field(default_factory=list)  # (record id, error)


class _ImageCheck:
    """Opens each image header once (images repeat across records), then checks the boxes lie on them."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int] | str] = {}  # path -> size, or why it cannot be used

    def error(self, record: Record, where: str) -> RecordError | None:
        sizes = []
        for k, path in enumerate(record.images):
            if path not in self.seen:
                try:
                    self.seen[path] = image_size(path)
                except ImageError as exc:
                    self.seen[path] = str(exc)
            if isinstance(self.seen[path], str):
                return RecordError(where, f"images[{k}]", self.seen[path])
            sizes.append(self.seen[path])
        try:
            check_boxes_on_images(record, sizes, where)
        except RecordError as exc:
            return exc
        return None


def _take(draw: _Draw, want: int | None, taken: set[str], check: _ImageCheck | None, strict: bool = False) -> list[Record]:
    chosen: list[Record] = []
    while draw.cursor < len(draw.order) and (want is None or len(chosen) < want):
        record = draw.records[draw.order[draw.cursor]]
        draw.cursor += 1
        where = f"source {draw.name}: record {record.id}"
        if record.id in taken:  # the same file listed twice under two names
            problem = RecordError(where, "id", "already drawn from another source")
        else:
            problem = check.error(record, where) if check else None
        if problem:
            if strict:
                raise problem
            draw.errors.append((record.id, problem))
            continue
        taken.add(record.id)
        chosen.append(record)
    return chosen


def read_recipe(recipe_path: str | Path) -> tuple[dict, dict[str, dict[str, int | None]]]:
    """The recipe and its per-pool counts, checked whole before any source is read."""
    with open(recipe_path, encoding="utf-8") as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict) or not isinstance(recipe.get("sources"), dict) or not recipe["sources"]:
        raise RecipeError(f"{recipe_path}: needs a 'sources' mapping")
    unknown = set(recipe) - {"seed", "root", "check_images", "sources", *POOLS}
    if unknown:
        raise RecipeError(f"{recipe_path}: unknown key(s) {sorted(unknown)}")
    for name, spec in recipe["sources"].items():
        _loader(name, spec)
    return recipe, {pool: _counts(recipe, pool, recipe["sources"]) for pool in POOLS}


def _source_stats(spec: dict, report: SourceReport, draw: _Draw) -> dict[str, Any]:
    errors = report.errors + [str(e) for _, e in draw.errors]
    return {
        "kind": spec["kind"],
        "records": len(report.records),
        "skipped": report.skipped,
        "errors_total": len(errors),
        "errors": errors[:MAX_LISTED_ERRORS],
    }


def prepare(recipe_path: str | Path, out_dir: str | Path, seed: int | None = None, strict: bool = False) -> dict[str, Any]:
    """Write ``coldstart.jsonl``, ``rl_pool.jsonl``, ``bad_records.jsonl`` and ``prepare_stats.json``;
    return the stats.

    ``seed`` overrides the recipe's. Bad items are reported per source and never stop the rest (with
    ``strict``, the first one raises); a wrong recipe or a missing/unreadable source file raises
    before anything is written.
    """
    recipe, counts = read_recipe(recipe_path)
    seed = int(recipe.get("seed", 0) if seed is None else seed)
    root = Path(recipe.get("root") or ".")
    sources = recipe["sources"]
    used = [n for n in sources if any(n in counts[p] for p in POOLS)]
    reports = {name: load_source(name, sources[name], root) for name in used}
    if strict:
        first = next((b for name in used for b in reports[name].bad), None)
        if first is not None:
            raise RecordError(first.where, first.field, first.reason)
    draws = {}
    for name, report in reports.items():
        order = list(range(len(report.records)))
        random.Random(f"{seed}/{name}").shuffle(order)
        draws[name] = _Draw(name, report.records, order)
    check = _ImageCheck() if recipe.get("check_images", True) else None
    taken: set[str] = set()
    stats: dict[str, Any] = {"recipe": str(recipe_path), "seed": seed, "check_images": check is not None, "pools": {}}
    out = Path(out_dir)
    pools: dict[str, list[dict]] = {}
    for pool in POOLS:
        rows, per_source = [], {}
        for name, want in counts[pool].items():
            available = len(draws[name].order) - draws[name].cursor
            chosen = _take(draws[name], want, taken, check, strict)
            per_source[name] = {"requested": "all" if want is None else want, "available": available, "written": len(chosen)}
            rows.extend(r.to_dict() for r in chosen)
        random.Random(f"{seed}/{pool}").shuffle(rows)  # mix sources; trainers that do not shuffle see a mix too
        pools[pool] = rows
        short = sorted(n for n, s in per_source.items() if s["requested"] != "all" and s["written"] < s["requested"])
        stats["pools"][pool] = {"written": len(rows), "sources": per_source, "short": short}
    stats["sources"] = {name: _source_stats(sources[name], reports[name], draws[name]) for name in used}
    bad = BadRecords()
    for name in used:
        bad.items += reports[name].bad + [BadRecord.from_error(e, record=rid) for rid, e in draws[name].errors]
    stats["bad_records"] = bad.summary()
    # Everything is decided; the writes come last and close together, each file whole.
    for pool, rows in pools.items():
        write_jsonl_atomic(out / f"{pool}.jsonl", rows)
    bad.write(out)
    write_json_atomic(out / "prepare_stats.json", stats)
    return stats
