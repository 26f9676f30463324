import json

from PIL import Image

from migrl.benchmarks import get
from migrl.benchmarks.revos import load

score = get("revos").score_file  # load, then score what was loaded
from migrl.boxes import Space


def _bench(tmp_path):
    video = tmp_path / "frames" / "vid1"
    video.mkdir(parents=True)
    for n in (1, 2, 3, 10, 20, 30, 100):
        Image.new("RGB", (100, 100)).save(video / f"{n:d}.jpg")
    (video / "notes.txt").write_text("ignored")
    box = [10.9, 10.9, 50.0, 50.0]
    items = [
        {"video_id": "vid1", "frames": [0, 1, 2, 3, 4, 6], "question": "the dog", "bbox_list": [box] * 6},
        {"video_id": "vid1", "frames": [0, 1, 2, 3, 4, 6], "question": "the dog", "bbox_list": [box] * 6},
        {"video_id": "vid1", "frames": [0, 1], "question": "short", "bbox_list": [box] * 3},
        {"video_id": "missing", "frames": [0, 1, 2, 3, 4, 5], "question": "q", "bbox_list": [box] * 6},
    ]
    path = tmp_path / "ReVOS_eval.json"
    path.write_text(json.dumps(items))
    return path


def test_load_sorts_frames_numerically(tmp_path):
    report = load(_bench(tmp_path), tmp_path / "frames")
    assert [r.id for r in report.records] == ["0", "1"]
    assert report.records[0].images == ("vid1/1.jpg", "vid1/2.jpg", "vid1/3.jpg", "vid1/10.jpg", "vid1/20.jpg", "vid1/100.jpg")
    assert report.records[0].target.image_index == 2
    assert any("item 2" in e and "'frames'" in e for e in report.errors)
    assert any("item 3" in e and "'video_id'" in e for e in report.errors)


def test_score_truncates_ground_truth(tmp_path):
    path = _bench(tmp_path)
    items = json.loads(path.read_text())
    items[1]["bbox_list"] = [[10.9, 0, 30.9, 100]] * 6
    path.write_text(json.dumps(items))
    # item 0: GT int() -> [10, 10, 50, 50] = (100,100),(500,500) exactly; a hit.
    # item 1: GT int() -> [10, 0, 30, 100]; pred x 10..21: IoU 11/20 = 0.55, a hit only because of the
    # truncation (with 10.9..30.9 it is 10.1/20.9 = 0.48).
    preds = {"0": "(100,100),(500,500)", "1": "<think>third image</think>(100,0),(210,1000)"}
    # items 2 (two frames: no third image) and 3 (no video folder) are scored 0 by the official loop
    res = score(path, preds, Space.QWEN2, tmp_path / "frames")
    assert res["counts"] == {"revos": [2, 4]} and res["tasks"]["revos"] == 50.0
    assert [(z["record"], z["field"]) for z in res["zero_for_bad_input_items"]] == [("2", "frames"), ("3", "video_id")]
    preds["1"] = "(200,0),(400,1000)"  # item 1: IoU 10/30 against [10, 0, 30, 100], a miss
    assert score(path, preds, Space.QWEN2, tmp_path / "frames")["counts"] == {"revos": [1, 4]}


def test_box_on_another_frame_is_wrong(tmp_path):
    path = _bench(tmp_path)
    text = '{"image": 1, "bbox_2d": [10, 10, 50, 50]}'
    assert score(path, {"0": text, "1": '{"image": 3, "bbox_2d": [10, 10, 50, 50]}'}, Space.PIXELS, tmp_path / "frames")["counts"]["revos"] == [1, 4]


def test_unnumbered_frame_file_names_the_video(tmp_path):
    path = _bench(tmp_path)
    other = tmp_path / "frames" / "vid2"
    other.mkdir()
    for name in ("0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg", "cover.jpg"):
        Image.new("RGB", (10, 10)).save(other / name)
    items = json.loads(path.read_text())
    items.append({**items[0], "video_id": "vid2"})
    path.write_text(json.dumps(items))
    report = load(path, tmp_path / "frames")
    assert [r.id for r in report.records] == ["0", "1"]
    err = [e for e in report.errors if "item 4" in e]
    assert len(err) == 1 and "ReVOS_eval.json" in err[0] and "'video_id'" in err[0] and "cover.jpg" in err[0]
    # the official sort key raises on cover.jpg: every item of vid2 is scored 0, in the denominator
    res = score(path, {"4": "(0,0),(1000,1000)"}, Space.QWEN2, tmp_path / "frames")
    assert res["counts"]["revos"] == [0, 5] and res["zero_for_bad_input_items"][-1]["record"] == "4"
    assert "cover.jpg" in res["zero_for_bad_input_items"][-1]["reason"]


# ---------------------------------------------------------------------------------------------
# Differential test: UniVG-R1 revos_evaluation eval.py + merge.py re-implemented by hand below, on a file in
# the released format, with the output styles models write and the items the official loop fails on.

