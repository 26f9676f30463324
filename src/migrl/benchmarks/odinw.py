"""ODinW as single-box grounding, the paper's way (Sec. 4.1, Table 7).

There is no official single-box protocol: ODinW's own metric is COCO mAP (GLIP ``configs/odinw_35``,
mmdetection ``configs/odinw``, whose dataset lists give the layout read here:
``odinw/<Dataset>[/<variant>]/valid/annotations_without_background.json``, or
``.../export/val_annotations_without_background.json``; COCO format, xywh pixels). The paper keeps
the images with exactly ONE box, asks for that box by its category name, and reports Acc@0.5 per
subset and the plain mean of five. IoU >= 0.5 (migrl's and MIG-Bench's rule).

Subsets: every dataset folder is its own subset, with its own ids (``<subset>:<COCO image id>``), so
two variants of one dataset (``OxfordPets/by-breed`` and ``OxfordPets/by-species`` share their images)
never share an id or a prediction. The paper's five carry its short names: Oxford Pets (OP), Pascal
VOC (PV), Wildfire Smoke (WS), Open Poetry Vision (OPV), Vector (Vec); by default ``avg`` is their
mean and every other subset is scored and shown outside it (``subsets="all"``: the mean of all).

- OP is ``OxfordPets/by-breed``: neither the paper nor GLIP says which variant; the paper presents
  ODinW as "rare object categories" (breeds are, "cat"/"dog" are not) and both configs list by-breed
  first. ``OxfordPets/by-species`` is scored under that name, so the other reading is one number away.
- Vec: ODinW-35 has no dataset named "Vector"; ``VehiclesOpenImages`` is a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.benchmarks.base import (
    ImageSizes,
    build_record,
    model_box,
    number_list,
    protocol,
    read_json,
    result,
    xywh_to_xyxy,
)
from migrl.boxes import Space, iou
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError
from migrl.scoring.judge import is_hit, tally
from migrl.scoring.summary import mean

PAPER_COLUMNS = ("OP", "PV", "WS", "OPV", "Vec")  # Table 7's order
# The paper's five by their ODinW-35 folders; the shorter keys are the same datasets laid out without
# the variant folder (ODinW-35 releases each of these with a single variant).
PAPER_SUBSETS = {
    "OxfordPets/by-breed": "OP",
    "OxfordPets": "OP",
    "PascalVOC": "PV",
    "WildfireSmoke": "WS",
    "openPoetryVision/512x512": "OPV",
    "openPoetryVision": "OPV",
    "VehiclesOpenImages/416x416": "Vec",  # a guess: the paper's "Vector" is not an ODinW-35 name
    "VehiclesOpenImages": "Vec",
}
ANNOTATION_FILE = "annotations_without_background.json"
SUBSET_CHOICES = ("paper", "all")


def dataset_folder(ann_path: Path) -> Path:
    """The folder that is one ODinW dataset: above ``valid/``, or holding ``val_annotations...``."""
    if ann_path.name == ANNOTATION_FILE and ann_path.parent.name == "valid":
        return ann_path.parent.parent
    return ann_path.parent


def _paper_match(folder: Path) -> tuple[str, int] | None:
    """The paper's short name when the folder path ends with one of its datasets' folders, and how
    many folders the match took (the released ``OxfordPets/by-breed`` beats a bare ``OxfordPets``)."""
    parts = folder.resolve().parts
    for key in sorted(PAPER_SUBSETS, key=len, reverse=True):
        tail = tuple(key.split("/"))
        if parts[-len(tail):] == tail:
            return PAPER_SUBSETS[key], len(tail)
    return None


def _folder_key(folder: Path, root: Path | None) -> str:
    """The folder's name as a subset: its path under the data folder (or under an ``odinw`` folder)."""
    folder = folder.resolve()
    if root is not None and folder != root.resolve() and folder.is_relative_to(root.resolve()):
        return folder.relative_to(root.resolve()).as_posix()
    parts = folder.parts
    above = [i for i, p in enumerate(parts) if p.lower() == "odinw"]
    if above and above[-1] < len(parts) - 1:
        return "/".join(parts[above[-1] + 1:])
    return folder.name


def subset_names(files: list[Path], root: Path | None, errors: list[str]) -> dict[Path, str]:
    """One unique subset name per annotation file: the paper's short name, else the folder's key.

    When two folders match one short name (``OxfordPets/valid`` beside ``OxfordPets/by-breed/valid``),
    the more specific match takes it and the other keeps its folder key, reported: no two share ids."""
    names = {ann: _folder_key(dataset_folder(ann), root) for ann in files}
    matches = {ann: m for ann in files if (m := _paper_match(dataset_folder(ann)))}
    taken: dict[str, Path] = {}
    for ann in sorted(matches, key=lambda a: -matches[a][1]):
        short = matches[ann][0]
        if short in taken:
            errors.append(f"{ann}: {taken[short]} is already subset {short!r}; this one is scored as {names[ann]!r}")
            continue
        taken[short] = ann
        names[ann] = short
    return names


