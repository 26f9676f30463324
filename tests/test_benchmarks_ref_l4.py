import json

import numpy as np
import pytest
from PIL import Image

from migrl.benchmarks import get
from migrl.benchmarks.ref_l4 import load, official_iou, passes

score = get("ref-l4").score_file  # load, then score what was loaded
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
    # float32 IoU 0.800000011920929 (float64: exactly 0.8); the official threshold is compared in float32
    # too (a NumPy float32 array against th), where 0.8 is that same number: not above
    assert official_iou([389, 14, 409, 146], [392, 14, 408, 146]) == 0.800000011920929
    assert not passes(official_iou([389, 14, 409, 146], [392, 14, 408, 146]), 0.8)


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
    from migrl.benchmarks.ref_l4 import read_category_map

    other = tmp_path / "other.py"
    other.write_text("x = 1\n")
    with pytest.raises(ValueError, match="no `mapping_dict"):
        read_category_map(other)
    path, evaluation = _classes_bench(tmp_path)
    with pytest.raises(ValueError, match="Ref-L4's"):
        get("lisa").score_file(path, {}, Space.PIXELS, category_map=evaluation)


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
    rows = {row[0]: row[2:] for row in score_table([without, with_table], {}, get("ref-l4")).rows}
    assert rows["class average"] == ["-", "16.67"]  # o365_56: 1 of 3, refcoco_99: 0 of 2
    assert "class average" not in {row[0] for row in score_table([without], {}, get("ref-l4")).rows}


# ---------------------------------------------------------------------------------------------
# The released form (Hugging Face parquet) and the official figures, item by item.

def _parquet(tmp_path, rows, name="val.parquet", size=(1000, 800)):
    """A split as the Hugging Face export holds it, written by pandas/pyarrow: ``bbox`` comes back as a
    NumPy array and integer columns as NumPy integers."""
    import pandas as pd

    Image.new("RGB", size).save(tmp_path / "a.jpg")
    full = [{"id": r["id"], "caption": r.get("caption", "the thing"), "bbox": [float(v) for v in r["bbox"]],
             "bbox_area": float(r["bbox"][2] * r["bbox"][3]), "file_name": "a.jpg", "height": size[1],
             "width": size[0], "image_id": 7, "ori_category_id": r.get("ori_category_id", "o365_1")} for r in rows]
    path = tmp_path / name
    pd.DataFrame(full).to_parquet(path)
    return path


