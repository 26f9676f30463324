import json
import os
import signal
import subprocess
import sys
import time

import pytest

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
    # A rerun finds everything done and generates nothing.
    again = evaluate(cfg, model, processor)
    assert again["avg"] == scores["avg"] and len(read_jsonl(tmp_path / "ev" / "predictions.jsonl")) == 30


def test_append_log_drops_a_torn_line_and_dedupes(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "1"}\n{"id": "b", "te')
    log = AppendLog(path)
    assert "a" in log and "b" not in log and path.read_text() == '{"id": "a", "text": "1"}\n'
    assert log.append([{"id": "a", "text": "x"}, {"id": "b", "text": "2"}]) == 1
    assert read_jsonl(path) == [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}]


@pytest.mark.slow
def test_eval_resumes_after_kill_9(world_test, tmp_path):
    """A real subprocess killed mid-run; the rerun completes with every item exactly once and the
    same answers as an uninterrupted run (batch size 1: answers do not depend on batch neighbours)."""
    cmd = [sys.executable, "-m", "migrl.cli", "eval", "--data", str(world_test), "--batch-size", "1", "--max-new-tokens", "48"]
    full = tmp_path / "full"
    subprocess.run(cmd + ["--out", str(full)], check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = killed / "predictions.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not preds.exists() or preds.read_text().count("\n") < 8):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = preds.read_text().count("\n")
    assert 8 <= done_before < 30, "the kill must land mid-run"
    subprocess.run(cmd + ["--out", str(killed)], check=True, capture_output=True)
    a = {r["id"]: r["text"] for r in read_jsonl(full / "predictions.jsonl")}
    rows = read_jsonl(preds)
    assert len(rows) == len({r["id"] for r in rows}) == 30
    assert {r["id"]: r["text"] for r in rows} == a
    assert json.loads((killed / "scores.json").read_text())["tasks"] == json.loads((full / "scores.json").read_text())["tasks"]
