import json

import numpy as np
import pytest

from PIL import Image

from migrl.benchmarks import get
from migrl.benchmarks.odinw import load

score = get("odinw").score_file  # load, then score what was loaded
from migrl.boxes import Space, convert
from migrl.images import ImageSizing


def _subset(root, folder, anns, n_images=3, size=(200, 100)):
    d = root / folder / "valid"
    d.mkdir(parents=True)
    images = []
    for i in range(n_images):
        Image.new("RGB", size).save(d / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "width": size[0], "height": size[1]})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (d / "annotations_without_background.json").write_text(json.dumps(data))


def _ann(aid, image_id, bbox, cat=1):
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}


def _bench(tmp_path):
    root = tmp_path / "odinw"
    # image 1 has two boxes: left out; image 2 has an unknown category: an error
    _subset(root, "PascalVOC", [_ann(1, 0, [10, 10, 50, 50]), _ann(2, 1, [0, 0, 5, 5]), _ann(3, 1, [9, 9, 5, 5]), _ann(4, 2, [0, 0, 5, 5], 9)])
    _subset(root, "WildfireSmoke", [_ann(1, 0, [0, 0, 100, 100], 2), _ann(2, 1, [100, 0, 100, 100], 2)])
    return root


def test_load_single_box_images(tmp_path):
    report = load(_bench(tmp_path))
    assert sorted(r.id for r in report.records) == ["PV:0", "WS:0", "WS:1"]
    pv = next(r for r in report.records if r.id == "PV:0")
    assert pv.question == "cat" and pv.boxes[0].bbox == (10, 10, 60, 60) and pv.images == ("PascalVOC/valid/0.jpg",)
    assert len(report.errors) == 1 and "image 2" in report.errors[0] and "category_id" in report.errors[0]


def test_score_mean_over_subsets(tmp_path):
    root = _bench(tmp_path)
    q25 = convert([10, 10, 60, 60], Space.PIXELS, Space.QWEN25, (200, 100), ImageSizing())
    preds = {
        "PV:0": json.dumps({"bbox_2d": [round(v, 2) for v in q25]}),
        "WS:0": '{"bbox_2d": [0, 0, 10, 10]}',
    }
    res = score(root, preds, Space.QWEN25, sizing=ImageSizing())
    assert res["tasks"] == {"PV": 100.0, "WS": 0.0} and res["avg"] == 50.0 and res["missing_predictions"] == 1
    single = score(root / "WildfireSmoke" / "valid" / "annotations_without_background.json",
                   {"WS:1": '{"bbox_2d": [500, 0, 1000, 1000]}'}, Space.QWEN2)
    assert single["tasks"] == {"WS": 50.0}


def test_unreadable_subset_and_bad_box_leave_the_rest(tmp_path):
    root = _bench(tmp_path)
    _subset(root, "OxfordPets", [_ann(1, 0, [1, 1, "x", 5]), _ann(2, 1, [1, 1, 5, 5])], n_images=2)
    broken = root / "openPoetryVision" / "valid"
    broken.mkdir(parents=True)
    (broken / "annotations_without_background.json").write_text('{"images": [')
    report = load(root)
    assert sorted(r.id for r in report.records) == ["OP:1", "PV:0", "WS:0", "WS:1"]
    assert any("OxfordPets" in e and "image 0 (id 0)" in e and "bbox" in e for e in report.errors)
    assert any("openPoetryVision" in e and "cannot read" in e for e in report.errors)


# ---------------------------------------------------------------------------------------------
# The released ODinW-35 layout: every dataset folder its own subset, the paper's five averaged.

