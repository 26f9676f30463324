"""ODinW and V3Det: COCO-format detection JSON -> single-box grounding records.

Both releases are plain COCO (``images`` with id/file_name/width/height, ``annotations`` with
image_id/category_id/bbox ``[x, y, w, h]`` pixels/iscrowd, ``categories`` with id/name): ODinW's
``<dataset>/train/annotations_without_background.json`` per subset, V3Det's
``v3det_2023_v1_train.json``. One module serves both; the recipe names each subset as its own source.

The rule: an (image, category) pair becomes an item only when the category has exactly one instance
in that image, because a grounding question needs exactly one right answer ("locate the dog" with
two dogs has two). A crowd annotation counts as several instances, so it disqualifies its category.
"""

from __future__ import annotations

from pathlib import Path

from migrl.boxes import Space
from migrl.records import RecordError
from migrl.sources.convert import SourceReport, build_record, coco_box_to_xyxy, coco_tables, image_path

QUESTION = "Locate the {name} in the image."


def _group(anns: list, images: dict, categories: dict, path: str | Path, report: SourceReport) -> dict[tuple, list[dict]]:
    """Annotations by (image id, category id); broken ones become errors and are not counted."""
    groups: dict[tuple, list[dict]] = {}
    for i, ann in enumerate(anns):
        where = f"{path}: annotation {i}" + (f" (id {ann.get('id')})" if isinstance(ann, dict) else "")
        try:
            if not isinstance(ann, dict):
                raise RecordError(where, "<annotation>", f"expected an object, got {type(ann).__name__}")
            for key, table in (("image_id", images), ("category_id", categories)):
                if ann.get(key) not in table:
                    raise RecordError(where, key, f"{ann.get(key)!r} is not in the file's {key[:-3]}s")
        except RecordError as exc:
            report.reject(exc, path)
            continue
        groups.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    return groups


def _category_name(category: dict, where: str) -> str:
    name = category.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError(where, "categories.name", f"category {category.get('id')!r} has no name")
    return name.strip()


def load_detection(path: str | Path, image_root: str | Path, source: str = "odinw") -> SourceReport:
    """Records of one COCO detection file; ``source`` names it and prefixes ids (ODinW subsets share image ids)."""
    images, categories, anns = coco_tables(path)
    report = SourceReport()
    for (image_id, category_id), group in _group(anns, images, categories, path, report).items():
        if len(group) != 1 or group[0].get("iscrowd"):
            report.skip("category has several instances in the image")
            continue
        ann, image = group[0], images[image_id]
        where = f"{path}: annotation id {ann.get('id')} (image {image_id}, category {category_id})"
        try:
            box = coco_box_to_xyxy(ann.get("bbox"), image.get("width"), image.get("height"), where)
            name = _category_name(categories[category_id], where)
            record = build_record(
                {
                    "id": f"{source}-{image_id}-c{category_id}",
                    "task": "detection",
                    "images": [image_path(image_root, image.get("file_name"), where, "images.file_name")],
                    "question": QUESTION.format(name=name),
                    "boxes": [{"image_index": 0, "bbox": list(box), "space": Space.PIXELS.value}],
                    "split": "train",
                    "source": source,
                    "meta": {"image_id": image_id, "category_id": category_id, "category": name, "ann_id": ann.get("id")},
                },
                where,
            )
        except RecordError as exc:
            report.reject(exc, path)
            continue
        report.records.append(record)
    return report
