import json

import pytest
from PIL import Image

from migrl.benchmarks.blink import analyze_answer, load, score, subtask_of
from migrl.boxes import Space


@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("B", 4, "(B)"),
        ("E", 2, "(E)"),  # a bare letter is taken as is, even past the choices
        ("(C)", 4, "(C)"),
        ("The answer is (B) because", 4, "(B)"),
        ("(A) or (B)?\n\nFinal: (B)", 4, "(B)"),  # two in the text, one in the last paragraph
        ("(A) maybe\n\nI think so", 4, "(A)"),  # the whole text has exactly one: taken
        ("(A) and (B)", 4, None),  # judge
        ("The answer is B", 4, None),  # judge: no (X) token
        ("(D)", 3, "(D)"),  # exact form wins before the choice check
        ("answer: (D)", 3, None),  # (D) is not among 3 choices
        (" B", 4, None),  # not stripped, as the official code
    ],
)
def test_analyze_answer(text, n, expected):
    assert analyze_answer(text, n) == expected


def test_subtask_of():
    assert subtask_of("val_Multi-view_Reasoning_12") == "Multi-view_Reasoning"
    assert subtask_of("val_Counting_1") == "Counting"


def _bench(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    items = [
        {"idx": "val_Counting_1", "question": "q", "choices": ["1", "2", "3"], "answer": "(A)", "prompt": "p", "image_1": "x.png"},
        {"idx": "val_Counting_2", "question": "q", "choices": ["1", "2", "3"], "answer": "(B)", "prompt": "p", "image_1": "x.png"},
        {"idx": "val_Jigsaw_1", "question": "q", "choices": ["a", "b"], "answer": "(B)", "prompt": "p", "image_1": "x.png", "image_2": "x.png"},
        {"idx": "val_Art_Style_1", "question": "q", "choices": ["a", "b"], "answer": "(A)", "prompt": "p", "image_1": "x.png"},
        {"idx": "val_Counting_3", "question": "q", "choices": ["1", "2"], "answer": "(C)", "image_1": "x.png"},
    ]
    path = tmp_path / "blink_val.json"
    path.write_text(json.dumps(items))
    return path


def test_load_paper_subtasks_and_errors(tmp_path):
    path = _bench(tmp_path)
    report = load(path)
    assert [r.id for r in report.records] == ["val_Counting_1", "val_Counting_2", "val_Jigsaw_1"]
    assert report.records[2].choices == ("a", "b") and report.records[2].answer == "(B)"
    assert len(report.errors) == 1 and "item 4" in report.errors[0] and "'answer'" in report.errors[0]
    assert len(load(path, paper_subtasks=False).records) == 4


def test_score_rule_only(tmp_path):
    path = _bench(tmp_path)
    preds = {"val_Counting_1": "<think>(B)? no</think><answer>(A)</answer>", "val_Counting_2": "B or C", "val_Jigsaw_1": "B"}
    res = score(path, preds, Space.QWEN25)
    assert res["tasks"] == {"Counting": 50.0, "Jigsaw": 100.0} and res["avg"] == 75.0
    assert res["rule_only"] is True and res["judge_needed"] == 1 and res["missing_predictions"] == 0


# Real model outputs saved in the BLINK repository (eval/saved_outputs/<model>/*.json, "full_prediction"),
# with what the official eval/test_benchmark.py analyze_answer returns for 4 choices (None: it asks GPT),
# obtained by running the official function outside this repository. Over all 76,769 saved outputs x 2..5
# choices, migrl agreed item by item (100%).
@pytest.mark.parametrize(
    "text, expected",
    [
        ("(D) 0", "(D)"),  # instructblip_13b
        ("(A) the second image", "(A)"),  # instructblip_13b
        (" The correct answer is (C).", None),  # GeminiProVision: "(C)." is not a token
        ("（C）Point C", None),  # flamingov2: full-width parentheses
        ("B is darker", None),  # llava-internlm2-7b
        ("\xa0Box B", None),  # flamingov2
        ("The correct answer is:\n\n(A) picture A\n(B) picture B\n(C) picture C\n(D) picture D", None),  # llava-v1.5-13b-xtuner
        ("A", "(A)"),  # llava-v1.6-34b
        ("(A)", "(A)"),  # QwenVLMax
    ],
)
def test_analyze_answer_equals_official_on_saved_outputs(text, expected):
    assert analyze_answer(text, 4) == expected