def test_the_two_oxford_pets_variants_are_two_subsets_with_their_own_ids(tmp_path):
    root = tmp_path / "odinw"
    anns = [_ann(1, 0, [10, 10, 50, 50]), _ann(2, 1, [0, 0, 100, 100])]
    _subset(root, "OxfordPets/by-breed", anns, n_images=2)  # the same images and boxes, other category names
    _subset(root, "OxfordPets/by-species", anns, n_images=2)
    report = load(root)
    ids = [r.id for r in report.records]
    assert sorted(ids) == ["OP:0", "OP:1", "OxfordPets/by-species:0", "OxfordPets/by-species:1"] and report.errors == []
    species = next(r for r in report.records if r.id == "OxfordPets/by-species:0")
    assert species.images == ("OxfordPets/by-species/valid/0.jpg",) and species.task == "OxfordPets/by-species"
    # one answer for OP:0 answers OP:0 only
    res = score(root, {"OP:0": '{"bbox_2d": [10, 10, 60, 60]}'}, Space.PIXELS)
    assert res["tasks"] == {"OP": 50.0, "OxfordPets/by-species": 0.0} and res["missing_predictions"] == 3
    assert res["avg"] == 50.0 and res["averaged"] == ["OP"]  # by-species is shown, outside the paper's mean


def test_avg_is_the_paper_five_by_default_and_all_on_request(tmp_path):
    root = _bench(tmp_path)  # PV and WS
    _subset(root, "CottontailRabbits", [_ann(1, 0, [0, 0, 100, 100])], n_images=1)
    preds = {"PV:0": '{"bbox_2d": [10, 10, 60, 60]}', "CottontailRabbits:0": '{"bbox_2d": [0, 0, 100, 100]}'}
    res = score(root, preds, Space.PIXELS)
    assert res["tasks"] == {"CottontailRabbits": 100.0, "PV": 100.0, "WS": 0.0}
    assert res["avg"] == res["id_avg"] == 50.0 and res["averaged"] == ["PV", "WS"]
    assert res["missing_subsets"] == ["OP", "OPV", "Vec"]
    assert res["protocol"]["kind"] == "paper subset" and res["protocol"]["items"] == 3  # PV 1 + WS 2
    assert "not found: OP, OPV, Vec" in res["protocol"]["detail"] and "not averaged" in res["protocol"]["detail"]
    every = score(root, preds, Space.PIXELS, subset="all")
    assert every["tasks"] == res["tasks"] and every["avg"] == 66.67 and every["protocol"]["items"] == 4
    assert "all 3 subsets" in every["protocol"]["detail"] and "missing_subsets" not in every
    with pytest.raises(ValueError, match="--subset .five.: odinw has all, paper"):
        score(root, preds, Space.PIXELS, subset="five")


def test_a_second_folder_claiming_a_paper_name_keeps_its_own(tmp_path):
    root = tmp_path / "odinw"
    _subset(root, "OxfordPets", [_ann(1, 0, [0, 0, 5, 5])], n_images=1)
    _subset(root, "OxfordPets/by-breed", [_ann(1, 0, [0, 0, 5, 5])], n_images=1)
    report = load(root)
    ids = {r.id: r.images[0] for r in report.records}
    assert ids == {"OP:0": "OxfordPets/by-breed/valid/0.jpg", "OxfordPets:0": "OxfordPets/valid/0.jpg"}
    assert len(report.errors) == 1 and "already subset 'OP'" in report.errors[0]


