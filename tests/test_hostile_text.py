"""Hostile model text through every place that reads it: the parser, the rewards, the record scorer,
the teacher filter, the MIG-Bench scorer and the chain table's step reader. Nothing may raise, hang or
blow up memory; scores stay in range; hostile text never scores as correct. A fixed corpus of nasty
strings, Hypothesis soups of the scorer's own syntax, and the whole real MIG-Bench file scored with
hostile outputs, timed.
(tests/test_parser_fuzz.py fuzzes the parser and rewards with arbitrary text as well.)
"""

from __future__ import annotations

import math
import time
import tracemalloc
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import MIG_DATA
from migrl.boxes import Space, parse_answer
from migrl.images import TINY_SIZING, ImageSizing
from migrl.data.world import last_locate_step
from migrl.rewards import format_reward, gated_iou_reward, guarded, hack, iou_reward, is_correct, paper_reward
from migrl.benchmarks import get
from migrl.benchmarks.mig_bench import official_extract_bbox, official_iou, official_scored_box, predicted_box

score_migbench = get("mig-bench").score_file

BIG = 100_000
HOSTILE = [
    "9" * BIG,
    "<answer>[" + "1" * BIG + ", 2, 3, 4]</answer>",
    '<think>x</think><answer>{"bbox_2d": [' + "7" * BIG + ', 1, 1, 1]}</answer>',
    "[" + "1." + "1" * BIG + ", 1.0, 1.0, 1.0]",
    "(" + "1" * BIG + ", 2), (3, 4)",
    "<box>" + "1 " * (BIG // 2) + "</box>",
    "[" * 5000 + "]" * 5000,
    "{" * 5000 + "}" * 5000,
    "(" * 20_000 + ")" * 20_000,
    "<answer>" + "[" * 3000 + "1, 2, 3, 4" + "]" * 3000 + "</answer>",
    '<answer>' + '{"bbox_2d": ' * 3000 + "[1, 2, 3, 4]" + "}" * 3000 + "</answer>",
    "<think>" * 3000 + "</think>" * 3000,
    "<answer>" * 5000 + "</answer>" * 5000,
    "<think><answer>" * 3000,
    "</answer><answer>" * 3000 + "[1, 2, 3, 4]",
    "<|box_start|>" * 5000 + "(1,2),(3,4)" + "<|box_end|>" * 5000,
    '<think>x</think><answer>{"bbox_2d": [NaN, Infinity, -Infinity, 1]}</answer>',
    "<answer>[nan, inf, -inf, 0]</answer>",
    "Locate the " + "a" * BIG + " in image 1.",  # the chain table's step reader (scoring.chains)
    "Locate the a a" * (BIG // 14) + " in image 9" * 3000,
    "<answer>[1e309, 1e309, 1e309, 1e309]</answer>",
    '<think>x</think><answer>{"bbox_2d": [1e309, 0, 1e309, 1]}</answer>',
    '<think>x</think><answer>{"bbox_2d": [1e999999999, 0, 1, 1]}</answer>',
    "[1e99999999999, 0, 1, 1] [1.0e-99999, 2.5e+400, 3, 4]",
    '{"bbox_2d": [1E+1000000000, 2, 3, 4]}',
    "[" + "9" * 400 + "." + "9" * 400 + ", 1.5, 2.5, 3.5]",
    "<answer>[１２, ３４, ５６, ７８]</answer>",
    "(１０,２０),(３０,４０) [１.５, ２.５, ３.５, ４.５]",
    "[١٢, ٣٤, ٥٦, ٧٨] (٠,٠),(٩,٩)",
    "\x00\x01\x02\x1b[31m\u202e\u200b\ufeff" * 1000,
    "<answer>\x00[1,\x002,\x1b3,4]</answer>",
    "<answer>[\x00\x01, \x1b[31m, \u202e1, 2]</answer>",
    '<answer>{"bbox_2d": ["1", "2", "3", "4"]}</answer>',
    '<answer>{"bbox_2d": [true, false, null, 1]}</answer>',
    '<answer>{"bbox_2d": [[1, 2], [3, 4]]}</answer>',
    '<answer>{"bbox_2d": {"x1": 10, "y1": 10, "x2": 50, "y2": 50}}</answer>',
    "<answer>[a, b, c, d] [1, two, 3, 4] ['1', '2', '3', '4']</answer>",
    '<answer>{"bbox_2d": [1, 2, 3, 4], "bbox_2d": {"nested": [1, 2]}}</answer>',
    "<think>" + "x" * BIG,
    '<answer>{"bbox_2d": [1, 2, 3',
    "<|box_start|>(1,2),(3",
    "<answer>" + "[1, " * 20_000 + "</answer>",
    "[1, 2, 3, 4]" * 20_000,
    "(1,2),(3,4)" * 20_000,
    "[" + " " * BIG + "1, 2, 3, 4]",
    "[1," + " " * BIG + "2, 3, 4]",
    "image " * 20_000 + "[1, 2, 3, 4]",
    '"image": ' * 10_000 + "[1, 2, 3, 4]",
    "-" * BIG + "[-1, -2, -3, -4]",
    "[-0, -0.0, -0, -0.0]",
    "\ud800 lone surrogate [1, 2, 3, 4] \udfff",
    "```json\n" * 5000,
    "",
    " ",
]
TARGET = {"image_index": 0, "bbox": [10.0, 10.0, 50.0, 50.0], "extent": [0.0, 0.0, 112.0, 112.0]}
MIG_RECORD = {"task": "common_object", "question": "Locate it in the 2th image.", "images": ["a.png", "b.png"],
              "answer": [0.1, 0.1, 0.5, 0.5]}


def everything(text: str) -> None:
    """Every reader of model text, with the range each result must stay in."""
    parsed = parse_answer(text)
    assert all(math.isfinite(v) and abs(v) < 1e13 for box in parsed.boxes for v in box.bbox)
    assert parsed.format_ok in (True, False)
    assert 0.0 <= iou_reward([text], [TARGET])[0] <= 1.0
    assert format_reward([text])[0] in (0.0, 1.0)
    assert 0.0 <= paper_reward([text], [TARGET])[0] <= 1.5
    assert 0.0 <= gated_iou_reward([text], [TARGET])[0] <= 1.5
    assert 0.0 <= guarded(paper_reward)([text], target=[TARGET])[0] <= 1.5
    assert hack(text, TARGET) in (None, "empty_answer", "several_boxes", "whole_image_box")
    step = last_locate_step(text)
    assert step is None or (len(step[0]) < len(text) and step[1] >= -1)
    for coords in (Space.QWEN2, Space.NORMALIZED):
        value = official_iou(MIG_RECORD["answer"], predicted_box(text, MIG_RECORD, coords, None, ImageSizing()))
        assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_text_is_read_quickly_in_range_and_never_correct(index):
    text = HOSTILE[index]
    start = time.process_time()  # CPU time: a loaded machine (CI, other jobs) must not make it fail
    everything(text)
    seconds = time.process_time() - start
    # A hang guard, not a speed claim: a backtracking regex would take minutes. The slowest string here
    # (a box repeated 20,000 times) takes ~1 s of CPU through all twelve readers, linear in its length.
    assert seconds < 20.0, f"{seconds:.2f} s of CPU"
    assert not is_correct(text, TARGET)
    assert official_iou(MIG_RECORD["answer"], official_scored_box(text)) < 0.5


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_text_costs_bounded_memory(index):
    text = HOSTILE[index]
    tracemalloc.start()
    try:
        parse_answer(text)
        paper_reward([text], [TARGET])
        official_scored_box(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(text) + 1_000_000, f"{peak / 1e6:.1f} MB for {len(text)} characters"


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_the_fast_official_box_scores_as_the_official_extract_bbox(index):
    text = HOSTILE[index]
    assert official_iou(MIG_RECORD["answer"], official_scored_box(text)) == official_iou(MIG_RECORD["answer"], official_extract_bbox(text))


def test_hostile_teacher_answers_are_dropped_and_hostile_predictions_score_0(world_test):
    from migrl.images import image_size, resolve_image_path
    from migrl.records import data_root, read_records
    from score_helpers import score_records
    from migrl.stages.synthesize import judge

    records = read_records(world_test)
    root = data_root(world_test)
    sizes = [image_size(resolve_image_path(p, root)) for p in records[0].images]
    for text in HOSTILE:
        judged = judge(text, records[0], sizes, Space.QWEN25, ImageSizing())
        assert 0.0 <= judged.iou < 0.5
    predictions = {r.id: HOSTILE[i % len(HOSTILE)] for i, r in enumerate(records)}
    result = score_records(records, predictions, root, Space.QWEN25, TINY_SIZING)
    assert result["avg"] == 0.0 and "errors" not in result


# The official scorer's own syntax, in any order: its patterns, digits of any script, its separators.
official_soup = st.lists(
    st.one_of(
        st.sampled_from(["(", ")", "[", "]", ",", ", ", ".", " ", "<box>", "</box>", "<answer>", "</answer>", "\n"]),
        st.integers(0, 10**6).map(str),
        st.floats(0, 1e6, allow_nan=False).map(str),
        st.sampled_from(["１２", "٣", "०", "9" * 400, "0.5", "1.000", "1000"]),
    ),
    max_size=80,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(official_soup, st.lists(st.floats(0, 1), min_size=4, max_size=4))
def test_official_scorer_on_its_own_syntax(text, gt):
    gt = [min(gt[0], gt[2]), min(gt[1], gt[3]), max(gt[0], gt[2]), max(gt[1], gt[3])]
    value = official_iou(gt, official_scored_box(text))
    assert 0.0 <= value <= 1.0
    assert value == official_iou(gt, official_extract_bbox(text))


@pytest.mark.skipif(not MIG_DATA.exists(), reason=f"{MIG_DATA} not present")
def test_the_whole_mig_bench_file_with_hostile_outputs():
    """4,295 real records, each answered by a corpus string: scoring finishes in seconds, all wrong."""
    predictions = {str(i): HOSTILE[i % len(HOSTILE)] for i in range(4295)}
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file's known inverted boxes
        result = score_migbench(MIG_DATA, predictions, Space.QWEN2)
    seconds = time.process_time() - start
    print(f"scored {len(predictions)} hostile MIG-Bench outputs in {seconds:.2f} s")
    assert seconds < 60, "a hang guard, not a speed claim (about 1.5 s here)"
    assert result["missing_predictions"] == 0 and sum(t for _, t in result["counts"].values()) == 4295
    assert set(result["tasks"].values()) == {0.0}
