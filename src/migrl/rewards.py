"""Rewards as plain functions with TRL's reward-function signature.

``reward(completions, **columns) -> list[float]``: ``completions`` are strings or chat messages;
dataset columns arrive as keyword lists aligned with them. The grounding rewards read ``target``:
``{"image_index": k, "bbox": [x1, y1, x2, y2]}`` in the model's own coordinate space (for
Qwen2.5-VL, pixels of the resized image k), converted once from the record's ground truth when
the dataset is built (``target_in_model_space``). IoU is invariant under the per-axis scaling
that separates these spaces, so comparing in the model's space is exact.

The paper's reward is ``1.0 x IoU + 0.5 x format`` (Sec. 3.3): ``PAPER_REWARD_WEIGHTS``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from migrl.boxes import Space, convert, iou, parse_answer
from migrl.images import ImageSizing
from migrl.records import Record
from migrl.scoring.judge import is_hit, target_box

RewardFunc = Callable[..., list[float]]

PAPER_REWARD_WEIGHTS: dict[str, float] = {"iou": 1.0, "format": 0.5}


def completion_text(completion: Any) -> str:
    """A completion as text, whether TRL passes a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    return ""


def target_in_model_space(
    record: Record, image_sizes: Sequence[tuple[int, int]], space: Space | str, sizing: ImageSizing
) -> dict[str, Any]:
    """The record's target box in the space the model answers in, for the image it lies on."""
    gt = record.target
    if gt is None:
        raise ValueError(f"record {record.id}: no ground-truth box")
    size = image_sizes[gt.image_index]
    bbox = convert(gt.bbox, gt.space, space, size, sizing)
    extent = convert((0.0, 0.0, float(size[0]), float(size[1])), Space.PIXELS, space, size, sizing)
    # ``extent``: the whole target image in the model's space, for the whole-image guard.
    return {"image_index": gt.image_index, "bbox": list(bbox), "extent": list(extent)}


def answer_iou(text: str, target: dict[str, Any]) -> float:
    """IoU of the answer's first box with the target (both in the model's space); another image scores 0."""
    if target is None:
        return 0.0
    box = target_box(text, target["image_index"])
    return 0.0 if box is None else iou(box, target["bbox"])


def iou_reward(completions: list[Any], target: list[dict[str, Any]], **kwargs: Any) -> list[float]:
    """Accuracy reward: IoU(prediction, ground truth) in [0, 1]."""
    return [answer_iou(completion_text(c), t) for c, t in zip(completions, target)]


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1 when the text is <think>...</think><answer>...</answer> and the answer is a JSON box, else 0."""
    return [1.0 if parse_answer(completion_text(c)).format_ok else 0.0 for c in completions]


def paper_reward(completions: list[Any], target: list[dict[str, Any]], **kwargs: Any) -> list[float]:
    """The paper's total reward, 1.0 x IoU + 0.5 x format, in [0, 1.5]."""
    ious = iou_reward(completions, target)
    fmts = format_reward(completions)
    w = PAPER_REWARD_WEIGHTS
    return [w["iou"] * i + w["format"] * f for i, f in zip(ious, fmts)]


def gated_iou_reward(completions: list[Any], target: list[dict[str, Any]], **kwargs: Any) -> list[float]:
    """The demo's accuracy reward: (IoU >= 0.5) + 0.5 x IoU, and only when the format holds.

    Measured on the tiny model (DESIGN.md): the paper's continuous IoU reward let GRPO collapse into
    one hedge box that earns partial IoU everywhere; a hit bonus gated on format did not."""
    out = []
    for c, t in zip(completions, target):
        text = completion_text(c)
        if not parse_answer(text).format_ok:
            out.append(0.0)
            continue
        v = answer_iou(text, t)
        out.append(float(is_hit(v)) + 0.5 * v)
    return out


# Reward guards against known hacks (off in the paper recipe): a completion that trips one gets 0.
WHOLE_IMAGE_SHARE = 0.9  # a box covering this share of its image "finds" everything


def hack(text: str, target: dict[str, Any]) -> str | None:
    """Why a completion games the reward (empty answer, whole-image box, several boxes), or None."""
    parsed = parse_answer(text)
    if parsed.answer is not None and not parsed.answer.strip():
        return "empty_answer"
    if len(parsed.boxes) > 1:
        return "several_boxes"
    box = parsed.first_box
    extent = target.get("extent") if target else None
    if box is not None and extent:
        ex1, ey1, ex2, ey2 = extent
        x1, y1, x2, y2 = max(box.bbox[0], ex1), max(box.bbox[1], ey1), min(box.bbox[2], ex2), min(box.bbox[3], ey2)
        covered = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        if covered >= WHOLE_IMAGE_SHARE * (ex2 - ex1) * (ey2 - ey1):
            return "whole_image_box"
    return None


def guarded(func: RewardFunc) -> RewardFunc:
    """``func`` with 0 for completions that trip a guard; keeps its name for TRL's logs."""

    def wrapper(completions: list[Any], target: list[dict[str, Any]], **kwargs: Any) -> list[float]:
        values = func(completions, target=target, **kwargs)
        return [0.0 if hack(completion_text(c), t) else v for v, c, t in zip(values, completions, target)]

    wrapper.__name__ = func.__name__
    return wrapper


def is_correct(text: str, target: dict[str, Any]) -> bool:
    return is_hit(answer_iou(text, target))


REWARD_FUNCS: dict[str, RewardFunc] = {
    "iou": iou_reward,
    "format": format_reward,
    "paper": paper_reward,
    "gated_iou": gated_iou_reward,
}
