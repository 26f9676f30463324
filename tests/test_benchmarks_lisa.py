import json

import pytest
from PIL import Image

from migrl.benchmarks import get
from migrl.benchmarks.lisa import load, official_box, official_iou

score = get("lisa").score_file  # load, then score what was loaded
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
    # item 3 has no box: the official loop scores it 0 (its except appends 0), so it stays in the denominator
    assert res["counts"] == {"val": [1, 4]} and res["tasks"]["val"] == 25.0 and res["missing_predictions"] == 1
    assert res["zero_for_bad_input_items"] == [{"record": "3", "field": "boxes", "reason": "missing"}]
    assert "errors" not in res and res["protocol"]["kind"] == "official"
    assert res["protocol"]["items"] == 4 and res["protocol"]["zero_for_bad_input"] == 1


def test_score_qwen25_per_image(tmp_path):
    path = _bench(tmp_path)
    box = convert([20, 10, 100, 50], Space.PIXELS, Space.QWEN25, (200, 100), ImageSizing())
    good = json.dumps({"bbox_2d": [round(v) for v in box]})
    res = score(path, {"0": good, "1": "<answer>(100,100),(500,500)</answer>", "2": 12345}, Space.QWEN25, sizing=ImageSizing())
    # item 1 read as resized pixels is a tiny box; a non-string prediction is simply wrong; item 3 has no box
    assert res["counts"]["val"] == [1, 4]


def test_reasonseg_folder(tmp_path):
    d = tmp_path / "val"
    d.mkdir()
    Image.new("RGB", (50, 40)).save(d / "x.jpg")
    (d / "x.json").write_text(json.dumps({"text": ["find it"], "shapes": [{"label": "t", "points": [[5, 4], [25, 4], [15, 30]]}, {"points": [[0, 0], [1, 1]]}]}))
    (d / "y.json").write_text(json.dumps({"text": ["nothing"], "shapes": []}))
    Image.new("RGB", (50, 40)).save(d / "y.jpg")
    (d / "z.json").write_text(json.dumps({"text": ["no jpg"], "shapes": [{"points": [[1, 1], [9, 9]]}]}))
    Image.new("RGB", (50, 40)).save(d / "z.png")
    report = load(d)
    assert [r.id for r in report.records] == ["x"] and report.records[0].boxes[0].bbox == (5, 4, 25, 30)
    assert any("y.json" in e and "'shapes'" in e for e in report.errors)
    assert any("z.json" in e and "no z.jpg" in e for e in report.errors)
    # gen_box_ann.py writes y with "boxes": [] (scored 0 by the eval) and leaves z out (it has no .jpg)
    res = score(d, {"x": "(100,100),(500,750)"}, Space.QWEN2)
    assert res["counts"] == {"val": [1, 2]} and res["zero_for_bad_input_items"][0]["record"] == "y"
    assert len(res["errors"]) == 1 and "z.json" in res["errors"][0]


# ---------------------------------------------------------------------------------------------
# Differential test: UniVG-R1 lisa_evaluation eval.py + merge.py (and Visual-RFT gen_box_ann.py) re-implemented
# by hand below, on files in the official format, with the output styles models write.

OFFICIAL_PATTERN = r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)"


def _hand_iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-6)


def _hand_eval(items, root, responses):
    """``evaluate_model``'s loop: any exception in the try appends 0; then ``merge.py``'s Acc@0.5 in percent."""
    import re

    ious = []
    for key, item in items:
        try:
            with Image.open(root / item["image_path"]) as image:  # process_image
                w, h = image.size
            item["instruction"]
            b = item["boxes"][0]
            gt = [b[0] / w, b[1] / h, b[2] / w, b[3] / h]
            x1, y1, x2, y2 = map(int, re.findall(OFFICIAL_PATTERN, responses.get(key, ""))[0])
            ious.append(_hand_iou([x1 / 1000, y1 / 1000, x2 / 1000, y2 / 1000], gt))
        except Exception:
            ious.append(0)
    return round(100 * sum(iou >= 0.5 for iou in ious) / len(ious), 2)


def test_hand_rule_on_literal_cases(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "a.jpg")
    item = {"image_path": "a.jpg", "instruction": "x", "boxes": [[20, 10, 100, 50]]}  # [0.1, 0.1, 0.5, 0.5]
    assert _hand_eval([("0", item)], tmp_path, {"0": "(100,100),(500,500)"}) == 100.0
    assert _hand_eval([("0", item)], tmp_path, {"0": "(100,100),(300,500)"}) == 0.0  # IoU 0.5 - 1e-6 ish
    assert _hand_eval([("0", item)], tmp_path, {"0": "[100,100,500,500]"}) == 0.0
    assert _hand_eval([("0", {**item, "boxes": []})], tmp_path, {"0": "(100,100),(500,500)"}) == 0.0


