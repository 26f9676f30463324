import json

from PIL import Image

from migrl.benchmarks.odinw import load, score
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
