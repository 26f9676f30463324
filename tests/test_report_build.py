"""``write_report`` on real files: a world split, eval folders as ``migrl eval`` writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from migrl.boxes import Space, convert, format_answer
from migrl.data.world import write_split
from migrl.images import TINY_SIZING, image_size
from migrl.jsonl import write_json_atomic, write_jsonl_atomic
from migrl.records import Record, data_root, read_records
from migrl.report.build import write_report
from migrl.report.pictures import PREDICTION, TRUTH
from score_helpers import score_records

XSS = "<script>alert(1)</script>"


def right_answer(record: Record, root: Path, extra: str = "") -> str:
    gt = record.target
    size = image_size(root / record.images[gt.image_index])
    box = convert(gt.bbox, gt.space, Space.QWEN25, size, TINY_SIZING)
    return f"<think>found it{extra}</think><answer>{format_answer(box, gt.image_index)}</answer>"


def fake_predictions(records: list[Record], root: Path) -> dict[str, str]:
    """Right, wrong and garbage answers, and one item left unanswered."""
    preds = {}
    for i, r in enumerate(records[1:], 1):
        if i % 3 == 0:
            preds[r.id] = right_answer(r, root)
        elif i % 3 == 1:
            preds[r.id] = f'<answer>{{"image": {r.target.image_index + 1}, "bbox_2d": [0, 0, 3, 3]}}</answer>'
        else:
            preds[r.id] = "no idea ``` [1, 2"
    return preds


def write_eval(folder: Path, records: list[Record], root: Path, preds: dict[str, str]) -> dict:
    """What the eval stage leaves: predictions.jsonl and scores.json."""
    write_jsonl_atomic(folder / "predictions.jsonl", ({"id": k, "text": v} for k, v in preds.items()))
    scores = score_records(records, preds, root, Space.QWEN25, TINY_SIZING)
    scores["record_errors"] = []
    write_json_atomic(folder / "scores.json", scores)
    return scores


@pytest.fixture
def world(tmp_path):
    data = write_split(tmp_path / "world", "test", 2, seed=0)
    records = read_records(data)
    root = data_root(data)
    mixed = write_eval(tmp_path / "eval-mixed", records, root, fake_predictions(records, root))
    right = write_eval(tmp_path / "eval-right", records, root, {r.id: right_answer(r, root) for r in records})
    runs = {"mixed": tmp_path / "eval-mixed", "right": tmp_path / "eval-right"}
    return data, records, runs, {"mixed": mixed, "right": right}


def table_rows(md: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every Markdown table row."""
    rows = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_report_numbers_are_the_scores(world, tmp_path):
    data, records, runs, scores = world
    assert scores["right"]["avg"] == 100.0  # the fake answers really are right
    assert 0 < scores["mixed"]["avg"] < 100 and scores["mixed"]["missing_predictions"] == 1

    md_path, html_path = write_report(runs, data, tmp_path / "report", pictures_per_task=1, coords="qwen25", sizing=TINY_SIZING)
    rows = table_rows(md_path.read_text(encoding="utf-8"))
    for task in scores["mixed"]["tasks"]:
        domain, *cells = rows[task]
        assert domain == ("ID" if task in ("common_object", "diff", "region", "refer_grounding") else "OOD")
        for label, cell in zip(runs, cells):
            hits, total = scores[label]["counts"][task]
            assert cell == f"{scores[label]['tasks'][task]:.2f} ({hits}/{total})"
    for key, name in (("id_avg", "ID avg"), ("ood_avg", "OOD avg"), ("avg", "avg")):
        assert rows[name][1:] == [f"{scores[label][key]:.2f}" for label in runs]
    assert "The paper beside ours" not in md_path.read_text()  # the world is not MIG-Bench
    assert "1 item(s) had no prediction" in html_path.read_text()


def test_one_picture_per_selected_item_with_both_colours(world, tmp_path):
    data, records, runs, _ = world
    out = tmp_path / "report"
    _, html_path = write_report(runs, data, out, pictures_per_task=1, coords="qwen25", sizing=TINY_SIZING)
    pictures = sorted((out / "pictures").glob("*.png"))
    tasks = {r.task for r in records}
    assert len(pictures) == len(tasks)
    html = html_path.read_text()
    for picture in pictures:
        assert f'src="pictures/{picture.name}"' in html
        with Image.open(picture) as im:
            colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
        assert TRUTH in colours and PREDICTION in colours  # the "right" run drew on every item
    assert any(r.id in pictures[0].name for r in records)


