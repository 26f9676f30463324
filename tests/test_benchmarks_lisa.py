import json

import pytest
from PIL import Image

from migrl.benchmarks.lisa import load, official_box, official_iou, score
from migrl.boxes import Space, convert
from migrl.images import ImageSizing


def _bench(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "a.jpg")
    items = [
        {"image_path": "a.jpg", "instruction": ["the thing that barks", "x"], "boxes": [[20, 10, 100, 50]]},
        {"image_path": "a.jpg", "instruction": "same", "boxes": [[20, 10, 100, 50], [0, 0, 1, 1]]},
        {"image_path": "a.jpg", "instruction": "same", "boxes": [[20, 10, 100, 50]]},
        {"image_path": "a.jpg", "instruction": "broken"},
    ]
    path = tmp_path / "lisa_val.json"
    path.write_text(json.dumps(items))
    return path


def test_official_extraction_and_iou():
    assert official_box("<think>( 100 , 200 ),(300,400)</think> (1,1),(2,2)") == [0.1, 0.2, 0.3, 0.4]  # first, whole text
    assert official_box("[100, 200, 300, 400]") is None
    assert official_box("(1" * 5000) is None
    assert official_iou([0.1, 0.1, 0.3, 0.5], [0.1, 0.1, 0.5, 0.5]) == pytest.approx(0.08 / (0.16 + 1e-6))
    assert official_iou([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]) == 0.0


def test_score_qwen2_official(tmp_path):
    path = _bench(tmp_path)
    report = load(path)
    assert [r.id for r in report.records] == ["0", "1", "2"] and report.records[0].question == "the thing that barks"
    assert len(report.errors) == 1 and "item 3" in report.errors[0] and "'boxes'" in report.errors[0]
    preds = {"0": "(100,100),(500,500)", "1": "(100,100),(300,500)"}  # item 1: IoU 0.5 - eps, a miss
    res = score(path, preds, Space.QWEN2)
    assert res["counts"] == {"val": [1, 3]} and res["tasks"]["val"] == 33.33 and res["missing_predictions"] == 1


def test_score_qwen25_per_image(tmp_path):
    path = _bench(tmp_path)
    box = convert([20, 10, 100, 50], Space.PIXELS, Space.QWEN25, (200, 100), ImageSizing())
    good = json.dumps({"bbox_2d": [round(v) for v in box]})
    res = score(path, {"0": good, "1": "<answer>(100,100),(500,500)</answer>", "2": 12345}, Space.QWEN25, sizing=ImageSizing())
    # item 1 read as resized pixels is a tiny box; a non-string prediction is simply wrong
    assert res["counts"]["val"] == [1, 3]


def test_reasonseg_folder(tmp_path):
    d = tmp_path / "val"
    d.mkdir()
    Image.new("RGB", (50, 40)).save(d / "x.jpg")
    (d / "x.json").write_text(json.dumps({"text": ["find it"], "shapes": [{"label": "t", "points": [[5, 4], [25, 4], [15, 30]]}, {"points": [[0, 0], [1, 1]]}]}))
    (d / "y.json").write_text(json.dumps({"text": ["nothing"], "shapes": []}))
    report = load(d)
    assert [r.id for r in report.records] == ["x"] and report.records[0].boxes[0].bbox == (5, 4, 25, 30)
    assert any("y.json" in e and "shapes[0].points" in e for e in report.errors)
    assert score(d, {"x": "(100,100),(500,750)"}, Space.QWEN2)["tasks"] == {"val": 100.0}
