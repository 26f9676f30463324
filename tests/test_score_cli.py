"""migrl score: the paper's subset by default, labelled with its protocol and denominator; every problem
named in the file it belongs to, and items kept in the denominator never called "skipped"."""

from __future__ import annotations

import json
import re

import pytest
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


def _one_of_each(name, tmp_path):
    """A small file of each benchmark in its official format (the benchmark tests' own builders)."""
    if name == "mc-bench":
        from test_benchmarks_mc_bench import _ann, _write

        return _write(tmp_path, [(0, "the cat"), (1, "the dog")], [_ann(1, 0, [10, 10, 40, 40]), _ann(2, 2, [5, 5, 20, 20])])
    if name in ("odinw", "mmiu"):
        import test_benchmarks_mmiu
        import test_benchmarks_odinw

        return {"odinw": test_benchmarks_odinw, "mmiu": test_benchmarks_mmiu}[name]._bench(tmp_path)
    from test_benchmarks_malformed import _rows

    row = _rows(name, tmp_path)
    path = tmp_path / f"{name}_val.jsonl"
    path.write_text("".join(json.dumps(row(i)) + "\n" for i in range(3)))
    return path


@pytest.mark.parametrize("name", ["mc-bench", "lisa", "ref-l4", "revos", "odinw", "blink", "mmiu"])
def test_every_benchmark_prints_its_figure_labelled_with_protocol_and_denominator(name, tmp_path, capsys):
    data = _one_of_each(name, tmp_path)
    preds = tmp_path / "none.jsonl"
    preds.write_text("")
    main(["score", "--benchmark", name, "--data", str(data), "--predictions", str(preds), "--coords", "pixels",
          "--image-root", str(tmp_path)])
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith(f"{name}: avg"))
    assert re.fullmatch(rf"{name}: avg \S+ \[(official|paper subset|rule-only|fixed): .+\] over [1-9]\d* items, "
                        r"\d+ scored 0 for bad input, \d+ without a prediction", line), line


def test_mc_bench_all_pairs_is_a_command_line_switch(tmp_path, capsys):
    data = _one_of_each("mc-bench", tmp_path)
    preds = tmp_path / "none.jsonl"
    preds.write_text("")
    base = ["score", "--benchmark", "mc-bench", "--data", str(data), "--predictions", str(preds), "--coords", "pixels",
            "--image-root", str(tmp_path)]
    main(base)
    assert "mc-bench: avg 0.00 [paper subset:" in capsys.readouterr().err
    main(base + ["--subset", "all"])
    assert "mc-bench: avg 0.00 [official:" in capsys.readouterr().err
