"""Batch arithmetic for any GPU count: keep the paper's global batch when the number of GPUs changes.

global batch = per_device x world_size x gradient_accumulation_steps. The paper states the global batch
(SFT 32, answer-only SFT 64) or the per-GPU one (GRPO: 2 prompts x 8 rollouts, grad accum 4); the GPU
count is ours to choose, so the accumulation is what moves. Launch configs live in ``launch/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperBatch:
    """One stage's batch as the paper gives it. ``global_batch`` counts what one optimizer step sees."""

    stage: str
    global_batch: int | None  # None: the paper fixes the per-GPU batch, so the global one grows with GPUs
    unit: str
    per_device: int  # the recipe's per_device_train_batch_size
    grad_accum: int | None  # fixed by the paper, or None where plan_batch derives it
    note: str


def paper_batches() -> dict[str, PaperBatch]:
    """The paper's batches (Sec. 4.1), keyed by recipe name under recipes/paper/."""
    return {
        "sft": PaperBatch(
            "CoT-SFT (LoRA)", 32, "sequences", per_device=4, grad_accum=None,
            note="global 32; recipe: 4 per GPU x 8 GPUs x accum 1",
        ),
        "sft_answer_only": PaperBatch(
            "SFT baseline (answer only)", 64, "sequences", per_device=4, grad_accum=None,
            note="global 64; recipe: 4 per GPU x 8 GPUs x accum 2",
        ),
        "grpo": PaperBatch(
            "GRPO", None, "completions", per_device=2 * 8, grad_accum=4,
            note="per GPU: 2 prompts x 8 rollouts = 16 completions a forward, grad accum 4 = 64 completions "
            "(8 prompts) per GPU per step; TRL counts completions in per_device_train_batch_size and by default "
            "generates all 64 at once (steps_per_generation = grad accum). The paper's GPU count is not used here: "
            "with 8 GPUs one step sees 512 completions (64 prompts).",
        ),
    }


def plan_batch(global_batch: int, per_device: int, world_size: int) -> int:
    """Gradient accumulation steps so that per_device x world_size x steps == global_batch.

    Raises ValueError naming the numbers when no whole number of steps gives the global batch.
    """
    for name, value in (("global_batch", global_batch), ("per_device", per_device), ("world_size", world_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    per_step = per_device * world_size
    if global_batch % per_step == 0:
        return global_batch // per_step
    fits = [d for d in range(1, global_batch + 1) if global_batch % (d * world_size) == 0]
    hint = (
        f"per_device values that work with {world_size} GPUs: {fits}"
        if fits
        else f"no per_device works: {global_batch} is not a multiple of world_size {world_size}; "
        f"use a GPU count that divides {global_batch}"
    )
    raise ValueError(
        f"global batch {global_batch} cannot be split as per_device {per_device} x world_size {world_size} "
        f"x grad accum: {global_batch} is not a multiple of {per_step}. {hint}."
    )


def grpo_step_completions(world_size: int, prompts_per_device: int = 2, rollouts: int = 8, grad_accum: int = 4) -> int:
    """Completions one GRPO optimizer step sees over all GPUs (the paper fixes the per-GPU numbers)."""
    return prompts_per_device * rollouts * grad_accum * world_size
