import math

import pytest

from migrl.boxes import Space, convert, find_boxes, format_answer, has_think_answer_format, iou, parse_answer
from migrl.images import TINY_SIZING, ImageSizing


def approx(box, expected):
    return all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(box, expected))


def test_smart_resize_sizes_by_hand():
    # 120x100 -> rounded to 112x112 (exactly max_pixels); 140x105 over the cap -> 112x84
    assert TINY_SIZING.resized(120, 100) == (112, 112)
    assert TINY_SIZING.resized(140, 105) == (112, 84)
    assert TINY_SIZING.resized(128, 96) == (140, 84)
    # Qwen2.5-VL defaults: 1000x500 -> 1008x504
    assert ImageSizing().resized(1000, 500) == (1008, 504)
    assert TINY_SIZING.image_tokens(140, 105) == 4 * 3


def test_qwen25_boxes_convert_with_their_own_image_size():
    """Two images of different sizes in one prompt: the same numbers mean different pixels."""
    sizes = [(120, 100), (140, 105)]
    box = [28, 21, 56, 42]
    on_first = convert(box, Space.QWEN25, Space.PIXELS, sizes[0], TINY_SIZING)
    on_second = convert(box, Space.QWEN25, Space.PIXELS, sizes[1], TINY_SIZING)
    assert approx(on_first, (28 * 120 / 112, 21 * 100 / 112, 56 * 120 / 112, 42 * 100 / 112))
    assert approx(on_second, (35.0, 26.25, 70.0, 52.5))
    # dividing by 1000 (what most tools do) is not the same thing
    assert not approx(convert(box, Space.QWEN2, Space.PIXELS, sizes[1]), on_second)


def test_conversions_by_hand():
    assert approx(convert([100, 50, 504, 252], Space.QWEN25, Space.PIXELS, (1000, 500), ImageSizing()), (100 * 1000 / 1008, 50 * 500 / 504, 500, 250))
    assert approx(convert([250, 500, 750, 1000], Space.QWEN2, Space.PIXELS, (640, 480)), (160, 240, 480, 480))
    assert approx(convert([160, 240, 480, 480], Space.PIXELS, Space.NORMALIZED, (640, 480)), (0.25, 0.5, 0.75, 1.0))
    assert approx(convert([0.25, 0.5, 0.75, 1.0], Space.NORMALIZED, Space.QWEN2, (640, 480)), (250, 500, 750, 1000))
    # qwen25 -> qwen2 goes through the resized size: 1008x504 for a 1000x500 image
    assert approx(convert([504, 252, 1008, 504], Space.QWEN25, Space.QWEN2, (1000, 500), ImageSizing()), (500, 500, 1000, 1000))


def test_round_trip_all_spaces():
    box, size = (13.0, 7.0, 91.0, 64.0), (120, 100)
    for space in Space:
        there = convert(box, Space.PIXELS, space, size, TINY_SIZING)
        assert approx(convert(there, space, Space.PIXELS, size, TINY_SIZING), box)


def test_iou_by_hand():
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching
    assert iou([10, 10, 0, 0], [0, 0, 10, 10]) == 0.0  # inverted
    assert iou([0, 0, 0, 10], [0, 0, 0, 10]) == 0.0  # no area, no division by zero
    assert iou([0, 0, float("nan"), 10], [0, 0, 10, 10]) == 0.0
    assert iou([0, 0, float("inf"), 10], [0, 0, 10, 10]) == 0.0


def test_iou_is_invariant_under_per_image_scaling():
    a, b, size = [10, 20, 60, 70], [15, 25, 70, 80], (140, 105)
    pa = convert(a, Space.QWEN25, Space.PIXELS, size, TINY_SIZING)
    pb = convert(b, Space.QWEN25, Space.PIXELS, size, TINY_SIZING)
    assert iou(pa, pb) == pytest.approx(iou(a, b))


@pytest.mark.parametrize(
    "text, boxes, indices",
    [
        ('<think>x</think><answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', [(1, 2, 3, 4)], [None]),
        ('<answer>{"image": 2, "bbox_2d": [10, 20, 30, 40]}</answer>', [(10, 20, 30, 40)], [1]),
        ('```json\n[{"bbox_2d": [5, 6, 7, 8], "label": "cat"}]\n```', [(5, 6, 7, 8)], [None]),
        ("<|box_start|>(12,34),(56,78)<|box_end|>", [(12, 34, 56, 78)], [None]),
        ("It is in image 3: (12, 34), (56, 78)", [(12, 34, 56, 78)], [2]),
        ("[0.1, 0.2, 0.3, 0.4] and [5, 6, 7, 8]", [(0.1, 0.2, 0.3, 0.4), (5, 6, 7, 8)], [None, None]),
        ('[{"bbox_2d": [1,2,3,4], "image_index": "image 1"}, {"bbox_2d": [5,6,7,8], "image": 2}]', [(1, 2, 3, 4), (5, 6, 7, 8)], [0, 1]),
        ("no box here", [], []),
        ("[1, 2, 3]", [], []),
        ("[１, ２, ３, ４]", [], []),  # full-width digits are not read as numbers
    ],
)
def test_find_boxes(text, boxes, indices):
    found = find_boxes(text)
    assert [b.bbox for b in found] == [tuple(map(float, b)) for b in boxes]
    assert [b.image_index for b in found] == indices


def test_parse_answer_scores_only_the_answer_part():
    text = '<think>image 1 has [1, 1, 5, 5]</think><answer>{"image": 2, "bbox_2d": [10, 20, 30, 40]}</answer>'
    parsed = parse_answer(text)
    assert parsed.think == "image 1 has [1, 1, 5, 5]"
    assert parsed.first_box.bbox == (10, 20, 30, 40) and parsed.first_box.image_index == 1
    assert parsed.format_ok


@pytest.mark.parametrize(
    "text, ok, tags",  # tags: the think/answer tags alone are well placed
    [
        ('<think>a</think><answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', True, True),
        ('  <think>a</think>\n<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>\n', True, True),
        ('<think>a</think><answer>```json\n{"bbox_2d": [1, 2, 3, 4]}\n```</answer>', True, True),
        ('<think>a</think><answer>[1, 2, 3, 4]</answer>', False, True),  # not JSON with bbox_2d
        ('<answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', False, False),  # no thinking
        ('<think>a</think>x<answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', False, False),  # text between
        ('<think>a</think><answer>{"bbox_2d": [1, 2, 3, 4]}</answer> trailing', False, False),
        ('<think>a<think>b</think><answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', False, False),
        ('<answer>{"bbox_2d": [1, 2, 3, 4]}</answer><think>a</think>', False, False),
        ('<think>a</think><answer>{"bbox_2d": [1, 2, "3", 4]}</answer>', False, True),
        ('<think>a</think><answer>{"bbox_2d": [1, 2, NaN, 4]}</answer>', False, True),
        ('<think>a</think><answer>[]</answer>', False, True),
    ],
)
def test_format(text, ok, tags):
    assert parse_answer(text).format_ok is ok
    assert has_think_answer_format(text) is tags


def test_format_answer_is_parsed_back():
    text = format_answer([10.4, 20.6, 30, 40], image_index=1)
    assert text == '{"image": 2, "bbox_2d": [10, 21, 30, 40]}'
    box = find_boxes(text)[0]
    assert box.bbox == (10, 21, 30, 40) and box.image_index == 1


def test_qwen25_boxes_are_never_converted_with_a_guessed_image_setting():
    import pytest

    with pytest.raises(ValueError, match="image setting"):
        convert([1, 2, 3, 4], Space.QWEN25, Space.PIXELS, (1920, 1080))
