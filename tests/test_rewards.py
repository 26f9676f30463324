import pytest

from migrl.boxes import Space
from migrl.images import TINY_SIZING
from migrl.records import GroundTruthBox, Record
from migrl.rewards import PAPER_REWARD_WEIGHTS, format_reward, iou_reward, is_correct, paper_reward, target_in_model_space

TARGET = {"image_index": 1, "bbox": [10.0, 10.0, 50.0, 50.0]}
GOOD = '<think>It is the red circle.</think><answer>{"image": 2, "bbox_2d": [10, 10, 50, 50]}</answer>'


def test_paper_reward_weights():
    assert PAPER_REWARD_WEIGHTS == {"iou": 1.0, "format": 0.5}


def test_rewards_by_hand():
    half = '<think>t</think><answer>{"bbox_2d": [10, 10, 50, 30]}</answer>'  # IoU 0.5, image implied
    wrong_image = GOOD.replace('"image": 2', '"image": 1')
    no_format = '{"image": 2, "bbox_2d": [10, 10, 50, 50]}'
    texts = [GOOD, half, wrong_image, no_format, ""]
    assert iou_reward(texts, [TARGET] * 5) == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.0])
    assert format_reward(texts) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert paper_reward(texts, [TARGET] * 5) == pytest.approx([1.5, 1.0, 0.5, 1.0, 0.0])


def test_rewards_accept_conversational_completions():
    conv = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]]
    assert paper_reward(conv, [TARGET, TARGET]) == [1.5, 1.5]


def test_target_in_model_space_uses_the_target_images_size():
    record = Record(
        id="r", task="t", images=("a.png", "b.png"), question="q",
        boxes=(GroundTruthBox(1, (35.0, 26.25, 70.0, 52.5)),),
    )
    target = target_in_model_space(record, [(120, 100), (140, 105)], Space.QWEN25, TINY_SIZING)
    assert target == {"image_index": 1, "bbox": pytest.approx([28, 21, 56, 42]), "extent": [0.0, 0.0, 112.0, 84.0]}


# --- guards and the demo's gated reward -------------------------------------------------------

from migrl.rewards import gated_iou_reward, guarded, hack, iou_reward as _iou  # noqa: E402

_T = {"image_index": 0, "bbox": [10.0, 10.0, 40.0, 40.0], "extent": [0.0, 0.0, 112.0, 84.0]}


def _ans(body):
    return f"<think>look</think><answer>{body}</answer>"


def test_guards_name_each_hack():
    assert hack(_ans(" "), _T) == "empty_answer"
    assert hack(_ans('{"bbox_2d": [0, 0, 112, 84]}'), _T) == "whole_image_box"
    assert hack(_ans('{"bbox_2d": [-5, -5, 200, 200]}'), _T) == "whole_image_box"
    assert hack(_ans('[10, 10, 40, 40] [50, 50, 60, 60]'), _T) == "several_boxes"
    assert hack(_ans('{"bbox_2d": [10, 10, 40, 40]}'), _T) is None
    assert hack(_ans('{"bbox_2d": [0, 0, 100, 70]}'), _T) is None  # 74% of the image: allowed


def test_guarded_reward_zeroes_hacks_and_keeps_its_name():
    texts = [_ans('{"bbox_2d": [10, 10, 40, 40]}'), _ans('{"bbox_2d": [0, 0, 112, 84]}')]
    plain, safe = _iou(texts, target=[_T, _T]), guarded(_iou)(texts, target=[_T, _T])
    assert plain[1] > 0 and safe == [1.0, 0.0] and guarded(_iou).__name__ == _iou.__name__


def test_gated_reward_needs_the_format_and_rewards_hits():
    good = _ans('{"bbox_2d": [10, 10, 40, 40]}')
    near = _ans('{"bbox_2d": [10, 10, 25, 40]}')  # IoU 0.5
    far = _ans('{"bbox_2d": [60, 60, 80, 80]}')
    r = gated_iou_reward([good, near, far, '{"bbox_2d": [10, 10, 40, 40]}'], target=[_T] * 4)
    assert r == [1.5, 1.25, 0.0, 0.0]


def test_accuracy_is_iou_of_at_least_one_half():
    """Acc@0.5, the rule of rejection sampling and of the demo's hit bonus: IoU exactly 0.5 is a hit,
    0.45 is not (a threshold of 0.4 or 0.6, or '>' for '>=', each fails here)."""
    target = {"image_index": 0, "bbox": [0.0, 0.0, 100.0, 10.0]}
    texts = [_ans(f'{{"bbox_2d": [0, 0, {x2}, 10]}}') for x2 in (45, 50, 55)]  # IoU x2 / 100
    assert iou_reward(texts, [target] * 3) == pytest.approx([0.45, 0.5, 0.55])
    assert [is_correct(t, target) for t in texts] == [False, True, True]
    assert gated_iou_reward(texts, target=[target] * 3) == pytest.approx([0.225, 1.25, 1.275])
