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
    assert score(path, {"000000": json.dumps({"bbox_2d": [round(v) for v in q25]})}, Space.QWEN25, sizing=ImageSizing())["counts"]["val"] == [1, 2]
    res = score(path, {"000000": "garbage \u0000 [1e309, 2, 3, 4]"}, Space.QWEN25, sizing=ImageSizing())
    assert res["counts"]["val"] == [0, 2] and res["missing_predictions"] == 2


def test_iou_is_single_precision_like_the_official_tensors():
    # 0.5000000596046448 is what JierunChen/Ref-L4 ref_l4/overlaps.py bbox_overlaps returned for this pair
    # (torch.tensor of Python floats: float32), run outside this repository; in float64 the IoU is
    # 0.5000000000000001. Both are > 0.5, but other pairs fall on either side (2 in 2M decisions).
    assert official_iou([0.1, 0.2, 10.3, 10.7], [0.1, 0.2, 5.2, 10.7]) == 0.5000000596046448
    assert official_iou([0, 0, 100, 100], [0, 0, 50, 100]) == 0.5
    # a decision that float64 gets wrong: official 0.800000011920929 > 0.8 (float64: exactly 0.8, not > 0.8)
    assert official_iou([389, 14, 409, 146], [392, 14, 408, 146]) == 0.800000011920929 > 0.8


def _classes_bench(tmp_path):
    """Five annotations: refcoco_6 and refcoco_16 both merge into o365_56 (as the official table merges
    them), o365_56 itself, and refcoco_99 which the table does not name (kept as it is)."""
    Image.new("RGB", (400, 300)).save(tmp_path / "a.jpg")
    cats = ["refcoco_6", "refcoco_16", "o365_56", "refcoco_99", "refcoco_99"]
    rows = [{"id": f"{i:06d}", "caption": "c", "bbox": [0, 0, 100, 100], "file_name": "a.jpg", "ori_category_id": c,
             "split": "val"} for i, c in enumerate(cats)]
    path = tmp_path / "ref-l4-val.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    # the official file holds the table as a Python dict literal among its code
    evaluation = tmp_path / "evaluation.py"
    evaluation.write_text('import torch\n\nmapping_dict = {\n    "refcoco_6": "o365_56",\n    "refcoco_16": "o365_56",  # merged\n}\n\n'
                          "class RefL4Evaluator:\n    pass\n")
    return path, evaluation


def test_class_average_merges_categories_by_the_official_table(tmp_path, capsys):
    from migrl.cli import main

    path, evaluation = _classes_bench(tmp_path)
    full, half, miss = '{"bbox_2d": [0, 0, 100, 100]}', '{"bbox_2d": [0, 0, 100, 70]}', '{"bbox_2d": [200, 200, 300, 300]}'
    preds = {"000000": full, "000001": miss, "000002": miss, "000003": full, "000004": half}
    res = score(path, preds, Space.PIXELS, category_map=evaluation)
    # o365_56: 1 of 3 right (33.33); refcoco_99: IoU 1.0 and 0.7, both > 0.5 (100): mean 66.67.
    # mAcc per class over 0.50..0.95: o365_56 33.33 at every threshold; refcoco_99 100 up to 0.65, then 50.
    assert res["class_avg"]["classes"] == 2 and res["class_avg"]["acc50"] == pytest.approx(66.67)
    assert res["class_avg"]["macc"] == pytest.approx((100 / 3 + (4 * 100 + 6 * 50) / 10) / 2, abs=0.01)
    assert res["acc"]["0.5"] == 60.0  # the annotation-level figure is unchanged by the table
    assert "class_avg" not in score(path, preds, Space.PIXELS)  # no table, no class average
    as_json = tmp_path / "map.json"
    as_json.write_text(json.dumps({"refcoco_6": "o365_56", "refcoco_16": "o365_56"}))
    assert score(path, preds, Space.PIXELS, category_map=as_json)["class_avg"] == res["class_avg"]

    pred_file = tmp_path / "preds.jsonl"
    pred_file.write_text("\n".join(json.dumps({"id": k, "text": v}) for k, v in preds.items()))
    assert main(["score", "--benchmark", "ref-l4", "--data", str(path), "--predictions", str(pred_file),
                 "--coords", "pixels", "--image-root", str(tmp_path), "--category-map", str(evaluation)]) == 0
    assert json.loads(capsys.readouterr().out)["class_avg"]["acc50"] == pytest.approx(66.67)


def test_a_category_map_without_the_table_is_refused(tmp_path):
    from migrl.benchmarks import score_benchmark
    from migrl.benchmarks.ref_l4 import read_category_map

    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    with pytest.raises(ValueError, match="no `mapping_dict"):
        read_category_map(other)
    path, evaluation = _classes_bench(tmp_path)
    with pytest.raises(ValueError, match="Ref-L4's"):
        score_benchmark("lisa", path, {}, Space.PIXELS, category_map=evaluation)


def test_no_class_average_from_annotations_without_a_category(tmp_path):
    path, evaluation = _classes_bench(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[0]["ori_category_id"]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    res = score(path, {}, Space.PIXELS, category_map=evaluation)
    assert res["class_avg"] is None and any("1 annotations have no ori_category_id" in e for e in res["errors"])


def test_a_wrong_category_map_stops_eval_before_any_generation(tmp_path, capsys):
    from migrl.cli import main

    path, _ = _classes_bench(tmp_path)
    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    out = tmp_path / "eval"
    assert main(["eval", "--benchmark", "ref-l4", "--data", str(path), "--image-root", str(tmp_path),
                 "--out", str(out), "--category-map", str(other)]) == 2
    assert "no `mapping_dict" in capsys.readouterr().err and not (out / "predictions.jsonl").exists()
    assert main(["score", "--benchmark", "lisa", "--data", str(path), "--predictions", str(other),
                 "--category-map", str(other)]) == 2


def test_the_report_shows_the_class_average_when_scored_with_the_table(tmp_path):
    from migrl.report.build import Run, score_table

    path, evaluation = _classes_bench(tmp_path)
    preds = {"000000": '{"bbox_2d": [0, 0, 100, 100]}'}
    with_table = Run("rl", tmp_path, score(path, preds, Space.PIXELS, category_map=evaluation))
    without = Run("base", tmp_path, score(path, preds, Space.PIXELS))
    rows = {row[0]: row[2:] for row in score_table([without, with_table], {}, "ref-l4").rows}
    assert rows["class average"] == ["-", "16.67"]  # o365_56: 1 of 3, refcoco_99: 0 of 2
    assert "class average" not in {row[0] for row in score_table([without], {}, "ref-l4").rows}
