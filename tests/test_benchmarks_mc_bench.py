import itertools
import json

import pytest
from PIL import Image

from migrl.benchmarks import BENCHMARKS
from migrl.benchmarks import get
from migrl.benchmarks.mc_bench import _max_matching, load

score = get("mc-bench").score_file  # load, then score what was loaded
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
    assert res["tasks"] == {"Referring": 0.0} and res["bugs_fixed"]["tasks"] == {"Referring": 100.0}  # AP50 per style
    assert res["accuracy"] == 100.0 and res["accuracy_by_style"] == {"Referring": 100.0}


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
    assert res["accuracy_by_style"] == {"Comparison": 0.0, "Referring": 100.0} and res["accuracy"] == 50.0
    # AP50 per style: Referring's one box found, Comparison's a false positive; over both pairs 1 of 2 GT
    # found at precision 1, then a false positive: recall points 0..0.5 of 101 -> 51/101
    assert res["tasks"] == {"Comparison": 0.0, "Referring": 100.0} and res["counts"] == {"Comparison": [0, 1], "Referring": [1, 1]}
    assert res["avg"] == res["ap50"] == round(100 * 51 / 101, 2) == res["id_avg"] and res["ood_avg"] is None
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


# ---------------------------------------------------------------------------------------------
# Differential test: eval_mc_bench.py's rule re-implemented by hand below (plain Python, no pycocotools),
# on an official-format file whose pairs span the three styles, a second group, annotation id 0, a pair
# with two boxes in one image and a pair without target; predictions in the output styles models write.

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs


def _iou_xywh(d, g):
    """pycocotools' box IoU (no +1)."""
    iw = max(0.0, min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0]))
    ih = max(0.0, min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1]))
    inter = iw * ih
    return inter / (d[2] * d[3] + g[2] * g[3] - inter)


def _ap_of_marks(marks, n_gt):
    """101-point interpolated precision over detections taken in order (True = true positive)."""
    tp = fp = 0
    recall, precision = [], []
    for is_tp in marks:
        tp, fp = tp + is_tp, fp + (not is_tp)
        recall.append(tp / n_gt)
        precision.append(tp / (tp + fp))
    for i in range(len(precision) - 1, 0, -1):  # precision made non-increasing from the right
        precision[i - 1] = max(precision[i - 1], precision[i])
    q = []
    for r in RECALL_POINTS:
        idx = next((i for i, rc in enumerate(recall) if rc >= r), None)
        q.append(precision[idx] if idx is not None else 0.0)
    return sum(q) / len(q)


def _hand_weighted_ap50(anns, dets, image_ids, id_zero_bug=True):
    """Greedy matching per image and group at IoU >= 0.5 (every score 1.0: images in id order, boxes in
    order); a match to GT id 0 is a false positive (bug 1); AP per group weighted by its GT count."""
    total = len(anns)
    ap = 0.0
    for cat in sorted({a["category_id"] for a in anns}):
        gts = [a for a in anns if a["category_id"] == cat]
        marks = []
        for image in sorted(image_ids):
            free = [g for g in gts if g["image_id"] == image]
            for d in (d for d in dets if d["image_id"] == image and d["category_id"] == cat):
                best, match = 0.5, None
                for g in free:
                    if _iou_xywh(d["bbox"], g["bbox"]) >= best:
                        best, match = _iou_xywh(d["bbox"], g["bbox"]), g
                if match is not None:
                    free.remove(match)
                marks.append(match is not None and not (id_zero_bug and match["id"] == 0))
        ap += len(gts) / total * _ap_of_marks(marks, len(gts))
    return ap


def _best_sum_matching(ious):
    rows, cols = len(ious), len(ious[0])
    if rows > cols:
        ious, rows, cols = [list(c) for c in zip(*ious)], cols, rows
    best = max(itertools.permutations(range(cols), rows), key=lambda p: sum(ious[r][c] for r, c in enumerate(p)))
    return [ious[r][c] for r, c in enumerate(best)]