# ODinW-35 folders as GLIP configs/odinw_35 and mmdetection configs/odinw lay them out (under odinw/):
# (folder, annotation file relative to it, image size, category names)
_LAYOUT = (
    ("OxfordPets/by-breed", "valid/annotations_without_background.json", (500, 375), ["cat-Abyssinian", "dog-pug"]),
    ("OxfordPets/by-species", "valid/annotations_without_background.json", (500, 375), ["cat", "dog"]),
    ("PascalVOC", "valid/annotations_without_background.json", (640, 480), ["person", "car"]),
    ("WildfireSmoke", "valid/annotations_without_background.json", (640, 480), ["smoke"]),
    ("openPoetryVision/512x512", "valid/annotations_without_background.json", (512, 512), ["Arial", "Didot"]),
    ("VehiclesOpenImages/416x416", "valid/annotations_without_background.json", (416, 416), ["Bus", "Car"]),
    ("boggleBoards/416x416AutoOrient/export", "val_annotations_without_background.json", (416, 416), ["a", "b"]),
)
# (text style, whether the prediction is on the asked image); qwen2 integers in [0, 1000)
_STYLES = (
    '{{"bbox_2d": [{0}, {1}, {2}, {3}]}}',
    '<think>the pet in the middle</think><answer>{{"bbox_2d": [{0}, {1}, {2}, {3}], "label": "it"}}</answer>',
    "```json\n[{{\"bbox_2d\": [{0}, {1}, {2}, {3}]}}]\n```",
    "<|object_ref_start|>it<|object_ref_end|><|box_start|>({0},{1}),({2},{3})<|box_end|>",
    "It is at [{0}, {1}, {2}, {3}].",
    "({0}, {1}), ({2}, {3})",
)