def test_the_released_parquet_loads_and_scores(tmp_path, capsys):
    import pandas as pd

    from migrl.cli import main

    path = _parquet(tmp_path, [{"id": "000000", "bbox": [10, 20, 100, 50]}, {"id": "000001", "bbox": [0, 0, 300, 300]}])
    assert type(pd.read_parquet(path)["bbox"][0]).__name__ == "ndarray"  # the form that was refused
    report = load(path)
    assert report.errors == [] and [r.id for r in report.records] == ["000000", "000001"]
    assert report.records[0].boxes[0].bbox == (10, 20, 110, 70) and report.records[0].task == "val"
    assert report.records[0].meta["xywh"] == [10.0, 20.0, 100.0, 50.0]
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "000000", "text": '{"bbox_2d": [10, 20, 110, 70]}'}) + "\n")
    assert main(["score", "--benchmark", "ref-l4", "--data", str(path), "--predictions", str(preds),
                 "--coords", "pixels", "--image-root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == {"val": 50.0}


def test_macc_is_the_mean_of_unrounded_accuracies(tmp_path):
    # IoU 1, 1, 0.6: 3/3 at 0.50 and 0.55, 2/3 at the eight others. Official: mean(1, 1, 2/3 x 8) * 100
    # = 73.333..., shown 73.33; averaging the rounded 66.67s gave 73.336, shown 73.34.
    path = _parquet(tmp_path, [{"id": str(i), "bbox": [0, 0, 100, 100]} for i in range(3)])
    preds = {"0": '{"bbox_2d": [0, 0, 100, 100]}', "1": '{"bbox_2d": [0, 0, 100, 100]}', "2": '{"bbox_2d": [0, 0, 60, 100]}'}
    res = score(path, preds, Space.PIXELS)
    assert res["macc"] == 73.33 and res["acc"] == {"0.5": 100.0, "0.75": 66.67, "0.9": 66.67}


def test_thresholds_compare_in_float32_like_the_official_array(tmp_path):
    # IoU 16*132 / (20*132) = 0.8 is float32 0.800000011920929, and the official (iou > th) on a float32
    # NumPy array compares with float32(0.8), the same number: not above. Run with the official
    # RefL4Evaluator outside this repository, this annotation (with a missed medium and a missed large
    # one, which its size buckets need) gave "Ann-level macc iou 0.5:0.95 | 20.0", i.e. 6 thresholds of 10.
    path = _parquet(tmp_path, [{"id": "a", "bbox": [389, 14, 20, 132]}])
    res = score(path, {"a": '{"bbox_2d": [392, 14, 408, 146]}'}, Space.PIXELS)
    assert res["macc"] == 60.0  # 0.50 .. 0.75 pass; in float64 0.8 passed too (70.0)
    assert res["protocol"] == {"kind": "official", "detail": res["protocol"]["detail"], "items": 1, "zero_for_bad_input": 0}


def test_percentages_in_the_official_order_of_operations(tmp_path):
    # 23 of 160: the official acc = 23 / 160 = 0.14375 then * 100 = 14.374999999999998, shown 14.37;
    # 100 * 23 / 160 = 14.375 would show 14.38 (summarize's order).
    path = _parquet(tmp_path, [{"id": str(i), "bbox": [0, 0, 100, 100]} for i in range(160)])
    res = score(path, {str(i): '{"bbox_2d": [0, 0, 100, 100]}' for i in range(23)}, Space.PIXELS)
    assert res["tasks"] == {"val": 14.37} and res["acc"]["0.5"] == 14.37 and res["avg"] == 14.37


# Output styles a model writes, each carrying one pixel box ("{b}" filled with the box's numbers);
# the reference below knows the box and never parses the text.
_STYLES = (
    '{{"bbox_2d": [{0}, {1}, {2}, {3}]}}',
    '<think>it is on the left</think><answer>{{"bbox_2d": [{0}, {1}, {2}, {3}], "label": "x"}}</answer>',
    '```json\n[{{"bbox_2d": [{0}, {1}, {2}, {3}]}}]\n```',
    "The box is [{0}, {1}, {2}, {3}].",
    "({0},{1}),({2},{3})",
    "<|box_start|>({0}, {1}),({2}, {3})<|box_end|>",
)
# Texts the official pipeline turns into no box (the dummy box: IoU 0).
_NO_BOX = ("I cannot find it.", '{"image": 2, "bbox_2d": [1, 1, 50, 50]}', "")


def _official_ious(gts_xywh, preds_xyxy):
    """mmdet ``bbox_overlaps(is_aligned=True)`` on float32 tensors, written again: clamp, eps 1e-6."""
    g = np.array([[x, y, x + w, y + h] for x, y, w, h in gts_xywh], dtype=np.float32)
    p = np.array([b if b is not None else [0, 0, 0, 0] for b in preds_xyxy], dtype=np.float32)
    lt, rb = np.maximum(g[:, :2], p[:, :2]), np.minimum(g[:, 2:], p[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    overlap = wh[:, 0] * wh[:, 1]
    union = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) + (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) - overlap
    return overlap / np.maximum(union, np.float32(1e-6))


def _official_figures(gts_xywh, preds_xyxy, classes):
    """``RefL4Evaluator.evaluate``'s numbers, rounded as its "for copy" lines."""
    import statistics

    iou = _official_ious(gts_xywh, preds_xyxy)
    frac = {th: (iou > th).sum().item() / len(iou) for th in [i / 100 for i in range(50, 100, 5)]}
    sides = np.sqrt([w * h for _, _, w, h in gts_xywh])
    small = iou[sides < 128]
    per_class = {c: iou[np.array(classes) == c] for c in sorted(set(classes))}
    cls50 = statistics.mean((v > 0.5).sum().item() / len(v) * 100 for v in per_class.values())
    cls_macc = statistics.mean(statistics.mean((v > th).sum().item() / len(v) * 100 for v in per_class.values())
                               for th in frac)
    return {
        "acc": {"0.5": round(frac[0.5] * 100, 2), "0.75": round(frac[0.75] * 100, 2), "0.9": round(frac[0.9] * 100, 2)},
        "macc": round(statistics.mean(frac.values()) * 100, 2),
        "small": round(sum(i > 0.5 for i in small) / len(small) * 100, 2),
        "class": (round(cls50, 2), round(cls_macc, 2)),
        "iou": iou,
    }


def _differential_case(tmp_path):
    rng = np.random.default_rng(15)
    fixed = [  # hand-checked: (gt xywh, pred xyxy, its IoU)
        ([0, 0, 100, 100], [0, 0, 50, 100], 0.5),  # exactly 0.5: not above
        ([389, 14, 20, 132], [392, 14, 408, 146], 0.8),  # float32 0.8: passes 0.75, not 0.8
        ([10, 10, 100, 100], [10, 10, 110, 110], 1.0),
        ([0, 0, 100, 100], [200, 200, 300, 300], 0.0),
    ]
    gts, boxes = [f[0] for f in fixed], [f[1] for f in fixed]
    for _ in range(56):
        x, y, w, h = (round(float(v), 2) for v in (*rng.uniform(0, 400, 2), *rng.uniform(20, 500, 2)))
        gts.append([x, y, w, h])
        jitter = rng.normal(0, 0.08 * max(w, h), 4)
        boxes.append([round(float(v), 2) for v in (x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3])])
    texts, preds_xyxy = {}, []
    for i, box in enumerate(boxes):
        if i % 10 == 9:  # no box, or a box of another image, or no prediction at all
            if i % 20 == 9:
                texts[f"{i:06d}"] = _NO_BOX[i % 3]
            preds_xyxy.append(None)
            continue
        texts[f"{i:06d}"] = _STYLES[i % len(_STYLES)].format(*box)
        preds_xyxy.append(box)
    classes = [f"o365_{i % 4}" for i in range(len(gts))]
    rows = [{"id": f"{i:06d}", "bbox": g, "ori_category_id": c} for i, (g, c) in enumerate(zip(gts, classes))]
    return _parquet(tmp_path, rows), texts, gts, preds_xyxy, classes, fixed


def test_differential_against_the_official_rule(tmp_path):
    path, texts, gts, preds_xyxy, classes, fixed = _differential_case(tmp_path)
    want = _official_figures(gts, preds_xyxy, classes)
    for i, (_, _, value) in enumerate(fixed):  # the reference itself, on the hand-checked items
        assert want["iou"][i] == pytest.approx(value, abs=1e-6)
    assert not want["iou"][1] > 0.8 and want["iou"][1] > 0.75 and not want["iou"][0] > 0.5
    table = tmp_path / "map.json"
    table.write_text(json.dumps({"o365_3": "o365_2"}))  # a merge, as the official table has
    merged = [{"o365_3": "o365_2"}.get(c, c) for c in classes]
    want_merged = _official_figures(gts, preds_xyxy, merged)
    res = score(path, texts, Space.PIXELS, category_map=table)
    assert res["tasks"] == {"val": want["acc"]["0.5"]} and res["acc"] == want["acc"] and res["macc"] == want["macc"]
    assert res["size_acc50"]["small"] == want["small"]
    assert (res["class_avg"]["acc50"], res["class_avg"]["macc"]) == want_merged["class"] and res["class_avg"]["classes"] == 3
    assert res["missing_predictions"] == sum(1 for i in range(len(gts)) if f"{i:06d}" not in texts) == 3
    assert res["protocol"]["kind"] == "official" and res["protocol"]["items"] == 60
    # what the official RefL4Evaluator printed for these 60 annotations ("for copy" lines), run outside
    # this repository on the same boxes with the README's dummy box [0, 0, 0, 0] for the six without one
    assert res["acc"] == {"0.5": 73.33, "0.75": 33.33, "0.9": 5.0} and res["macc"] == 38.5
    assert res["size_acc50"] == {"small": 50.0, "medium": 76.0, "large": 80.0}
    assert res["size_macc"] == {"small": 35.0, "medium": 34.4, "large": 44.0}