def _hand_regroup(anns, dets, partner, keep_every_mapping=False):
    """The official re-mapping for predictions of one group: for each image with a group-2 box (in the order
    of Python's set, as COCO.getImgIds gives them), the pair's GT group whose matched IoUs have the best mean
    (the first on a tie) relabels the pair's boxes; each round starts again from the predictions (bug 2)."""
    out = [dict(d) for d in dets]
    for image in list({a["image_id"] for a in anns if a["category_id"] == 2}):
        pair = (image, partner[image])
        if not keep_every_mapping:
            out = [dict(d) for d in dets]
        if not any(d["image_id"] in pair for d in dets):
            continue
        best = None
        for cat in list({a["category_id"] for a in anns if a["image_id"] in pair}):
            matched = []
            for i in pair:
                ds = [d["bbox"] for d in dets if d["image_id"] == i]
                gs = [a["bbox"] for a in anns if a["image_id"] == i and a["category_id"] == cat]
                if ds and gs:
                    matched += _best_sum_matching([[_iou_xywh(d, g) for g in gs] for d in ds])
            mean = sum(matched) / len(matched) if matched else 0.0
            if best is None or mean > best[0]:
                best = (mean, cat)
        for d in out:
            if d["image_id"] in pair:
                d["category_id"] = best[1]
    return out


def _hand_mcbench(anns, dets, image_ids, partner, fixed=False):
    if fixed:
        anns = [{**a, "id": k + 1} for k, a in enumerate(anns)]
    if not dets:
        return 0.0
    return _hand_weighted_ap50(anns, _hand_regroup(anns, dets, partner, fixed), image_ids)


def test_hand_rule_on_literal_cases():
    g = [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10]},
         {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]
    hit = {"image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10]}
    miss = {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10]}
    assert _hand_weighted_ap50(g, [hit], [0, 1]) == pytest.approx(51 / 101)  # recall 0.5 at precision 1
    assert _hand_weighted_ap50(g, [hit, miss], [0, 1]) == pytest.approx(51 / 101)  # the FP comes after
    assert _hand_weighted_ap50(g, [miss, hit], [0, 1]) == pytest.approx(51 / 101)  # images in id order: hit first
    fp_first = [{**miss, "image_id": 0}, {**hit, "image_id": 1}]
    assert _hand_weighted_ap50(g, fp_first, [0, 1]) == pytest.approx(0.5 * 51 / 101)  # precision 1/2 up to recall 1/2
    assert _hand_weighted_ap50(g, [{**hit, "bbox": [0, 0, 10, 20]}], [0, 1]) == pytest.approx(51 / 101)  # IoU 0.5
    assert _hand_weighted_ap50(g, [{**hit, "bbox": [0, 0, 10, 21]}], [0, 1]) == 0.0  # IoU 0.476
    assert _hand_weighted_ap50([{**g[0], "id": 0}], [hit], [0]) == 0.0  # bug 1
    # group 2 of the pair (0, 1) takes the box (IoU 1 against 0): relabelled, then a true positive
    two = [{**g[0], "id": 1}, {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]}]
    assert _hand_regroup(two, [miss], {0: 1, 1: 0})[0]["category_id"] == 2
    assert _hand_weighted_ap50(two, _hand_regroup(two, [miss], {0: 1, 1: 0}), [0, 1]) == pytest.approx(0.5)


def _diff_bench(tmp_path):
    styles = {0: "Referring", 1: "Comparison", 2: "Comparison", 3: "Reasoning", 4: "Reasoning", 5: "Referring",
              6: "Referring", 7: "Reasoning"}
    anns = [
        _ann(0, 0, [10, 10, 30, 30]),  # id 0: never a true positive officially
        _ann(1, 2, [0, 0, 40, 40]), _ann(2, 3, [50, 50, 40, 40]),
        _ann(3, 4, [20, 20, 20, 20]), _ann(4, 5, [60, 10, 30, 30], 2),  # a second group: the re-mapping runs
        _ann(5, 6, [5, 5, 50, 50]),
        _ann(6, 8, [10, 10, 20, 20]), _ann(7, 9, [40, 40, 40, 40], 2),
        _ann(8, 10, [0, 0, 10, 10]), _ann(9, 10, [50, 50, 10, 10]), _ann(10, 11, [30, 30, 30, 30]),  # 2 in one image
        _ann(11, 14, [30, 30, 40, 40]), _ann(12, 15, [0, 0, 30, 30]),
    ]  # pair 6 (images 12, 13) has no target
    return _write(tmp_path, [(pid, f"prompt {pid}") for pid in range(8)], anns, styles), anns, styles