def _write_odinw35(tmp_path, rng):
    """Each folder: 12 images; image k has k % 4 boxes except every fourth, which has one more box
    (so 0, 1, 2 or 3 boxes), i.e. a few single-box images per folder, as the paper keeps."""
    root = tmp_path / "odinw"
    truth = {}  # folder -> {image id: (gt xyxy, size)} for the single-box images
    for folder, ann_file, size, names in _LAYOUT:
        ann_path = root / folder / ann_file
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k in range(12):
            image_id = 100 + k
            Image.new("RGB", size).save(ann_path.parent / f"img{k}.jpg")
            images.append({"id": image_id, "file_name": f"img{k}.jpg", "width": size[0], "height": size[1]})
            n_boxes = [1, 0, 2, 1][k % 4] if k % 3 else 1
            for _ in range(n_boxes):
                w, h = rng.integers(30, size[0] // 2), rng.integers(30, size[1] // 2)
                x, y = rng.integers(0, size[0] - w), rng.integers(0, size[1] - h)
                anns.append(_ann(len(anns) + 1, image_id, [int(x), int(y), int(w), int(h)], cat=1 + k % len(names)))
            if n_boxes == 1:
                x, y, w, h = anns[-1]["bbox"]
                truth.setdefault(folder, {})[image_id] = ([x, y, x + w, y + h], size)
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
        ann_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root, truth


def _paper_rule(truth, written):
    """The paper's rule written again: single-box images, IoU >= 0.5 of the written box (qwen2 / 1000 *
    side) with the ground truth, Acc@0.5 per subset, AVG the mean of the five."""
    def plain_iou(a, b):
        iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / union if union > 0 else 0.0

    acc = {}
    for folder, items in truth.items():
        right = 0
        for image_id, (gt, (w, h)) in items.items():
            q = written.get((folder, image_id))
            if q is not None:
                right += plain_iou(gt, [q[0] / 1000 * w, q[1] / 1000 * h, q[2] / 1000 * w, q[3] / 1000 * h]) >= 0.5
        acc[folder] = 100 * right / len(items)
    return acc


def test_differential_against_the_paper_rule(tmp_path):
    rng = np.random.default_rng(7)
    root, truth = _write_odinw35(tmp_path, rng)
    short = {"OxfordPets/by-breed": "OP", "PascalVOC": "PV", "WildfireSmoke": "WS", "openPoetryVision/512x512": "OPV",
             "VehiclesOpenImages/416x416": "Vec"}
    texts, written = {}, {}
    for n, (folder, items) in enumerate(sorted(truth.items())):
        for m, (image_id, (gt, (w, h))) in enumerate(sorted(items.items())):
            i = n * 7 + m
            if i % 9 == 8:
                continue  # no prediction: wrong
            jitter = rng.normal(0, 0.25 * (gt[2] - gt[0]), 4)  # some right, some wrong
            box = [gt[0] + jitter[0], gt[1] + jitter[1], gt[2] + jitter[2], gt[3] + jitter[3]]
            q = [round(box[0] / w * 1000), round(box[1] / h * 1000), round(box[2] / w * 1000), round(box[3] / h * 1000)]
            sid = f"{short.get(folder, folder)}:{image_id}"
            if i % 9 == 4:
                texts[sid] = f"In image 2: {_STYLES[0].format(*q)}"  # another image: wrong
                continue
            texts[sid] = _STYLES[i % len(_STYLES)].format(*q)
            written[(folder, image_id)] = q
    want = _paper_rule(truth, written)
    assert sum(0 < v < 100 for v in want.values()) >= 5  # right and wrong answers in most subsets
    res = score(root, texts, Space.QWEN2)
    for folder, value in want.items():
        assert res["tasks"][short.get(folder, folder)] == round(value, 2), folder
    assert res["counts"]["OP"][1] == len(truth["OxfordPets/by-breed"]) and "OxfordPets/by-species" in res["tasks"]
    assert "boggleBoards/416x416AutoOrient/export" in res["tasks"]  # the val_annotations layout is read
    five = [want[f] for f in short]
    assert res["avg"] == round(sum(five) / 5, 2) and res["averaged"] == ["OP", "PV", "WS", "OPV", "Vec"]
    assert res["avg"] == 42.5  # by hand from the figures: (37.5 + 37.5 + 37.5 + 50 + 50) / 5
    assert res["protocol"]["items"] == sum(len(truth[f]) for f in short)
    every = score(root, texts, Space.QWEN2, subset="all")
    assert every["avg"] == round(sum(want.values()) / len(want), 2) and len(every["averaged"]) == 7


def test_the_paper_rule_on_hand_checked_items(tmp_path):
    # three single-box images of 200 x 100, ground truth [10, 10, 60, 60] (xyxy), written in qwen2:
    # [50, 100, 300, 600] -> [10, 10, 60, 60] (IoU 1); [50, 100, 175, 600] -> [10, 10, 35, 60] (IoU 0.5,
    # counts: >= 0.5); [50, 100, 170, 600] -> [10, 10, 34, 60] (IoU 0.48); PV = 2 of 3 = 66.67
    root = tmp_path / "odinw"
    _subset(root, "PascalVOC", [_ann(i + 1, i, [10, 10, 50, 50]) for i in range(3)], n_images=3)
    preds = {"PV:0": "[50, 100, 300, 600]", "PV:1": "(50,100),(175,600)", "PV:2": '{"bbox_2d": [50, 100, 170, 600]}'}
    assert _paper_rule({"PV": {i: ([10, 10, 60, 60], (200, 100)) for i in range(3)}},
                       {("PV", 0): [50, 100, 300, 600], ("PV", 1): [50, 100, 175, 600], ("PV", 2): [50, 100, 170, 600]}) \
        == {"PV": pytest.approx(200 / 3)}
    res = score(root, preds, Space.QWEN2)
    assert res["tasks"] == {"PV": 66.67} and res["counts"] == {"PV": [2, 3]} and res["avg"] == 66.67


def test_the_mean_is_of_unrounded_accuracies(tmp_path):
    # PV 1 of 1 (100), WS 1 of 3 (33.333...): mean 66.666... shows 66.67; the mean of the shown
    # figures, (100 + 33.33) / 2 = 66.665, would show 66.66
    root = tmp_path / "odinw"
    _subset(root, "PascalVOC", [_ann(1, 0, [0, 0, 100, 100])], n_images=1)
    _subset(root, "WildfireSmoke", [_ann(i + 1, i, [0, 0, 100, 100]) for i in range(3)], n_images=3)
    right = '{"bbox_2d": [0, 0, 100, 100]}'
    res = score(root, {"PV:0": right, "WS:0": right}, Space.PIXELS)
    assert res["tasks"] == {"PV": 100.0, "WS": 33.33} and res["avg"] == 66.67