def test_html_escapes_model_and_record_text(world, tmp_path):
    data, records, runs, _ = world
    lines = [json.loads(line) for line in data.read_text().splitlines()]
    lines[0]["question"] += " " + XSS
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    preds = runs["right"] / "predictions.jsonl"
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    rows[0]["text"] = rows[0]["text"].replace("found it", "found it " + XSS)
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))

    md_path, html_path = write_report({"<i>run</i>": runs["right"]}, data, tmp_path / "report", coords="qwen25", sizing=TINY_SIZING)
    html = html_path.read_text()
    assert "<script" not in html.lower() and "<i>run" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # the question and the answer
    assert "&lt;i&gt;run&lt;/i&gt;" in html
    md = md_path.read_text()
    outside_code = re.sub(r"```text\n.*?\n```", "", md, flags=re.S)
    assert XSS not in outside_code and "&lt;script&gt;" in outside_code  # the question, escaped


def test_mig_bench_puts_the_paper_beside_ours_and_clears_old_pictures(world, tmp_path):
    data, records, runs, scores = world
    out = tmp_path / "report"
    write_report(runs, data, out, benchmark="mig-bench", pictures_per_task=2, coords="qwen25", sizing=TINY_SIZING)
    assert len(list((out / "pictures").glob("*.png"))) == len(records)
    md_path, _ = write_report(runs, data, out, benchmark="mig-bench", pictures_per_task=1, coords="qwen25", sizing=TINY_SIZING)
    assert len(list((out / "pictures").glob("*.png"))) == len(records) // 2
    md = md_path.read_text()
    comparison = md[md.index("## The paper beside ours") :]
    rows = table_rows(comparison)
    assert rows["paper: Ours"][0] == "63.41" and rows["paper: Ours"][-3:] == ["58.83", "67.07", "53.34"]
    assert rows["paper: Human"][-2:] == ["-", "-"]  # Table 3 has no human row
    assert rows["ours: mixed"][0] == f"{scores['mixed']['tasks']['object_tracking']:.2f}"
    assert rows["ours: right"][-3:] == ["100.00", "100.00", "100.00"]


def test_a_folder_without_scores_says_what_to_pass(world, tmp_path):
    data, *_ = world
    with pytest.raises(FileNotFoundError, match="scores.json"):
        write_report({"x": tmp_path / "nowhere"}, data, tmp_path / "report")


def test_prediction_goes_on_the_image_it_names_or_else_the_target(world):
    from migrl.report.pictures import load_images, place_prediction

    data, records, _, _ = world
    record = next(r for r in records if len(r.images) >= 2)
    root = data_root(data)
    images = load_images(record, root)
    target = record.target.image_index
    other = 1 - target if target < 2 else 0
    right = right_answer(record, root)
    bare = place_prediction("a", right.replace(f'"image": {target + 1}, ', ""), record, images, Space.QWEN25, TINY_SIZING)
    assert bare.image_index == target and bare.iou > 0.9
    moved = right.replace(f'"image": {target + 1}', f'"image": {other + 1}')
    elsewhere = place_prediction("a", moved, record, images, Space.QWEN25, TINY_SIZING)
    assert elsewhere.image_index == other and elsewhere.iou == 0.0 and elsewhere.bbox is not None
    far = right.replace(f'"image": {target + 1}', '"image": 9')
    beyond = place_prediction("a", far, record, images, Space.QWEN25, TINY_SIZING)
    assert beyond.bbox is None and "names image 9" in beyond.note


def test_a_box_that_cannot_be_seen_says_why(world):
    from migrl.report.pictures import load_images, place_prediction

    data, records, _, _ = world
    record = next(r for r in records if len(r.images) >= 2)
    images = load_images(record, data_root(data))
    target = record.target.image_index
    other = 1 - target if target < 2 else 0
    w, h = images[other].size
    off = f'{{"image": {other + 1}, "bbox_2d": [{w * 3}, {h * 3}, {w * 4}, {h * 4}]}}'
    pred = place_prediction("a", off, record, images, Space.PIXELS, TINY_SIZING)
    assert pred.iou == 0.0 and f"box on image {other + 1}, the object is in image {target + 1}" in pred.note
    assert f"box outside image {other + 1} ({w}x{h} px)" in pred.verdict()
    inverted = f'{{"image": {target + 1}, "bbox_2d": [20, 20, 10, 10]}}'
    assert "empty or inverted box" in place_prediction("a", inverted, record, images, Space.PIXELS, TINY_SIZING).note