def _hand_eval(items, base, responses):
    """``evaluate_model``'s loop (every frame loaded, as process_vision_info does); any exception appends 0."""
    import os
    import re

    ious = []
    for i, item in enumerate(items):
        frames = item["frames"]  # read before the try: a missing one stops the official script
        try:
            video_dir = base / item["video_id"]
            names = [f for f in os.listdir(video_dir) if f.endswith((".jpg", ".png"))]
            names.sort(key=lambda x: int(re.findall(r"\d+", x)[0]))
            paths = [video_dir / names[k] for k in frames]
            for p in paths:
                Image.open(p).load()
            w, h = Image.open(paths[2]).size
            item["question"]
            b = [int(v) for v in item["bbox_list"][2]]
            gt = [b[0] / w, b[1] / h, b[2] / w, b[3] / h]
            m = re.findall(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", responses.get(str(i), ""))
            x1, y1, x2, y2 = map(int, m[0])
            p = [x1 / 1000, y1 / 1000, x2 / 1000, y2 / 1000]
            inter = max(0, min(p[2], gt[2]) - max(p[0], gt[0])) * max(0, min(p[3], gt[3]) - max(p[1], gt[1]))
            ious.append(inter / float((p[2] - p[0]) * (p[3] - p[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter + 1e-6))
        except Exception:
            ious.append(0)
    return round(100 * sum(iou >= 0.5 for iou in ious) / len(ious), 2)


def _videos(tmp_path):
    base = tmp_path / "frames"
    for video, names in {"v": [f"{n:05d}.jpg" for n in range(8)], "w": ["frame_2.png", "frame_10.png", "frame_1.png"],
                         "bad": ["1.jpg", "2.jpg", "3.jpg", "poster.jpg"]}.items():
        (base / video).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (100, 100)).save(base / video / name)
    Image.new("RGB", (200, 100)).save(base / "v" / "00007.jpg")  # the last frame is wider
    (base / "v" / "00005.jpg").write_bytes(b"not a picture")
    return base


CASES = [
    # (item, response); GT [10, 10, 50, 50] of a 100x100 frame is (100,100),(500,500)
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[0, 0, 1, 1]] * 2 + [[10.9, 10.2, 50.7, 50.1]] * 4},
     "<think>third</think><answer>(100,100),(500,500)</answer>"),
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, '{"bbox_2d": [10, 10, 50, 50]}'),
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, "Image 3: ( 100, 100 ), ( 520, 480 )"),
    ({"video_id": "w", "frames": [0, 1, 2], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 3}, "(100,100),(500,500)"),  # 3 frames
    ({"video_id": "v", "frames": [0, 1, -1, 2, 3, 4], "question": "q", "bbox_list": [[20, 10, 100, 50]] * 6},
     "(100,100),(500,500)"),  # -1: the last frame, 200 wide: GT (100,100),(500,500)
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 5], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, "(100,100),(500,500)"),  # frame 5 unreadable
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 8], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, "(100,100),(500,500)"),  # past the video
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 2}, "(100,100),(500,500)"),  # no 3rd box
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[10, 10, None, 50]] * 6}, "(100,100),(500,500)"),
    ({"video_id": "bad", "frames": [0, 1, 2, 0, 1, 2], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, "(100,100),(500,500)"),  # poster.jpg
    ({"video_id": "none", "frames": [0, 1, 2, 3, 4, 5], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, "(100,100),(500,500)"),
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "bbox_list": [[10, 10, 50, 50]] * 6}, "(100,100),(500,500)"),  # no question
    ({"video_id": "v", "frames": [0, 1, 2, 3, 4, 6], "question": "q", "bbox_list": [[10, 10, 50, 50]] * 6}, None),  # no answer
]


def test_differential_against_the_hand_rule(tmp_path):
    base = _videos(tmp_path)
    path = tmp_path / "ReVOS_eval.json"
    path.write_text(json.dumps([item for item, _ in CASES]))
    responses = {str(i): text for i, (_, text) in enumerate(CASES) if text is not None}
    res = score(path, responses, Space.QWEN2, base)
    expected = _hand_eval([item for item, _ in CASES], base, responses)
    assert res["tasks"] == {"revos": expected} and res["avg"] == expected
    # hand-checked: items 0 (int() makes the GT (100,100),(500,500)), 2 (IoU 0.92), 3 (frames 1, 2, 10 by number)
    # and 4 (the last, wider frame) are hits: 4 of 13
    assert res["counts"] == {"revos": [4, 13]} and expected == round(100 * 4 / 13, 2)
    zeros = [(z["record"], z["field"]) for z in res["zero_for_bad_input_items"]]
    assert zeros == [("6", "frames"), ("7", "bbox_list"), ("8", "bbox_list[2]"), ("9", "video_id"), ("10", "video_id"),
                     ("11", "question")]
    assert len(res["errors"]) == 1 and "00005.jpg" in res["errors"][0]  # unreadable frame: in errors, scored 0
    assert len(res["warnings"]) == 1 and "item 4" in res["warnings"][0]
    assert res["protocol"]["items"] == 13 and res["protocol"]["zero_for_bad_input"] == 7
    assert res["missing_predictions"] == 1
