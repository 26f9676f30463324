"""ODinW as single-box grounding, the paper's way (Sec. 4.1, Table 7).

There is no official single-box protocol: ODinW's own metric is COCO mAP (GLIP ``configs/odinw_35``,
mmdetection ``configs/odinw``, whose dataset lists give the files read here:
``<Dataset>/.../valid/annotations_without_background.json``, COCO format, xywh pixels). The paper keeps
the images with exactly ONE box, asks for that box by its category name, and reports Acc@0.5 per
subset and the plain mean of the five. IoU >= 0.5 (migrl's and MIG-Bench's rule).

Subsets: Oxford Pets (OP), Pascal VOC (PV), Wildfire Smoke (WS), Open Poetry Vision (OPV), Vector
(Vec). ODinW-35 has no dataset named "Vector"; mapping Vec to ``VehiclesOpenImages`` is a guess,
and any other folder is scored under its own name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.benchmarks.base import (
    ImageSizes,
    build_record,
    count_item,
    model_box,
    number_list,
    read_json,
    result,
    xywh_to_xyxy,
)
from migrl.boxes import Space, iou
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record, RecordError

PAPER_SUBSETS = {
    "OxfordPets": "OP",
    "PascalVOC": "PV",
    "WildfireSmoke": "WS",
    "openPoetryVision": "OPV",
    "VehiclesOpenImages": "Vec",  # a guess: the paper's "Vector" is not an ODinW-35 name
}
ANNOTATION_FILE = "annotations_without_background.json"


def subset_name(ann_path: Path, root: Path | None) -> str:
    """The paper's short name when a known dataset folder is on the path, else the dataset folder."""
    for part in ann_path.parts:
        if part in PAPER_SUBSETS:
            return PAPER_SUBSETS[part]
    if root is not None and ann_path.parent != root:
        return ann_path.relative_to(root).parts[0]
    return ann_path.parent.parent.name if ann_path.parent.name == "valid" else ann_path.parent.name


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
    ``<subset>:<COCO image id>``.
    """
    path = Path(data_path)
    root = path if path.is_dir() else path.parent
    report = LoadReport()
    files = annotation_files(path)
    if not files:
        report.errors.append(f"{path}: no {ANNOTATION_FILE} under a 'valid' folder")
    for ann in files:
        prefix = "" if path.is_file() else f"{ann.parent.relative_to(root).as_posix()}/"
        _load_subset(ann, subset_name(ann, None if path.is_file() else root), prefix, report)
    return report


def hit(text: str, record: Record, coords: Space, sizes: ImageSizes, sizing: ImageSizing) -> bool:
    pred = model_box(text, record, 0, Space.PIXELS, coords, sizes, sizing)
    return pred is not None and iou(pred, record.boxes[0].bbox) >= 0.5


def score(
    data_path: str | Path,
    predictions: dict[str, str],
    coords: Space | str = Space.QWEN25,
    image_root: str | Path | None = None,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 per subset, mean over subsets; a missing prediction counts as wrong."""
    coords = Space(coords)
    loaded = load(data_path, image_root)
    path = Path(data_path)
    sizes = ImageSizes(image_root or (path if path.is_dir() else path.parent))
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    errors = list(loaded.errors)
    missing = 0
    for record in loaded.records:
        judge = lambda text, r=record: hit(text, r, coords, sizes, sizing)  # noqa: E731
        missing += count_item(record, predictions, judge, hits, totals, errors)
    return result(hits, totals, missing, errors)
