"""ODinW / V3Det loader: COCO detection JSON -> one record per category with exactly one instance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrl.sources.convert import SourceError
from migrl.sources.detection import load_detection

COCO = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "sub/c.jpg", "width": 32, "height": 32},
    ],
    "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "bird"}, {"id": 4, "name": ""}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 0},  # two dogs: no item
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [2.5, 4, 10, 6.5], "iscrowd": 0},  # the one cat
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},  # crowd: no item
        {"id": 5, "image_id": 3, "category_id": 3, "bbox": [10, 10, 20, 5], "iscrowd": 0},
        {"id": 6, "image_id": 3, "category_id": 99, "bbox": [1, 1, 2, 2], "iscrowd": 0},  # unknown category
        {"id": 7, "image_id": 2, "category_id": 3, "bbox": [5, 5, -3, 4], "iscrowd": 0},  # negative width
        {"id": 8, "image_id": 2, "category_id": 4, "bbox": [5, 5, 3, 4], "iscrowd": 0},  # unnamed category
        {"id": 9, "image_id": 42, "category_id": 3, "bbox": [5, 5, 3, 4], "iscrowd": 0},  # unknown image
    ],
}


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    path = tmp_path / "train" / "annotations_without_background.json"
    path.parent.mkdir()
    path.write_text(json.dumps(COCO), encoding="utf-8")
    return path


def test_single_instance_categories_become_items(coco_file, tmp_path):
    report = load_detection(coco_file, tmp_path / "train", source="odinw-pets")
    recs = {r.id: r for r in report.records}
    assert sorted(recs) == ["odinw-pets-1-c2", "odinw-pets-3-c3"]
    cat = recs["odinw-pets-1-c2"]
    assert cat.task == "detection" and cat.source == "odinw-pets" and cat.question == "Locate the cat in the image."
    assert cat.boxes[0].bbox == (2.5, 4.0, 12.5, 10.5) and cat.boxes[0].space == "pixels"  # xywh -> xyxy
    assert cat.images == (str(tmp_path / "train" / "a.jpg"),)
    assert recs["odinw-pets-3-c3"].boxes[0].bbox == (10.0, 10.0, 30.0, 15.0)
    assert report.skipped == {"category has several instances in the image": 2}


def test_bad_annotations_are_errors_naming_them(coco_file, tmp_path):
    report = load_detection(coco_file, tmp_path, source="v3det")
    errors = "\n".join(report.errors)
    assert len(report.errors) == 4, errors
    assert "annotation 5 (id 6): field 'category_id': 99" in errors
    assert "annotation 8 (id 9): field 'image_id': 42" in errors
    assert "annotation id 7 (image 2, category 3): field 'bbox'" in errors and "no area" in errors
    assert "annotation id 8 (image 2, category 4): field 'categories.name'" in errors


def test_not_coco_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SourceError, match="COCO"):
        load_detection(path, tmp_path)
