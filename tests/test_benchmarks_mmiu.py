import json

import pytest

from migrl.benchmarks.mmiu import extract_choice, is_correct, load, paper_group, score
from migrl.boxes import Space


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", "A"), (" b. ", "b"), ("(C)", "C"), ("D)", "D"), ("image none", "Z"), ("", "Z"),
        ("\u00a0A", "A"), ("The answer is A", None), ("AB", None), ("o", None), ("n", "n"),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text) == expected


def test_substring_rule():
    assert is_correct("a", "A") and is_correct("A", " a ") and not is_correct("b", "A") and not is_correct(None, "A")
    assert is_correct("a", "A: the first image")  # substring, as evaluate_correct.py


def _item(task, folder, output, options="A: x\nB: y"):
    return {"task": task, "visual_input_component": "", "source": "s", "options": options, "question": "q?",
            "context": "c", "input_image_path": [f"./{folder}/{task}/{task}_0_0.jpg"], "output": output}


def _bench(tmp_path):
    items = [
        _item("forensic_detection_blink", "Low-level-semantic", "A"),
        _item("forensic_detection_blink", "Low-level-semantic", "B"),
        _item("forensic_detection_blink", "Low-level-semantic", None),  # skipped
        _item("jigsaw_puzzle_solving", "2D-spatial", "B"),
        _item("threeD_Depth_Estimation", "3D-spatial", "A"),  # not a paper type
        {"task": "x", "options": "A: 1", "question": "q"},  # malformed
    ]
    path = tmp_path / "all.json"
    path.write_text(json.dumps(items))
    return path


def test_load(tmp_path):
    report = load(_bench(tmp_path))
    assert [r.id for r in report.records] == ["0", "1", "3"]
    assert report.records[0].choices == ("x", "y") and report.records[0].images[0].startswith("Low-level-semantic/")
    assert len(report.errors) == 1 and "item 5" in report.errors[0] and "input_image_path" in report.errors[0]
    assert paper_group("High-level-obj-semantic") == "semantic" and paper_group("3D-spatial") is None


def test_score(tmp_path):
    preds = {"0": "<answer>A.</answer>", "1": "I pick B", "3": "b"}
    res = score(_bench(tmp_path), preds, Space.QWEN25)
    assert res["tasks"] == {"forensic_detection_blink": 50.0, "jigsaw_puzzle_solving": 100.0}
    assert res["sem"] == 50.0 and res["spa"] == 100.0 and res["avg"] == 75.0
    assert res["rule_only"] is True and res["judge_needed"] == 1


# What the official evaluate.py process_data picks (None: it asks GPT-4o-mini), obtained by running the
# official function outside this repository with the judge unreachable.
@pytest.mark.parametrize(
    "text, expected",
    [
        ("((D))..", "D"), (".,E,.", "E"), ("\u2003A", "A"), ("A\xa0B", None), ("\xa0F", "F"), ("Answer: A", None),
        ("[A]", None), ("(C).", "C"), (" image error ", "Z"), ("model error", "Z"), ("A:", None), ("z", None),
    ],
)
def test_extract_choice_equals_official(text, expected):
    assert extract_choice(text) == expected