def _load_subset(ann_path: Path, subset: str, image_prefix: str, report: LoadReport) -> None:
    try:
        data = read_json(ann_path)
    except (OSError, ValueError) as exc:  # one unreadable subset must not stop the others
        report.errors.append(f"{ann_path}: cannot read: {exc}")
        return
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        report.errors.append(f"{ann_path}: expected COCO 'images', 'annotations' and 'categories' lists")
        return
    names = {c.get("id"): c.get("name") for c in data["categories"] if isinstance(c, dict)}
    per_image: dict[Any, list[dict]] = {}
    for ann in data["annotations"]:
        if isinstance(ann, dict):
            per_image.setdefault(ann.get("image_id"), []).append(ann)
    for i, img in enumerate(data["images"]):
        where = f"{ann_path}: image {i} (id {img.get('id') if isinstance(img, dict) else '?'})"
        try:
            raw = _image_record(img, per_image, names, subset, image_prefix, where)
        except RecordError as exc:
            report.errors.append(str(exc))
            continue
        if raw is not None:
            build_record(raw, where, report)


def _image_record(img: Any, per_image: dict, names: dict, subset: str, prefix: str, where: str) -> dict | None:
    if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
        raise RecordError(where, "file_name", "an image needs 'id' and 'file_name'")
    anns = per_image.get(img["id"], [])
    if len(anns) != 1:
        return None  # the paper keeps images with a single box
    bbox = number_list(anns[0].get("bbox"), 4, where, "annotations[].bbox")
    name = names.get(anns[0].get("category_id"))
    if not isinstance(name, str):
        raise RecordError(where, "annotations[].category_id", f"unknown category {anns[0].get('category_id')!r}")
    return {
        "id": f"{subset}:{img['id']}", "task": subset, "images": [f"{prefix}{img['file_name']}"], "question": name,
        "boxes": [{"image_index": 0, "bbox": xywh_to_xyxy(bbox), "space": "pixels"}], "split": "valid",
        "domain": "ood", "source": "odinw", "meta": {"category": name},
    }


def annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob(f"*{ANNOTATION_FILE}") if "valid" in p.parts or p.name.startswith("val_"))


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """One ``annotations_without_background.json``, or a folder holding the subsets' ``valid`` splits.

    Image paths are relative to ``data_path`` (the folder) or to the annotation file's folder; ids are
    ``<subset>:<COCO image id>``, the subset unique per dataset folder (``subset_names``).
    """
    path = Path(data_path)
    root = path if path.is_dir() else path.parent
    report = LoadReport()
    files = annotation_files(path)
    if not files:
        report.errors.append(f"{path}: no {ANNOTATION_FILE} under a 'valid' folder")
    names = subset_names(files, None if path.is_file() else root, report.errors)
    for ann in files:
        prefix = "" if path.is_file() else f"{ann.parent.relative_to(root).as_posix()}/"
        _load_subset(ann, names[ann], prefix, report)
    return report


def hit(text: str, record: Record, coords: Space, sizes: ImageSizes, sizing: ImageSizing) -> bool:
    pred = model_box(text, record, 0, Space.PIXELS, coords, sizes, sizing)
    return pred is not None and is_hit(iou(pred, record.boxes[0].bbox))


def _averaged(out: dict[str, Any], subsets: str, unreadable: dict[str, int]) -> None:
    """``avg`` over the paper's five (default) or over every subset, labelled in ``protocol``; the mean
    is of the unrounded accuracies (only what is shown is rounded)."""
    tasks, counts = out["tasks"], out["counts"]
    if subsets == "paper":
        kept = [t for t in PAPER_COLUMNS if t in tasks]
        absent = [t for t in PAPER_COLUMNS if t not in tasks]
        detail = ("Acc@0.5 (IoU >= 0.5) on the single-box valid images; avg = mean of the paper's five (Table 7): "
                  "OP = OxfordPets/by-breed, PV, WS, OPV, Vec = VehiclesOpenImages (a guess for 'Vector')"
                  + (f"; not found: {', '.join(absent)}" if absent else "")
                  + ("; other subsets shown, not averaged" if len(kept) < len(tasks) else ""))
        if absent:
            out["missing_subsets"] = absent
    else:
        kept = list(tasks)
        detail = (f"Acc@0.5 (IoU >= 0.5) on the single-box valid images; avg = mean of all {len(kept)} "
                  "subsets found, not Table 7's five")
    out["avg"] = out["id_avg"] = mean(100 * counts[t][0] / counts[t][1] for t in kept)
    out["averaged"] = kept
    out["protocol"] = protocol("paper subset", detail, sum(counts[t][1] for t in kept),
                               sum(unreadable.get(t, 0) for t in kept))


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
    subsets: str = "paper",
) -> dict[str, Any]:
    """Acc@0.5 per subset (every subset found); ``avg`` the mean of the paper's five, or of all with
    ``subsets="all"``; a missing prediction counts as wrong."""
    if subsets not in SUBSET_CHOICES:
        raise ValueError(f"subsets must be one of {SUBSET_CHOICES}, not {subsets!r}")
    sizes = ImageSizes(root)
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors = list(loaded.errors)
    missing = 0
    unreadable: dict[str, int] = {}  # images whose size could not be read: scored 0, kept
    for record in loaded.records:
        judge = lambda text, r=record: hit(text, r, coords, sizes, sizing)  # noqa: E731
        before = len(errors)
        missing += tally(record, predictions, judge, hits, totals, errors)
        if len(errors) > before:
            unreadable[record.task] = unreadable.get(record.task, 0) + 1
    out = result(hits, totals, missing, errors)
    _averaged(out, subsets, unreadable)
    return out
