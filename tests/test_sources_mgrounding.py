"""MGrounding-630k loader on a small file in the released format (Migician README), bad items included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrl.boxes import Space, convert
from migrl.records import load_records
from migrl.sources.convert import SourceError
from migrl.sources.mgrounding import load_mgrounding, task_of


def _item(images, turns, kind, item_id="x"):
    conv = []
    for k, (q, a) in enumerate(turns):
        conv.append({"from": "human", "value": ("<image>\n" * len(images) if k == 0 else "") + q})
        conv.append({"from": "gpt", "value": a})
    return {"id": item_id, "images": images, "conversations": conv, "type": kind}


GG = [f"./MGrounding-630k/Group_Grounding/SA-1B/sa_{i}.jpg" for i in range(4)]
CO = [f"./MGrounding-630k/Common_Object/COCO/{i}.jpg" for i in range(3)]
RL = [f"./MGrounding-630k/Region_Locating/Object365/r{i}.jpg" for i in range(3)]
DF = ["./MGrounding-630k/Difference/img-diff/a.png", "./MGrounding-630k/Difference/img-diff/b.png"]

ITEMS = [
    # 0: the README's example, two turns
    _item(
        GG,
        [
            ("Give the bounding box of the region this sentence refers to: <|object_ref_start|>a statue of a man<|object_ref_end|>.",
             "It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>"),
            ("Recognize the target region that this sentence refers to: <|object_ref_start|>a woman<|object_ref_end|>.",
             "It's in the first image. <|box_start|>(408,656),(578,997)<|box_end|>"),
        ],
        "gg_train",
    ),
    # 1: image named only by the question; type unknown -> task from the image path
    _item(CO, [("These images share one object in common. Recognize and locate this object in the 2th image.",
                "<|box_start|>(100,200),(300,400)<|box_end|>")], "mystery"),
    # 2: region: no image named anywhere -> the source image (index 0)
    _item(RL, [("You are given a source image followed by its several regions. Please locate the 1th region picture in the source image.",
                "<|box_start|>(0,0),(500,500)<|box_end|>")], "region_train"),
    # 3: a REG turn (text answer) and a turn with two boxes: left out, not errors
    _item(GG, [("Describe <|box_start|>(1,2),(3,4)<|box_end|> in the second image.", "a red car"),
               ("Find both cats.", "<|box_start|>(1,1),(5,5)<|box_end|> and <|box_start|>(6,6),(9,9)<|box_end|>")], "_gg_reg"),
    # 4: inverted box
    _item(DF, [("Compare these two images and give me the coordinates of their difference.",
                "<|box_start|>(600,100),(200,300)<|box_end|>")], "diff_train"),
    # 5: two images, one <image> token
    {
        "id": "y",
        "images": DF,
        "conversations": [
            {"from": "human", "value": "<image>\nq"},
            {"from": "gpt", "value": "<|box_start|>(1,1),(5,5)<|box_end|>"},
        ],
        "type": "diff_train",
    },
    # 6: no way to tell the task
    _item(["elsewhere/a.jpg", "elsewhere/b.jpg"], [("q", "<|box_start|>(1,1),(5,5)<|box_end|>")], "weird"),
    # 7: not an object
    "just a string",
    # 8: names an image that is not there
    _item(DF, [("Where?", "In the fifth image. <|box_start|>(1,1),(5,5)<|box_end|>")], "diff_train"),
    # 9: diff with no image named: the second image by the task's default; a box past 1000
    _item(DF, [("Compare these two images carefully and give me the coordinates of their difference.",
                "<|box_start|>(10,20),(30,40)<|box_end|>"),
               ("And this one?", "<|box_start|>(10,20),(1030,40)<|box_end|>")], "diff_train"),
]


@pytest.fixture
def mg_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "MGrounding-630k" / "Group_Grounding" / "gg_train_120k.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ITEMS), encoding="utf-8")
    return path


def _by_id(report):
    return {r.id: r for r in report.records}


def test_readme_example_becomes_one_record_per_turn(mg_file, tmp_path):
    report = load_mgrounding(mg_file, image_root=tmp_path / "data")
    recs = _by_id(report)
    first = recs["mgrounding-gg_train_120k-000000-t0"]
    assert first.task == "group_grounding" and first.domain == "ood" and first.split == "train"
    assert first.boxes[0].image_index == 2  # "third image"
    assert first.boxes[0].bbox == (316.0, 58.0, 764.0, 999.0) and first.boxes[0].space == "qwen2"
    assert first.question.startswith("Give the bounding box") and "<image>" not in first.question
    assert first.images[0] == str(tmp_path / "data" / "MGrounding-630k" / "Group_Grounding" / "SA-1B" / "sa_0.jpg")
    second = recs["mgrounding-gg_train_120k-000000-t1"]
    assert second.boxes[0].image_index == 0 and second.boxes[0].bbox == (408.0, 656.0, 578.0, 997.0)
    assert second.meta["image_index_from"] == "answer" and second.meta["mg_type"] == "gg_train"


def test_qwen2_box_means_thousandths_of_its_image():
    # hand-computed: (316, 58, 764, 999) on a 200 x 100 image = (63.2, 5.8, 152.8, 99.9) pixels
    assert convert((316, 58, 764, 999), Space.QWEN2, Space.PIXELS, (200, 100)) == pytest.approx((63.2, 5.8, 152.8, 99.9))


def test_image_index_from_question_and_task_defaults(mg_file):
    recs = _by_id(load_mgrounding(mg_file))
    common = recs["mgrounding-gg_train_120k-000001-t0"]
    assert common.task == "common_object" and common.domain == "id"
    assert common.boxes[0].image_index == 1 and common.meta["image_index_from"] == "question"
    region = recs["mgrounding-gg_train_120k-000002-t0"]
    assert region.task == "region" and region.boxes[0].image_index == 0 and region.meta["image_index_from"] == "task default"
    diff = recs["mgrounding-gg_train_120k-000009-t0"]
    assert diff.task == "diff" and diff.boxes[0].image_index == 1


def test_bad_items_are_errors_naming_file_item_and_field(mg_file):
    report = load_mgrounding(mg_file)
    assert len(report.records) == 5
    errors = "\n".join(report.errors)
    assert len(report.errors) == 6, errors
    assert f"{mg_file}: item 4" in errors and "conversations[1].value" in errors and "inverted" in errors
    assert "item 5: field 'conversations[0].value': 1 <image> tokens for 2 images" in errors
    assert "item 6: field 'type'" in errors
    assert "item 7: field '<item>'" in errors
    assert "item 8 (id mgrounding-gg_train_120k-000008-t0): field 'boxes[0].image_index'" in errors
    assert "item 9: field 'conversations[3].value'" in errors and "1000" in errors
    assert report.skipped == {"answer has no box": 1, "answer has several boxes": 1}


def test_task_filter_and_records_round_trip(mg_file, tmp_path):
    report = load_mgrounding(mg_file, tasks=["common_object", "region"])
    assert sorted(r.task for r in report.records) == ["common_object", "region"]
    assert report.skipped["task not selected: group_grounding"] == 2
    out = tmp_path / "out.jsonl"
    out.write_text("".join(r.to_json() + "\n" for r in report.records), encoding="utf-8")
    loaded = load_records(out)
    assert loaded.errors == [] and [r.id for r in loaded.records] == [r.id for r in report.records]


def test_task_of_reads_type_then_path():
    assert task_of({"type": "refer_train", "images": []}) == "refer_grounding"
    assert task_of({"type": "??", "images": ["./MGrounding-630k/Object_Tracking/GOT-10k/1.jpg"]}) == "object_tracking"
    assert task_of({"images": ["x.jpg"]}) is None


def test_a_file_that_is_not_a_list_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": []}', encoding="utf-8")
    with pytest.raises(SourceError, match="expected a JSON list"):
        load_mgrounding(path)
    with pytest.raises(SourceError, match="file not found"):
        load_mgrounding(tmp_path / "missing.json")