FRUIT = [
    # (item as in lisa_{split}.json, response): the styles a model writes, and the items the official loop fails on
    ({"image_path": "a.jpg", "instruction": ["the dog"], "boxes": [[20, 10, 100, 50]]}, "<answer>(100,100),(500,500)</answer>"),
    ({"image_path": "a.jpg", "instruction": ["the dog"], "boxes": [[20, 10, 100, 50]]}, "( 100 , 100 ) , ( 480 , 520 )"),
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "<think>(0,0),(10,10)</think><answer>(100,100),(500,500)</answer>"),
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, '{"bbox_2d": [20, 10, 100, 50]}'),
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "[100, 100, 500, 500]"),
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "<|box_start|>(100,100),(500,500)<|box_end|>"),
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "(500,500),(100,100)"),  # inverted
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "(100,100),(2000,2000)"),  # past 1000
    ({"image_path": "a.jpg", "instruction": "a string", "boxes": [[-4, 10, 100, 50, 7]]}, "(0,100),(500,500)"),  # negative, 5 values
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": []}, "(100,100),(500,500)"),  # no box: 0
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [["a", 1, 2, 3]]}, "(100,100),(500,500)"),  # not numbers: 0
    ({"image_path": "a.jpg", "boxes": [[20, 10, 100, 50]]}, "(100,100),(500,500)"),  # no instruction: 0
    ({"image_path": "gone.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, "(100,100),(500,500)"),  # no image: 0
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[20, 10, 100, 50]]}, None),  # no prediction
    # GT [-0.3, 0.1, 0.5, 0.5] as the file gives it: IoU 0.375, a miss (clipped at 0 it would be 0.6, a hit)
    ({"image_path": "a.jpg", "instruction": ["x"], "boxes": [[-60, 10, 100, 50]]}, "(0,100),(300,500)"),
]


def test_differential_against_the_hand_rule(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "a.jpg")
    path = tmp_path / "lisa_test.json"
    path.write_text(json.dumps([item for item, _ in FRUIT]))
    responses = {str(i): text for i, (_, text) in enumerate(FRUIT) if text is not None}
    res = score(path, responses, Space.QWEN2)
    expected = _hand_eval([(str(i), item) for i, (item, _) in enumerate(FRUIT)], tmp_path, responses)
    assert res["tasks"] == {"test": expected} and res["avg"] == expected
    # hand-checked: items 0, 1 (IoU 0.91), 5 and 8 (GT [-0.02, 0.1, 0.5, 0.5], IoU 0.95) are hits; item 2 is
    # a miss (the first pair of the whole text is the think's (0,0),(10,10)), and so is item 14: 4 of 15
    assert res["counts"] == {"test": [4, 15]} and expected == round(100 * 4 / 15, 2)
    assert [z["record"] for z in res["zero_for_bad_input_items"]] == ["9", "10", "11"]
    assert len(res["errors"]) == 1 and "gone.jpg" in res["errors"][0] and res["missing_predictions"] == 1
    assert res["protocol"] == {"kind": "official", "detail": res["protocol"]["detail"], "items": 15, "zero_for_bad_input": 4}


def test_differential_reasonseg_folder_as_gen_box_ann(tmp_path):
    d = tmp_path / "test"
    d.mkdir()
    anns = {
        "a": {"text": ["the cup"], "shapes": [{"label": "t", "points": [[20, 10], [100, 30], [60, 50]]}, {"points": [[0, 0], [1, 1]]}]},
        "b": {"text": ["nothing"], "shapes": []},  # gen_box_ann.py: "boxes": [], the eval scores 0
        "c": {"text": ["no jpg"], "shapes": [{"points": [[1, 1], [9, 9]]}]},  # left out: no c.jpg
        "d": {"text": ["edge"], "shapes": [{"points": [[-3, 10], [100, 50]]}]},
    }
    for name, ann in anns.items():
        (d / f"{name}.json").write_text(json.dumps(ann))
        if name != "c":
            Image.new("RGB", (200, 100)).save(d / f"{name}.jpg")
    Image.new("RGB", (200, 100)).save(d / "c.png")
    responses = {"a": "(100,100),(500,500)", "b": "(100,100),(500,500)", "c": "(0,0),(50,90)", "d": "(0,100),(500,500)"}

    def gen_box_ann(name):  # by hand
        ann = anns[name]
        boxes = [[min(p[0] for p in s["points"]), min(p[1] for p in s["points"]),
                  max(p[0] for p in s["points"]), max(p[1] for p in s["points"])] for s in ann["shapes"][:1]]
        return {"image_path": f"test/{name}.jpg", "instruction": ann["text"], "boxes": boxes}

    items = [(n, gen_box_ann(n)) for n in sorted(anns) if (d / f"{n}.jpg").exists()]
    res = score(d, responses, Space.QWEN2)
    assert res["tasks"] == {"test": _hand_eval(items, tmp_path, responses)} == {"test": round(100 * 2 / 3, 2)}
    assert res["counts"] == {"test": [2, 3]} and [z["record"] for z in res["zero_for_bad_input_items"]] == ["b"]
