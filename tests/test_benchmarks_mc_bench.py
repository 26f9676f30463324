import json

import pytest
from PIL import Image

from migrl.benchmarks import BENCHMARKS
from migrl.benchmarks.mc_bench import _max_matching, load, score
from migrl.boxes import Space, convert
from migrl.images import ImageSizing

import numpy as np


def _img(tmp_path, name, size=(100, 100)):
    Image.new("RGB", size).save(tmp_path / name)
    return name


def _write(tmp_path, pairs, anns, styles=None, cats=2):
    """v0.2 format: pairs = [(pair id, text)], images 2*pid and 2*pid+1."""
    images, descriptions = [], []
    for pid, text in pairs:
        ids = [2 * pid, 2 * pid + 1]
        for k, i in enumerate(ids):
            images.append({"id": i, "text_id": pid, "inter_img_id": k, "file_name": _img(tmp_path, f"{i}.png"), "height": 100, "width": 100})
        style = (styles or {}).get(pid, "Referring")
        descriptions.append({"id": pid, "images_id": ids, "text": text, "positive_sample": True, "text_style": style})
    data = {"info": {}, "descriptions": descriptions, "images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"group {c}"} for c in range(1, cats + 1)]}
    path = tmp_path / "mc-bench_v0.2_val.json"
    path.write_text(json.dumps(data))
    return path


def _ann(aid, image_id, bbox, cat=1):
    return {"id": aid, "image_id": image_id, "category_id": cat, "area": bbox[2] * bbox[3], "bbox": bbox, "iscrowd": 0}


def test_annotation_id_zero_bug(tmp_path):
    path = _write(tmp_path, [(0, "the cat")], [_ann(0, 0, [10, 10, 40, 40])])
    res = score(path, {"0": '{"image": 1, "bbox_2d": [10, 10, 50, 50]}'}, Space.PIXELS, tmp_path)
    assert res["ap50"] == 0.0  # official: GT id 0 is never a true positive
    assert res["ap50_bugs_fixed"] == 100.0
    assert res["accuracy"] == 100.0 and res["tasks"] == {"Referring": 100.0}


def test_regroup_bug_keeps_only_last_mapping(tmp_path):
    # Two pairs; image 0 / 2 hold group 1 (A) and group 2 (B); the model finds only B, as group 1.
    anns = [_ann(1, 0, [0, 0, 20, 20], 1), _ann(2, 0, [50, 50, 40, 40], 2),
            _ann(3, 2, [0, 0, 20, 20], 1), _ann(4, 2, [50, 50, 40, 40], 2)]
    path = _write(tmp_path, [(0, "a"), (1, "b")], anns)
    pred = '{"image": 1, "bbox_2d": [50, 50, 90, 90]}'
    res = score(path, {"0": pred, "1": pred}, Space.PIXELS, tmp_path, subset="all")
    # official: one pair's box goes to group 2 (recall 0.5 at precision 1 -> 51/101), the other stays a
    # group-1 false positive; weights 2/4 each.
    assert res["ap50"] == pytest.approx(round(100 * 0.5 * 51 / 101, 2))
    assert res["ap50_bugs_fixed"] == 50.0  # group 2 perfect, group 1 found nothing


def test_paper_subset_styles_and_missing(tmp_path):
    anns = [_ann(1, 0, [10, 10, 30, 30]), _ann(2, 3, [20, 20, 30, 30]),
            _ann(3, 4, [0, 0, 10, 10]), _ann(4, 4, [50, 50, 10, 10])]  # pair 2 has two boxes in one image
    path = _write(tmp_path, [(0, "a"), (1, "b"), (2, "c"), (3, "none")], anns, {0: "Referring", 1: "Comparison"})
    report = load(path)
    assert [r.id for r in report.records] == ["0", "1"] and not report.errors
    assert report.records[1].boxes[0].image_index == 1 and report.records[1].boxes[0].bbox == (20, 20, 50, 50)
    # pair 0 right; pair 1: box on the wrong image -> both images disagree -> wrong
    res = score(path, {"0": '{"image": 1, "bbox_2d": [10, 10, 40, 40]}', "1": '{"image": 1, "bbox_2d": [20, 20, 50, 50]}'},
                Space.PIXELS, tmp_path)
    assert res["tasks"] == {"Comparison": 0.0, "Referring": 100.0} and res["avg"] == 50.0
    assert res["pairs"] == 2 and res["missing_predictions"] == 0


def test_qwen25_boxes_converted_per_image_and_unplaced(tmp_path):
    path = _write(tmp_path, [(0, "a")], [_ann(1, 1, [100, 50, 300, 200])])
    Image.new("RGB", (1000, 500)).save(tmp_path / "1.png")  # the second image is large
    sizing = ImageSizing()
    box = convert([100, 50, 400, 250], Space.PIXELS, Space.QWEN25, (1000, 500), sizing)
    text = f'[{{"image": 2, "bbox_2d": {[round(v, 3) for v in box]}}}, {{"bbox_2d": [1, 2, 3, 4]}}]'
    res = score(path, {"0": text}, Space.QWEN25, tmp_path, sizing)
    assert res["ap50_bugs_fixed"] == 100.0 and res["unplaced_boxes"] == 1
    # read as Qwen2 [0,1000) the same numbers land elsewhere
    assert score(path, {"0": text}, Space.QWEN2, tmp_path, sizing)["ap50_bugs_fixed"] == 0.0


def test_malformed_annotation_and_model_text(tmp_path):
    anns = [_ann(1, 0, [10, 10, 30, 30]), {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2], "iscrowd": 0}]
    path = _write(tmp_path, [(0, "a"), (1, "b")], anns)
    report = BENCHMARKS["mc-bench"].load(path)
    assert any("annotation 1" in e and "'bbox'" in e and "mc-bench_v0.2_val.json" in e for e in report.errors)
    assert [r.id for r in report.records] == ["0"]
    res = score(path, {"0": "(((((" * 1000 + "\x00 [nan, 1, 2]"}, Space.QWEN2, tmp_path)
    assert res["ap50"] == 0.0 and res["errors"]


