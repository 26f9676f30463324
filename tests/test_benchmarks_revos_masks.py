"""ReVOS-grounding items built from ReVOS-format masks (mask_dict.json + meta_expressions), then loaded
and scored by the released-JSON path. The files are made here with pycocotools, as ReVOS ships them."""

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from migrl.benchmarks import get
from migrl.benchmarks.revos import load
from migrl.benchmarks.revos_masks import build, sample_frames
from migrl.boxes import Space
from migrl.cli import main
from migrl.jsonl import read_jsonl

H, W = 60, 80


def rle(box=None):
    """A frame's mask as ReVOS stores it (compressed COCO RLE, counts as text); None: object absent."""
    if box is None:
        return None
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = 1
    r = mask_utils.encode(m)
    return {"size": r["size"], "counts": r["counts"].decode()}


def _revos(tmp_path):
    frames_root = tmp_path / "JPEGImages"
    lengths = {"UVO/vid_a": 8, "UVO/vid_b": 4, "UVO/vid_c": 7}
    for video, n in lengths.items():
        (frames_root / video).mkdir(parents=True)
        for i in range(n):
            if not (video == "UVO/vid_c" and i == 6):  # one frame file missing
                Image.new("RGB", (W, H)).save(frames_root / video / f"{i:05d}.jpg")
    ids = {v: [f"{i:05d}" for i in range(n)] for v, n in lengths.items()}
    # vid_a, 8 frames: sampled 0 1 2 4 5 7; the grounded (third) frame is frame 2.
    masks = {
        "0": [rle((10, 10, 30, 20))] * 8,                                    # expression 0: one object
        "1": [rle((50, 30, 70, 50))] * 8,                                    # expression 1: two objects...
        "2": [rle((5, 40, 15, 55)) if i != 0 else None for i in range(8)],   # ...the second absent from frame 0
        "3": [rle((1, 1, 5, 5)) if i != 2 else None for i in range(8)],      # expression 2: absent from frame 2
        "4": [rle((1, 1, 5, 5))] * 4,
        "5": [rle((1, 1, 5, 5))] * 7,
    }
    videos = {
        "UVO/vid_a": {"frames": ids["UVO/vid_a"], "expressions": {
            "0": {"exp": "the red cup", "obj_id": [0], "anno_id": [0]},
            "1": {"exp": "the two dogs", "obj_id": [1, 2], "anno_id": [1, 2]},
            "2": {"exp": "gone in the third", "obj_id": [3], "anno_id": [3]},
            "10": {"exp": "unknown mask", "obj_id": [9], "anno_id": [99]},
        }},
        "UVO/vid_b": {"frames": ids["UVO/vid_b"], "expressions": {"0": {"exp": "too short", "obj_id": [4], "anno_id": [4]}}},
        "UVO/vid_c": {"frames": ids["UVO/vid_c"], "expressions": {"0": {"exp": "frame file missing", "obj_id": [5], "anno_id": [5]}}},
    }
    exp_file, mask_file = tmp_path / "meta_expressions_valid_.json", tmp_path / "mask_dict.json"
    exp_file.write_text(json.dumps({"videos": videos}))
    mask_file.write_text(json.dumps(masks))
    return exp_file, mask_file, frames_root


def test_items_from_masks_load_and_score_by_the_released_path(tmp_path):
    exp_file, mask_file, frames_root = _revos(tmp_path)
    out = tmp_path / "built" / "revos_from_masks.json"
    summary = build(exp_file, mask_file, frames_root, out)
    assert summary["items"] == 2 and sample_frames(8) == [0, 1, 2, 4, 5, 7]
    items = json.loads(out.read_text())
    one, two = items
    assert one["question"] == "the red cup" and one["frames"] == [0, 1, 2, 4, 5, 7]
    assert one["bbox_list"][2] == [10.0, 10.0, 29.0, 19.0]  # the mask's pixels x 10..29, y 10..19
    assert two["bbox_list"][2] == [5.0, 30.0, 69.0, 54.0]  # the union of both objects' masks
    assert two["bbox_list"][0] == [50.0, 30.0, 69.0, 49.0]  # frame 0: only the first object
    bad = {r["record"]: (r["field"], r["reason"]) for r in read_jsonl(out.parent / "bad_records.jsonl")}
    assert set(bad) == {"UVO/vid_a/2", "UVO/vid_a/10", "UVO/vid_b/0", "UVO/vid_c/0"}
    assert "no mask on the grounded frame" in bad["UVO/vid_a/2"][1]
    assert "[99] not in mask_dict.json" in bad["UVO/vid_a/10"][1]
    assert "4 frames, 6 needed" in bad["UVO/vid_b/0"][1]
    assert "00006" in bad["UVO/vid_c/0"][1]

    report = load(out, frames_root)
    assert not report.errors and [r.target.image_index for r in report.records] == [2, 2]
    assert report.records[0].images[2] == "UVO/vid_a/00002.jpg"
    # A right answer in Qwen2 [0, 1000) on the 80x60 frame: (125,167),(375,333) is x 10..30, y 10..20.
    preds = {"0": "(125,167),(375,333)", "1": "(0,0),(100,100)"}
    res = get("revos").score_file(out, preds, Space.QWEN2, frames_root)
    assert res["counts"] == {"revos": [1, 2]}


def test_command_writes_the_items_and_reports_the_skipped(tmp_path, capsys):
    exp_file, mask_file, frames_root = _revos(tmp_path)
    out = tmp_path / "items.json"
    code = main(["revos-from-masks", "--expressions", str(exp_file), "--masks", str(mask_file),
                 "--frames", str(frames_root), "--out", str(out)])
    assert code == 3  # finished, some expressions skipped
    assert json.loads(capsys.readouterr().out)["items"] == 2 and len(json.loads(out.read_text())) == 2
    # and the shipped tiny base evaluates on them through the benchmark path
    assert main(["eval", "--benchmark", "revos", "--data", str(out), "--image-root", str(frames_root),
                 "--out", str(tmp_path / "eval")]) == 0
    assert len(read_jsonl(tmp_path / "eval" / "predictions.jsonl")) == 2


def test_integer_frame_ids_and_uncompressed_rle(tmp_path):
    """Some exports give frame ids as numbers and masks as uncompressed RLE (counts a list)."""
    frames_root = tmp_path / "frames"
    (frames_root / "v").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (W, H)).save(frames_root / "v" / f"{i:05d}.jpg")
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[20:30, 40:60] = 1
    flat = m.flatten(order="F")  # COCO RLE runs go down the columns, starting with a run of zeros
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    uncompressed = {"size": [H, W], "counts": counts}
    exp_file, mask_file = tmp_path / "meta.json", tmp_path / "masks.json"
    exp_file.write_text(json.dumps({"videos": {"v": {"frames": list(range(6)), "expressions": {
        "0": {"exp": "the box", "obj_id": [0], "anno_id": [7]},
        "1": {"exp": "not a mask", "obj_id": [1], "anno_id": [8]}}}}}))
    mask_file.write_text(json.dumps({"7": [uncompressed] * 6, "8": [[1, 2, 3]] * 6}))
    out = tmp_path / "out" / "items.json"
    assert build(exp_file, mask_file, frames_root, out)["items"] == 1
    (item,) = json.loads(out.read_text())
    assert item["frames"] == [0, 1, 2, 3, 4, 5] and item["bbox_list"][2] == [40.0, 20.0, 59.0, 29.0]
    (row,) = read_jsonl(out.parent / "bad_records.jsonl")
    assert row["record"] == "v/1" and "unreadable" in row["reason"]
