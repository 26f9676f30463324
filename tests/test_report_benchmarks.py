"""``write_report`` on benchmark runs: the official annotation file as ``--data``, the benchmark's ids,
MIG-Bench pictures showing the box the official rule scored, labelled MC-Bench and rule-only figures."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from migrl.benchmarks import get
from migrl.jsonl import write_json_atomic, write_jsonl_atomic
from migrl.report.build import write_report
from migrl.report.pictures import PREDICTION


def _run(folder, preds, scores):
    write_jsonl_atomic(folder / "predictions.jsonl", ({"id": k, "text": v} for k, v in preds.items()))
    write_json_atomic(folder / "scores.json", scores)
    return folder


def _mig_bench(tmp_path):
    (tmp_path / "bench" / "im").mkdir(parents=True)
    for name, size in (("a.png", (200, 100)), ("b.png", (300, 600))):
        Image.new("RGB", size, (90, 90, 90)).save(tmp_path / "bench" / "im" / name)
    records = [
        {"task": "common_object", "images": ["im/a.png", "im/b.png"], "answer": [0.1, 0.2, 0.5, 0.6],
         "question": "These images share one object in common. Locate this object in the 2th image. ",
         "additional_info": "", "need_format": True},
        {"task": "region", "images": ["im/a.png", "im/b.png"], "answer": [0.5, 0.5, 1.0, 1.0],
         "question": "Please locate the 1th region picture in the source image. ", "additional_info": "", "need_format": True},
    ]
    data = tmp_path / "bench" / "MIG_data.json"
    data.write_text(json.dumps(records))
    return data


def _score(*args):
    out = subprocess.run([sys.executable, "-m", "migrl.cli", "score", *map(str, args)], capture_output=True, text=True)
    return json.loads(out.stdout)


def test_mig_bench_report_reads_the_official_file_and_draws_the_scored_box(tmp_path):
    data = _mig_bench(tmp_path)
    # normalised floats: the official rule keeps them as they are (migrl's parser would read Qwen2 ints);
    # the second names image 2 although the target is image 1: the official rule never checks the image.
    preds = {"0": "<think>(0,0),(999,999)</think><answer>[0.1, 0.2, 0.5, 0.6]</answer>",
             "1": '{"image": 2, "bbox_2d": [500, 500, 1000, 1000]}'}
    pred_file = tmp_path / "p.jsonl"
    pred_file.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in preds.items()))
    scores = _score("--benchmark", "mig-bench", "--data", data, "--predictions", pred_file, "--coords", "qwen2")
    assert scores["counts"] == {"common_object": [1, 1], "region": [1, 1]}
    run = _run(tmp_path / "eval", preds, scores)
    md, page = write_report({"qwen2": run}, data, tmp_path / "report", benchmark="mig-bench", coords="qwen2")
    text = md.read_text()
    assert "IoU 1.00 (hit)" in text and "(miss)" not in text  # the pictures agree with the official scores
    assert "| common_object | ID | 100.00 (1/1) |" in text and "not valid JSON" not in text
    pictures = sorted((tmp_path / "report" / "pictures").glob("*.png"))
    assert [p.name for p in pictures] == ["000-0.png", "001-1.png"]
    with Image.open(pictures[0]) as im:
        assert PREDICTION in {c for _, c in im.convert("RGB").getcolors(1 << 20)}


def test_missing_images_say_where_they_were_looked_for(tmp_path):
    data = _mig_bench(tmp_path)
    run = _run(tmp_path / "eval", {"0": "(100,200),(500,600)"}, {"tasks": {"common_object": 100.0}})
    md, _ = write_report({"r": run}, data, tmp_path / "report", benchmark="mig-bench", coords="qwen2",
                         image_root=tmp_path / "nowhere")
    assert "pictures: 2 image(s) not found or unreadable" in md.read_text() and "--image-root" in md.read_text()


def _mc_bench(tmp_path):
    images, descriptions = [], []
    for pid in (0, 1):
        ids = [2 * pid, 2 * pid + 1]
        for k, i in enumerate(ids):
            Image.new("RGB", (100, 100)).save(tmp_path / f"{i}.png")
            images.append({"id": i, "text_id": pid, "inter_img_id": k, "file_name": f"{i}.png", "height": 100, "width": 100})
        descriptions.append({"id": pid, "images_id": ids, "text": "the cat", "text_style": "Referring"})
    anns = [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
            {"id": 1, "image_id": 3, "category_id": 1, "bbox": [20, 20, 40, 40], "area": 1600, "iscrowd": 0}]
    data = tmp_path / "mc-bench_v0.2_val.json"
    data.write_text(json.dumps({"images": images, "descriptions": descriptions, "annotations": anns,
                                "categories": [{"id": 1, "name": "group 1"}, {"id": 2, "name": "group 2"}]}))
    return data


def test_mc_bench_report_labels_the_bug_fixed_ap50(tmp_path):
    from migrl.boxes import Space

    score = get("mc-bench").score_file

    data = _mc_bench(tmp_path)
    preds = {"0": '{"image": 1, "bbox_2d": [10, 10, 50, 50]}', "1": '{"image": 2, "bbox_2d": [20, 20, 60, 60]}'}
    scores = score(data, preds, Space.PIXELS, tmp_path)
    assert scores["ap50"] < scores["ap50_bugs_fixed"] == 100.0  # annotation id 0 never matches officially
    md, _ = write_report({"m": _run(tmp_path / "eval", preds, scores)}, data, tmp_path / "report",
                         benchmark="mc-bench", coords="pixels")
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    assert header.endswith("| AP50 | AP50, 2 bugs fixed |")
    ours = next(line for line in text.splitlines() if line.startswith("| ours: m |"))
    assert ours.endswith(f"| {scores['ap50']:.2f} | 100.00 |") and "the official eval_mc_bench.py figure" in text
    assert "AP50 per prompt style" in text and "Protocol -- m: paper subset" in text and len(list((tmp_path / "report" / "pictures").glob("*.png"))) == 2


def test_rule_only_figures_are_labelled(tmp_path):
    items = [{"idx": f"val_Counting_{i}", "question": "q", "choices": ["1", "2"], "answer": "(A)", "image_1": "x.png"}
             for i in (1, 2)]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    data = tmp_path / "blink_val.json"
    data.write_text(json.dumps(items))
    score = get("blink").score_file
    preds = {"val_Counting_1": "(A)", "val_Counting_2": "I think A"}
    scores = score(data, preds)
    md, _ = write_report({"b": _run(tmp_path / "eval", preds, scores)}, data, tmp_path / "report", benchmark="blink", coords="qwen2")
    text = md.read_text()
    assert "| ours: b (rule-only) |" in text and "b: rule-only figure: 1 answer(s)" in text


def test_mc_bench_pictures_draw_every_box_and_no_id_ood_rows(tmp_path):
    from migrl.boxes import Space

    score = get("mc-bench").score_file

    data = _mc_bench(tmp_path)
    preds = {"0": '[{"image": 1, "bbox_2d": [10, 10, 50, 50]}, {"image": 2, "bbox_2d": [5, 5, 30, 30]}, {"bbox_2d": [1, 1, 9, 9]}]'}
    scores = score(data, preds, Space.PIXELS, tmp_path)
    md, _ = write_report({"m": _run(tmp_path / "eval", preds, scores)}, data, tmp_path / "report",
                         benchmark="mc-bench", coords="pixels")
    text = md.read_text()
    assert "2 box(es) drawn, 1 name no image of the item and are not scored" in text
    assert "| ID avg |" not in text and "| avg |" in text  # MC-Bench has no in-/out-of-domain split
    with Image.open(tmp_path / "report" / "pictures" / "000-0.png") as im:
        im = im.convert("RGB")
        half = im.width // 2  # the second image's panel holds a red box too
        right = im.crop((half, 0, im.width, im.height))
        assert PREDICTION in {c for _, c in right.getcolors(1 << 20)}
