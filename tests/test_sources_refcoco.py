"""RefCOCO loader on a small refs export + instances.json in the refer release's structure."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from migrl.sources.convert import SourceError
from migrl.sources.refcoco import load_refcoco

INSTANCES = {
    "images": [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 40, "height": 30},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 50, "height": 50},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [5, 6, 10, 8], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [30, 20, 20, 20], "iscrowd": 0},  # overhangs 40 x 30
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 1, 0, 5], "iscrowd": 0},  # no width
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "person"}],
}


def _ref(ref_id, ann_id, image_id, sents, split="train"):
    return {
        "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": split,
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
        "sentences": [{"sent_id": 100 * ref_id + k, "sent": s, "tokens": s.split(), "raw": s} for k, s in enumerate(sents)],
        "sent_ids": [100 * ref_id + k for k in range(len(sents))],
    }


REFS = [
    _ref(0, 10, 1, ["the man in red", "left guy"]),
    _ref(1, 13, 2, ["a val ref"], split="val"),
    _ref(2, 999, 1, ["refers to a missing annotation"]),
    _ref(3, 11, 1, ["person on the right edge"]),
    _ref(4, 13, 2, []),
    _ref(5, 12, 2, ["no width"]),
    _ref(6, 13, 1, ["annotation is on image 2"]),
]


@pytest.fixture
def refer_dir(tmp_path: Path) -> Path:
    d = tmp_path / "refcoco"
    d.mkdir()
    (d / "refs(unc).json").write_text(json.dumps(REFS), encoding="utf-8")
    (d / "instances.json").write_text(json.dumps(INSTANCES), encoding="utf-8")
    return d


def test_refs_become_pixel_xyxy_records(refer_dir, tmp_path):
    report = load_refcoco(refer_dir / "refs(unc).json", refer_dir / "instances.json", tmp_path / "train2014")
    recs = {r.id: r for r in report.records}
    assert sorted(recs) == ["refcoco-0", "refcoco-3"]
    r0 = recs["refcoco-0"]
    assert r0.task == "rec" and r0.source == "refcoco" and r0.split == "train"
    assert r0.boxes[0].bbox == (5.0, 6.0, 15.0, 14.0) and r0.boxes[0].space == "pixels"  # [5,6,10,8] xywh
    assert r0.boxes[0].image_index == 0 and r0.question.endswith("the man in red")
    assert r0.meta["other_sentences"] == ["left guy"]
    assert r0.images == (str(tmp_path / "train2014" / "COCO_train2014_000000000001.jpg"),)
    assert recs["refcoco-3"].boxes[0].bbox == (30.0, 20.0, 40.0, 30.0)  # clipped to the 40 x 30 image
    assert report.skipped == {"split not selected: val": 1}


def test_bad_refs_are_errors_naming_ref_and_field(refer_dir, tmp_path):
    report = load_refcoco(refer_dir / "refs(unc).json", refer_dir / "instances.json", tmp_path)
    errors = "\n".join(report.errors)
    assert len(report.errors) == 4, errors
    assert "ref 2 (ref_id 2): field 'ann_id': 999 is not an annotation" in errors
    assert "ref 4 (ref_id 4): field 'sentences'" in errors
    assert "ref 5 (ref_id 5): field 'instances annotation 12.bbox'" in errors and "no area" in errors
    assert "ref 6 (ref_id 6): field 'image_id'" in errors


def test_one_record_per_sentence_and_dataset_prefix(refer_dir, tmp_path):
    refs, instances = refer_dir / "refs(unc).json", refer_dir / "instances.json"
    report = load_refcoco(refs, instances, tmp_path, dataset="refcoco+", per="sentence")
    ids = sorted(r.id for r in report.records)
    assert ids == ["refcoco+-0-s0", "refcoco+-0-s1", "refcoco+-3-s0"]
    assert {r.source for r in report.records} == {"refcoco+"}


def test_val_split_on_request(refer_dir, tmp_path):
    report = load_refcoco(refer_dir / "refs(unc).json", refer_dir / "instances.json", tmp_path, splits=["val"])
    assert [r.id for r in report.records] == ["refcoco-1"] and report.errors == []


def test_pickle_only_with_explicit_consent(refer_dir, tmp_path):
    pick = refer_dir / "refs(unc).p"
    pick.write_bytes(pickle.dumps(REFS))
    with pytest.raises(SourceError, match="allow_pickle"):
        load_refcoco(pick, refer_dir / "instances.json", tmp_path)
    report = load_refcoco(pick, refer_dir / "instances.json", tmp_path, allow_pickle=True)
    assert sorted(r.id for r in report.records) == ["refcoco-0", "refcoco-3"]


def test_broken_instances_file_is_refused(refer_dir, tmp_path):
    (refer_dir / "instances.json").write_text('{"images": []}', encoding="utf-8")
    with pytest.raises(SourceError, match="'annotations' missing"):
        load_refcoco(refer_dir / "refs(unc).json", refer_dir / "instances.json", tmp_path)
