import json
import os
import signal
import subprocess
import sys
import time

import pytest

from asks import command, counting_asks, read_asks
from migrl.boxes import Space, format_answer
from migrl.data.world import ID_TASKS, write_split
from migrl.images import TINY_SIZING, image_size, resolve_image_path
from migrl.jsonl import AppendLog, read_jsonl
from migrl.records import data_root, read_records
from migrl.rewards import target_in_model_space
from migrl.stages.reject import RejectConfig, reject, verdict

TARGET = {"image_index": 1, "bbox": [10.0, 10.0, 50.0, 50.0]}
RIGHT = '<think>It is in image 2.</think><answer>{"image": 2, "bbox_2d": [11, 10, 50, 49]}</answer>'
WRONG_IMAGE = '<think>.</think><answer>{"image": 1, "bbox_2d": [11, 10, 50, 49]}</answer>'
WRONG_BOX = '<think>.</think><answer>{"image": 2, "bbox_2d": [60, 60, 90, 90]}</answer>'


def test_verdict_drops_all_right_and_all_wrong_groups():
    assert verdict([RIGHT, RIGHT], TARGET) == "all_right"
    assert verdict([WRONG_IMAGE, WRONG_BOX, "no box"], TARGET) == "all_wrong"
    assert verdict([RIGHT, WRONG_BOX], TARGET) == "kept"


def gold_response(record, root):
    sizes = [image_size(resolve_image_path(p, root)) for p in record.images]
    target = target_in_model_space(record, sizes, Space.QWEN25, TINY_SIZING)
    return f"<think>.</think><answer>{format_answer(target['bbox'], target['image_index'])}</answer>"


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("rlpool") / "world", "train", 3, seed=5, tasks=ID_TASKS)


def test_reject_keeps_only_mixed_items_and_counts_per_task(pool, base_model, tmp_path):
    """Samples already in the log are not generated again: plant gold, wrong and mixed answers."""
    records = read_records(pool)
    log = AppendLog(tmp_path / "out" / "samples.jsonl")
    plan = {}
    for i, r in enumerate(records):
        gold = gold_response(r, data_root(pool))
        plan[r.id] = ["all_right", "all_wrong", "kept"][i % 3]
        samples = {"all_right": [gold, gold], "all_wrong": ["I cannot tell.", "none"], "kept": [gold, "none"]}[plan[r.id]]
        log.append([{"id": r.id, "samples": samples}])
    model, processor = base_model
    with counting_asks() as asked:
        stats = reject(RejectConfig(data=str(pool), out=str(tmp_path / "out"), k=2), model=model, processor=processor)
    assert asked == []  # every item was in the log: the model is asked for nothing
    assert stats["asked"] == len(records) == stats["kept"] + stats["all_right"] + stats["all_wrong"]
    assert stats["kept"] == sum(v == "kept" for v in plan.values())
    for task in ID_TASKS:
        per = stats["tasks"][task]
        assert per["asked"] == 3 and per["kept"] + per["all_right"] + per["all_wrong"] == 3
    kept = read_jsonl(tmp_path / "out" / "rl.jsonl")
    assert {r["id"] for r in kept} == {i for i, v in plan.items() if v == "kept"}
    assert all(os.path.isabs(p) for r in kept for p in r["images"])


@pytest.mark.slow
def test_reject_resumes_after_kill_9(pool, tiny_base, tmp_path):
    cmd = [sys.executable, "-m", "migrl.cli", "reject", "--model", str(tiny_base), "--data", str(pool), "--k", "2", "--temperature", "0",
           "--batch-size", "2", "--max-new-tokens", "40"]
    subprocess.run(cmd + ["--out", str(tmp_path / "full")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = out / "samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not samples.exists() or samples.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= samples.read_text().count("\n") < 12, "the kill must land mid-run"
    before, asked = {r["id"] for r in read_jsonl(samples)}, tmp_path / "asked.txt"
    subprocess.run(command(asked) + cmd[3:] + ["--out", str(out)], check=True, capture_output=True)
    # The rerun asked once for each item the killed run had not logged, and for no other.
    assert read_asks(asked) == [r.id for r in read_records(pool) if r.id not in before]
    rows = read_jsonl(samples)
    assert len(rows) == len({r["id"] for r in rows}) == 12
    full = {r["id"]: r["samples"] for r in read_jsonl(tmp_path / "full" / "samples.jsonl")}
    assert {r["id"]: r["samples"] for r in rows} == full
    assert json.loads((out / "stats.json").read_text()) == json.loads((tmp_path / "full" / "stats.json").read_text())
