import json

from PIL import Image

from migrl.benchmarks.revos import load, score
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
        {"video_id": "vid1", "frames": [0, 1, 2], "question": "short", "bbox_list": [box] * 3},
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
    res = score(path, preds, Space.QWEN2, tmp_path / "frames")
    assert res["counts"] == {"revos": [2, 2]} and res["tasks"]["revos"] == 100.0
    preds["1"] = "(200,0),(400,1000)"  # item 1: IoU 10/30 against [10, 0, 30, 100], a miss
    assert score(path, preds, Space.QWEN2, tmp_path / "frames")["counts"] == {"revos": [1, 2]}


def test_box_on_another_frame_is_wrong(tmp_path):
    path = _bench(tmp_path)
    text = '{"image": 1, "bbox_2d": [10, 10, 50, 50]}'
    assert score(path, {"0": text, "1": '{"image": 3, "bbox_2d": [10, 10, 50, 50]}'}, Space.PIXELS, tmp_path / "frames")["counts"]["revos"] == [1, 2]


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