def test_max_matching_is_optimal():
    m = np.array([[0.9, 0.8], [0.85, 0.1], [0.0, 0.2]])
    assert sorted(_max_matching(m)) == pytest.approx([0.8, 0.85])  # 1.65 beats greedy 0.9 + 0.2


def test_malformed_entries_are_named_and_the_rest_scores(tmp_path):
    path = _write(tmp_path, [(0, "a"), (1, "b"), (2, "c")], [_ann(1, 0, [10, 10, 30, 30]), _ann(2, 2, [0, 0, 5, 5]),
                                                            _ann(3, 4, [0, 0, 5, 5])])
    data = json.loads(path.read_text())
    del data["descriptions"][1]["images_id"]  # pair 1 goes, with its images and annotation
    del data["images"][4]["file_name"]  # pair 2 loses an image: the pair goes, with its annotation
    data["annotations"] += ["junk", {**_ann(4, 0, [1, 1, 2, 2]), "category_id": None}, _ann(5, 77, [1, 1, 2, 2])]
    data["categories"].append({"id": 3})
    path.write_text(json.dumps(data))
    report = load(path, subset="all")
    assert [r.id for r in report.records] == ["0"]
    expected = [
        "description 1 (id 1): field 'images_id'", "image 4 (id 4): field 'file_name'", "description 2 (id 2): field 'images_id'",
        "annotation 3: field '<record>'", "annotation 4 (id 4): field 'category_id'", "annotation 5 (id 5): field 'image_id'",
        "category 2 (id 3): field 'name'",
    ]
    for part in expected:
        assert any(str(path) in e and part in e for e in report.errors), part
    assert len(report.errors) == len(expected)
    res = score(path, {"0": '{"image": 1, "bbox_2d": [10, 10, 40, 40]}'}, Space.PIXELS, tmp_path, subset="all")
    assert res["ap50_bugs_fixed"] == 100.0 and res["pairs"] == 1 and len(res["errors"]) == len(expected)


def test_equals_official_script_on_a_regrouped_case(tmp_path):
    # Pair 0 holds two groups, so the official re-mapping runs; the model's boxes all come as group 1.
    # 0.36661166116611654 (AP50) and 0.6666666666666666 (accuracy) are what XuYunqiu/MC-Bench
    # eval_mc_bench.py mcbench_eval printed for these very detections, run outside this repository.
    anns = [_ann(0, 0, [10, 10, 30, 30], 1), _ann(1, 1, [50, 50, 30, 30], 2), _ann(2, 1, [0, 0, 20, 20], 1),
            _ann(3, 2, [20, 20, 40, 40], 1), _ann(4, 5, [5, 5, 50, 50], 1), _ann(5, 5, [60, 60, 30, 30], 1)]
    path = _write(tmp_path, [(0, "a"), (1, "b"), (2, "c")], anns, {0: "Referring", 1: "Comparison", 2: "Reasoning"})
    preds = {
        "0": '[{"image": 2, "bbox_2d": [50, 50, 80, 80]}, {"image": 2, "bbox_2d": [0, 0, 21, 21]}, {"image": 1, "bbox_2d": [12, 12, 40, 40]}]',
        "1": '{"image": 1, "bbox_2d": [20, 20, 60, 60]}',
        "2": '[{"image": 2, "bbox_2d": [5, 5, 55, 55]}, {"image": 1, "bbox_2d": [0, 0, 9, 9]}]',
    }
    res = score(path, preds, Space.PIXELS, tmp_path, subset="all")
    assert res["ap50"] == round(100 * 0.36661166116611654, 2) and res["accuracy"] == round(100 * 0.6666666666666666, 2)