PREDICTIONS = {  # the output styles models write, and the detections (image id, xywh) each means
    "0": ('{"image": 1, "bbox_2d": [10, 10, 40, 40]}', [(0, [10, 10, 30, 30])]),
    "1": ('<think>two</think><answer>[{"image": 1, "bbox_2d": [0, 0, 40, 40]}, {"image": 2, "bbox_2d": [55, 55, 95, 95]}]'
          '</answer>', [(2, [0, 0, 40, 40]), (3, [55, 55, 40, 40])]),
    "2": ("In image 2 <|box_start|>(60,10),(90,40)<|box_end|>", [(5, [60, 10, 30, 30])]),
    "3": ("image 1: [5, 5, 30, 30]", [(6, [5, 5, 25, 25])]),
    "4": ('```json\n[{"image": 1, "bbox_2d": [10, 10, 30, 30]}, {"image": 2, "bbox_2d": [40, 40, 80, 80]}]\n```',
          [(8, [10, 10, 20, 20]), (9, [40, 40, 40, 40])]),
    "5": ('[{"bbox_2d": [1, 2, 3, 4]}, {"image": 2, "bbox_2d": [30, 30, 60, 60]}]', [(11, [30, 30, 30, 30])]),
    "6": ('{"image": "1", "bbox_2d": [0, 0, 10, 10]}', [(12, [0, 0, 10, 10])]),
    # "7": no prediction
}


def _expected(anns, styles, subset, fixed):
    per_image = {}
    for a in anns:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    pairs = [p for p in range(8) if subset == "all" or (
        max(per_image.get(2 * p, 0), per_image.get(2 * p + 1, 0)) == 1)]
    partner = {i: i ^ 1 for i in range(16)}
    dets = [{"image_id": i, "category_id": 1, "bbox": b} for pid in sorted(PREDICTIONS, key=int)
            for i, b in PREDICTIONS[pid][1]]

    def figure(keep):
        images = [i for p in keep for i in (2 * p, 2 * p + 1)]
        part = [a for a in anns if a["image_id"] in images]
        return round(100 * _hand_mcbench(part, [d for d in dets if d["image_id"] in images], images, partner, fixed), 2)

    tasks = {s: figure([p for p in pairs if styles[p] == s]) for s in sorted({styles[p] for p in pairs})}
    return tasks, figure(pairs), pairs


@pytest.mark.parametrize("subset", ["paper", "all"])
def test_differential_against_the_hand_rule(tmp_path, subset):
    path, anns, styles = _diff_bench(tmp_path)
    res = score(path, {k: text for k, (text, _) in PREDICTIONS.items()}, Space.PIXELS, tmp_path, subset=subset)
    tasks, overall, pairs = _expected(anns, styles, subset, fixed=False)
    assert res["tasks"] == tasks and res["avg"] == res["ap50"] == overall
    fixed_tasks, fixed_overall, _ = _expected(anns, styles, subset, fixed=True)
    assert res["bugs_fixed"]["tasks"] == fixed_tasks and res["bugs_fixed"]["avg"] == res["ap50_bugs_fixed"] == fixed_overall
    assert res["pairs"] == len(pairs) and res["missing_predictions"] == 1 and res["unplaced_boxes"] == (subset == "all")
    kind = {"paper": "paper subset", "all": "official"}[subset]
    assert res["protocol"]["kind"] == kind and res["protocol"]["items"] == len(pairs)
    assert res["bugs_fixed"]["protocol"]["kind"] == "fixed"


def test_differential_literal_figures(tmp_path):
    # Hand-checked: Referring in the paper subset is pair 0 alone, whose one box matches GT id 0: 0 officially,
    # 100 fixed. Comparison (pairs 1, 2): 4 GT boxes, 3 detections, each a hit once pair 2's box is relabelled
    # group 2 (the only group-2 image of the style); image 4's group-1 box is missed: group 1 finds 2 of 3 at
    # precision 1 (recall points 0..0.66, 67 of 101), group 2 its one; weights 3/4 and 1/4.
    path, anns, styles = _diff_bench(tmp_path)
    res = score(path, {k: text for k, (text, _) in PREDICTIONS.items()}, Space.PIXELS, tmp_path)
    assert res["tasks"]["Referring"] == 0.0 and res["bugs_fixed"]["tasks"]["Referring"] == 100.0
    assert res["tasks"]["Comparison"] == round(100 * (3 / 4 * 67 / 101 + 1 / 4), 2) == 74.75
    assert res["counts"]["Comparison"] == [3, 4] and _expected(anns, styles, "paper", False)[0]["Comparison"] == 74.75
