import json

import pytest
from PIL import Image

from migrl.benchmarks.ref_l4 import load, official_iou, score
from migrl.boxes import Space, convert
from migrl.images import ImageSizing


def _bench(tmp_path):
    Image.new("RGB", (400, 300)).save(tmp_path / "a.jpg")
    rows = [
        {"id": "000000", "caption": "the red car on the left", "bbox": [0, 0, 100, 100], "file_name": "a.jpg", "ori_category_id": "o365_1", "split": "val"},
        {"id": "000001", "caption": "half of it", "bbox": [0, 0, 100, 100], "file_name": "a.jpg", "ori_category_id": "o365_1", "split": "val"},
        {"id": "000002", "caption": "big", "bbox": [0, 0, 300, 300], "file_name": "a.jpg", "ori_category_id": "o365_2", "split": "test"},
        {"id": "000003", "caption": "no box", "file_name": "a.jpg", "split": "val"},
    ]
    path = tmp_path / "ref-l4-val.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_official_iou_eps_and_clamp():
    assert official_iou([0, 0, 10, 10], [0, 0, 5, 10]) == pytest.approx(0.5)
    assert official_iou([0, 0, 10, 10], [20, 20, 10, 10]) == 0.0  # inverted: overlap clamped to 0
    assert official_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0


def test_load_and_strict_threshold(tmp_path):
    path = _bench(tmp_path)
    report = load(path)
    assert [r.id for r in report.records] == ["000000", "000001", "000002"]
    assert report.records[2].boxes[0].bbox == (0, 0, 300, 300)
    assert len(report.errors) == 1 and "annotation 3" in report.errors[0] and "'bbox'" in report.errors[0]
    preds = {
        "000000": '{"bbox_2d": [0, 0, 100, 100]}',
        "000001": '{"bbox_2d": [0, 0, 50, 100]}',  # IoU exactly 0.5: not > 0.5
        "000002": '{"bbox_2d": [0, 0, 300, 300]}',
    }
    res = score(path, preds, Space.PIXELS)
    assert res["tasks"] == {"test": 100.0, "val": 50.0} and res["avg"] == 75.0
    assert res["acc"]["0.5"] == pytest.approx(66.67) and res["size_acc50"] == {"small": 50.0, "medium": None, "large": 100.0}
    assert res["macc"] == pytest.approx(66.67)


def test_qwen2_and_qwen25_conversion(tmp_path):
    path = _bench(tmp_path)
    q2 = convert([0, 0, 100, 100], Space.PIXELS, Space.QWEN2, (400, 300))
    q25 = convert([0, 0, 100, 100], Space.PIXELS, Space.QWEN25, (400, 300), ImageSizing())
    assert score(path, {"000000": json.dumps({"bbox_2d": [round(v) for v in q2]})}, Space.QWEN2)["counts"]["val"] == [1, 2]
    assert score(path, {"000000": json.dumps({"bbox_2d": [round(v) for v in q25]})}, Space.QWEN25)["counts"]["val"] == [1, 2]
    res = score(path, {"000000": "garbage \u0000 [1e309, 2, 3, 4]"}, Space.QWEN25)
    assert res["counts"]["val"] == [0, 2] and res["missing_predictions"] == 2


def test_iou_is_single_precision_like_the_official_tensors():
    # 0.5000000596046448 is what JierunChen/Ref-L4 ref_l4/overlaps.py bbox_overlaps returned for this pair
    # (torch.tensor of Python floats: float32), run outside this repository; in float64 the IoU is
    # 0.5000000000000001. Both are > 0.5, but other pairs fall on either side (2 in 2M decisions).
    assert official_iou([0.1, 0.2, 10.3, 10.7], [0.1, 0.2, 5.2, 10.7]) == 0.5000000596046448
    assert official_iou([0, 0, 100, 100], [0, 0, 50, 100]) == 0.5
    # a decision that float64 gets wrong: official 0.800000011920929 > 0.8 (float64: exactly 0.8, not > 0.8)
    assert official_iou([389, 14, 409, 146], [392, 14, 408, 146]) == 0.800000011920929 > 0.8
