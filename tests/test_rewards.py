import pytest

from migrl.boxes import Space
from migrl.images import TINY_SIZING
from migrl.records import GroundTruthBox, Record
from migrl.rewards import PAPER_REWARD_WEIGHTS, format_reward, iou_reward, paper_reward, target_in_model_space

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
    assert target == {"image_index": 1, "bbox": pytest.approx([28, 21, 56, 42])}
