"""migrl score: the paper's subset by default, labelled with its protocol and denominator; every problem
named in the file it belongs to, and items kept in the denominator never called "skipped"."""

from __future__ import annotations

import json

from PIL import Image

from migrl.bad_records import REPORT_NAME
from migrl.cli import main
from migrl.jsonl import read_jsonl


def _lisa(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "a.jpg")
    items = [{"image_path": "a.jpg", "instruction": "the dog", "boxes": [[20, 10, 100, 50]]},
             {"image_path": "a.jpg", "instruction": "the cat", "boxes": [[20, 10, 100, 50]]},
             {"image_path": "a.jpg", "instruction": "no box here"}]  # the official loop scores it 0
    path = tmp_path / "lisa_val.json"
    path.write_text(json.dumps(items))
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "0", "text": "(100,100),(500,500)"}) + "\n{broken\n")
    return path, preds


def test_problems_are_named_in_their_own_file_and_kept_items_are_not_skipped(tmp_path, capsys):
    data, preds = _lisa(tmp_path)
    args = ["score", "--benchmark", "lisa", "--data", str(data), "--predictions", str(preds), "--coords", "qwen2"]
    assert main(args) == 3  # the broken prediction line is the user's to fix
    err = capsys.readouterr().err
    assert not any("skipped" in line and str(data) in line for line in err.splitlines())  # kept items are not skipped
    assert "scored 0, kept in the denominator" in err and f"{data}" in err.split("scored 0")[1]
    assert "prediction scored as empty" in err and "preds.jsonl:2" in err
    assert "lisa: avg 33.33 [official:" in err and "over 3 items, 1 scored 0 for bad input" in err
    assert main(args + ["--out", str(tmp_path / "s")]) == 3
    rows = read_jsonl(tmp_path / "s" / REPORT_NAME)
    by_file = {(r["file"], r["field"]) for r in rows}
    assert (str(data), "boxes") in by_file and (str(preds), "text") in by_file  # not all "images" of the predictions
    assert json.loads((tmp_path / "s" / "scores.json").read_text())["protocol"]["zero_for_bad_input"] == 1


def test_the_paper_subset_is_the_default_and_others_are_asked_for(tmp_path, capsys):
    data, preds = _lisa(tmp_path)
    base = ["score", "--benchmark", "lisa", "--data", str(data), "--predictions", str(preds), "--coords", "qwen2"]
    assert main(base + ["--subset", "all"]) == 2  # LISA has one set: refused, not ignored
    assert "--subset 'all': lisa has paper" in capsys.readouterr().err
    assert main(["score", "--benchmark", "mig-bench", "--data", str(data), "--predictions", str(preds),
                 "--coords", "qwen2", "--subset", "all"]) == 2
