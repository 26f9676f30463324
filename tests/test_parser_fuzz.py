"""Hostile model text: the parser and rewards never raise, never hang, and stay in range."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from migrl.boxes import parse_answer
from migrl.rewards import format_reward, iou_reward, paper_reward

TARGET = {"image_index": 0, "bbox": [10.0, 10.0, 50.0, 50.0]}

NASTY = [
    "9" * 100_000,
    "[" * 5000 + "]" * 5000,
    "{" * 5000 + "}" * 5000,
    "(" * 20_000,
    "<think>" * 3000 + "</answer>" * 3000,
    "<answer>" * 3000,
    "<think>" + "[1, 2, 3, 4]" * 5000 + "</think><answer>" + "[" * 4000 + "</answer>",
    '<think>x</think><answer>{"bbox_2d": [NaN, Infinity, -Infinity, 1e309]}</answer>',
    "<answer>[1e309, 1e309, 1e309, 1e309]</answer>",
    "<answer>[nan, inf, -inf, 0]</answer>",
    "<answer>[１２, ３４, ５６, ７８]</answer>",
    "<answer>[\x00\x01, \x1b[31m, \u202e1, 2]</answer>",
    '<answer>{"bbox_2d": ["1", "2", "3", "4"]}</answer>',
    '<answer>{"bbox_2d": [1, 2, 3, 4], "bbox_2d": {"nested": [1, 2]}}</answer>',
    "<answer>" + "[1, " * 20_000 + "</answer>",
    "(" + "1" * 50_000 + ", 2), (3, 4)",
    "[" + "1." + "1" * 50_000 + ", 1.0, 1.0, 1.0]",
    "\ud800 lone surrogate [1, 2, 3, 4]",
    "",
]


def check(text):
    start = time.process_time()  # CPU time, so a loaded machine does not fail it
    parsed = parse_answer(text)
    rewards = paper_reward([text], [TARGET])
    elapsed = time.process_time() - start
    assert all(0.0 <= r <= 1.5 for r in rewards)
    assert 0.0 <= iou_reward([text], [TARGET])[0] <= 1.0
    assert format_reward([text])[0] in (0.0, 1.0)
    for box in parsed.boxes:
        assert all(abs(v) < 1e13 for v in box.bbox)
    return elapsed


def test_nasty_corpus_is_fast_and_in_range():
    for text in NASTY:
        assert check(text) < 1.0, text[:60]


def test_hostile_text_never_scores_as_correct():
    for text in NASTY:
        assert iou_reward([text], [TARGET])[0] < 0.5, text[:60]


def test_non_strings_parse_as_empty():
    for value in (None, 3, b"[1, 2, 3, 4]", ["x"], {"bbox_2d": [1, 2, 3, 4]}):
        assert parse_answer(value).boxes == ()
    assert paper_reward([None, 5], [TARGET, TARGET]) == [0.0, 0.0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_any_text(text):
    assert check(text) < 1.0


box_like = st.lists(
    st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)),
    min_size=0, max_size=6,
).map(lambda vs: "[" + ", ".join(map(str, vs)) + "]")
pieces = st.one_of(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", "(", ")", ",", '"bbox_2d": ', '"image": ', "image 2", "```json"]),
    box_like,
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=60).map("".join))
def test_tag_and_box_soup(text):
    assert check(text) < 1.0
