import json

from asks import counting_asks
from migrl.jsonl import AppendLog, read_jsonl
from migrl.stages.evaluate import EvalConfig, evaluate


def test_eval_writes_predictions_and_scores(world_test, base_model, tmp_path):
    model, processor = base_model
    cfg = EvalConfig(data=str(world_test), out=str(tmp_path / "ev"), batch_size=8, max_new_tokens=64)
    scores = evaluate(cfg, model, processor)
    rows = read_jsonl(tmp_path / "ev" / "predictions.jsonl")
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 30
    assert len(scores["tasks"]) == 10 and 0 <= scores["avg"] <= 100
    assert json.loads((tmp_path / "ev" / "scores.json").read_text())["avg"] == scores["avg"]
    # A rerun finds everything done and asks the model for nothing.
    with counting_asks() as asked:
        again = evaluate(cfg, model, processor)
    assert asked == [] and again["avg"] == scores["avg"] and len(read_jsonl(tmp_path / "ev" / "predictions.jsonl")) == 30
    # What a kill leaves (rows missing here and there, a torn last line): the rerun asks once for each
    # missing item, for no other, and the log is whole again.
    path = tmp_path / "ev" / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    missing = [json.loads(lines[i])["id"] for i in (3, 17, 29)]
    path.write_text("".join(line for i, line in enumerate(lines) if i not in (3, 17, 29)) + lines[29][:20])
    with counting_asks() as asked:
        evaluate(cfg, model, processor)
    order = [json.loads(line)["id"] for line in world_test.read_text().splitlines()]
    assert asked == sorted(missing, key=order.index)
    rows = read_jsonl(path)
    assert len(rows) == len({r["id"] for r in rows}) == 30


def test_eval_runs_a_benchmark_file_and_scores_it_by_its_protocol(base_model, tmp_path):
    """A MIG-Bench-format file with images of different sizes: the model's qwen25 boxes are scored
    by the official rule after conversion through each target image's own size."""
    from PIL import Image

    from migrl.images import ImageSizing
    from migrl.jsonl import write_jsonl_atomic

    root = tmp_path / "bench"
    (root / "MIG-Bench" / "images").mkdir(parents=True)
    data = []
    for i, (task, size) in enumerate([("common_object", (120, 100)), ("region", (96, 128)), ("multi_view", (140, 105))]):
        paths = []
        for j in range(2):
            rel = f"./MIG-Bench/images/{i}_{j}.png"
            Image.new("RGB", size, (40 * j, 90, 160)).save(root / rel)
            paths.append(rel)
        data.append({"task": task, "images": paths, "question": "Locate the red circle in the 1th image.",
                     "answer": [0.1, 0.2, 0.5, 0.6], "additional_info": "", "need_format": True})
    (root / "MIG_data.json").write_text(json.dumps(data))
    model, processor = base_model
    cfg = EvalConfig(data=str(root / "MIG_data.json"), out=str(tmp_path / "ev"), benchmark="mig-bench",
                     image_root=str(root), max_new_tokens=24)
    scores = evaluate(cfg, model, processor)
    preds = {r["id"]: r["text"] for r in read_jsonl(tmp_path / "ev" / "predictions.jsonl")}
    assert set(preds) == {"0", "1", "2"} and set(scores["tasks"]) == {"common_object", "region", "multi_view"}
    # Planted answers, scored on a rerun (which asks nothing): items 0 and 1 give the answer in pixels of
    # their own resized picture, right; item 2 in pixels of the original 140x105 picture, which the rule
    # reads as the resized 112x84 one: IoU 0.47, wrong.
    sizing = ImageSizing.from_processor(processor)
    planted = {}
    for i, (w, h) in enumerate([sizing.resized(120, 100), sizing.resized(96, 128), (140, 105)]):
        box = [round(v) for v in (0.1 * w, 0.2 * h, 0.5 * w, 0.6 * h)]
        planted[str(i)] = f'<think>t</think><answer>{{"bbox_2d": {box}}}</answer>'
    write_jsonl_atomic(tmp_path / "ev" / "predictions.jsonl", [{"id": k, "text": v} for k, v in planted.items()])
    with counting_asks() as asked:
        scores = evaluate(cfg, model, processor)
    assert asked == [] and scores["tasks"] == {"common_object": 100.0, "region": 100.0, "multi_view": 0.0}


def test_append_log_drops_a_torn_line_and_dedupes(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "1"}\n{"id": "b", "te')
    log = AppendLog(path)
    assert "a" in log and "b" not in log and path.read_text() == '{"id": "a", "text": "1"}\n'
    assert log.append([{"id": "a", "text": "x"}, {"id": "b", "text": "2"}]) == 1
    assert read_jsonl(path) == [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}]


# kill -9 at several points of a real `migrl eval`: tests/test_crash_safety.py


def test_records_are_scored_at_iou_of_at_least_one_half(tmp_path):
    """Acc@0.5 of `migrl eval` on a records file: IoU exactly 0.5 is a hit, 0.45 a miss."""
    from PIL import Image

    from migrl.records import GroundTruthBox, Record
    from score_helpers import score_records

    Image.new("RGB", (200, 20)).save(tmp_path / "a.png")
    truth = (GroundTruthBox(0, (0.0, 0.0, 100.0, 10.0)),)
    records = [Record(id=str(i), task=task, images=("a.png",), question="q", boxes=truth)
               for i, task in enumerate(["at_half", "above", "below"])]
    answers = {str(i): f'<think>t</think><answer>{{"bbox_2d": [0, 0, {x2}, 10]}}</answer>' for i, x2 in enumerate((50, 55, 45))}
    scores = score_records(records, answers, tmp_path, "pixels")
    assert scores["tasks"] == {"at_half": 100.0, "above": 100.0, "below": 0.0}
