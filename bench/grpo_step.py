"""One GRPO step, stock TRL GRPOTrainer vs migrl's (group-shared prompt, image features, image processing).

Same multi-image data (--prompts records of --images pictures of --size px, rendered like the embedded
world), same model (the shipped tiny base, vision frozen as in the recipes), same config and seeds.
Completions are forced to the full --completion tokens (``min_new_tokens``) so both sides generate the
same amount whatever they sample. After one untimed step each, the two trainers take --pairs steps in
turn (which goes first alternates), so the two steps of a pair are seconds apart: this machine's speed
drifts by several times within minutes under other jobs' load.

Prints both sides' per-step losses and gradient norms (same seeds, same rollouts, same updates: they
agree to float rounding; tests/test_grpo_sharing.py checks the loss and the gradients), the median step
time of each and, last, ``ratio=X``: the median over pairs of stock's step time over migrl's.

    .venv/bin/python bench/grpo_step.py [--images 4] [--size 224] [--generations 8] [--prompts 2]
                                        [--completion 64] [--pairs 8] [--beta 0.001]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from migrl.data import scenes as sc
from migrl.images import ImageSizing, load_image
from migrl.models.loading import load_model, load_processor
from migrl.models.peft import freeze_vision
from migrl.records import GroundTruthBox, Record
from migrl.rewards import completion_text, format_reward, iou_reward
from migrl.stages.grpo import GRPOStageConfig, MigrlGRPOTrainer, build_dataset, prompt_length


def write_records(root: Path, n: int, images: int, size: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        shared = sc.random_names(rng, 1)[0]
        paths = []
        for k in range(images):
            names = [shared, *sc.random_names(rng, 2, exclude={shared})]
            scene = sc.random_scene(rng, names, size=(size, size), min_frac=0.15, max_frac=0.3)
            path = root / f"{i:03d}_{k}.png"
            sc.render(scene).save(path)
            paths.append(path.name)
            if k == images - 1:
                box = scene.find(shared).box
        question = f"These images share one object in common. Recognize and locate this object in image {images}."
        records.append(Record(id=f"bench-{i:03d}", task="common_object", images=tuple(paths), question=question,
                              boxes=(GroundTruthBox(images - 1, tuple(float(v) for v in box)),)))
    return records


def text_reward(completions, **kwargs) -> list[float]:
    """Varies with the text: the tiny model earns no IoU at 224 px, and all-zero rewards would make every
    advantage 0 and the comparison of losses and gradient norms empty."""
    return [(sum(map(ord, completion_text(c))) % 7) / 7 for c in completions]


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step: generation, scoring, the forwards, backward and the update."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)


def make_trainer(trainer_cls, dataset, processor, cfg: GRPOStageConfig) -> tuple[Any, StepTimer]:
    model = load_model(None, dtype=torch.float32)
    freeze_vision(model)
    timer = StepTimer()
    trainer = trainer_cls(model=model, reward_funcs=[iou_reward, format_reward, text_reward], args=cfg,
                          train_dataset=dataset, processing_class=processor, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # keep the output to the comparison
    return trainer, timer


def one_step(trainer, seed: int) -> tuple[float, float]:
    """One GRPO step (``max_steps=1``): each call trains on from the weights and optimizer state the
    last call left, on the same first batch of the seeded sampler, sampling from ``seed`` (the two
    trainers share the process's RNG: the same seed for both gives both the same rollouts)."""
    set_seed(seed)
    trainer.train()
    log = next(h for h in trainer.state.log_history if "loss" in h)
    return log["loss"], log["grad_norm"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--prompts", type=int, default=2, help="prompts per step (x generations = completions per step)")
    p.add_argument("--completion", type=int, default=64, help="completion tokens (forced)")
    p.add_argument("--pairs", type=int, default=8, help="timed steps of each trainer, alternating")
    p.add_argument("--beta", type=float, default=1e-3, help="KL weight (the paper's 1e-3: a reference forward)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from trl import GRPOTrainer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        records = write_records(root, args.prompts, args.images, args.size, seed=0)
        # the shipped base resizes to at most 112 x 112 px; let the images through at --size (224 px: 64 tokens each)
        processor = load_processor(None, ImageSizing(max_pixels=args.size * args.size))
        cfg = GRPOStageConfig(
            output_dir=str(root / "out"), num_generations=args.generations,
            per_device_train_batch_size=args.prompts * args.generations, max_steps=1,
            max_completion_length=args.completion, generation_kwargs={"min_new_tokens": args.completion},
            loss_type="grpo", scale_rewards="group", beta=args.beta, temperature=0.7, learning_rate=5e-5,
            lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
            bf16=False, seed=0, remove_unused_columns=False, disable_tqdm=True,
        )
        dataset, errors = build_dataset(records, root, processor, cfg)
        assert not errors, errors
        prompt_tokens = prompt_length(processor, records[0], [load_image(root / q) for q in records[0].images])
        stock, stock_timer = make_trainer(GRPOTrainer, dataset, processor, cfg)
        migrl, migrl_timer = make_trainer(MigrlGRPOTrainer, dataset, processor, cfg)
        logs = {"stock": [one_step(stock, 0)], "migrl": [one_step(migrl, 0)]}  # warm-up steps, not timed
        stock_timer.times.clear(), migrl_timer.times.clear()
        for i in range(args.pairs):
            # steps alternate, and so does which side goes first: a shared machine whose speed drifts
            # (several times over, within minutes, on this one) weighs on both sides alike
            for side in (("stock", "migrl") if i % 2 == 0 else ("migrl", "stock")):
                logs[side].append(one_step(stock if side == "stock" else migrl, i + 1))

    pair_ratios = [a / b for a, b in zip(stock_timer.times, migrl_timer.times)]
    print(f"config: {args.prompts} prompts x {args.generations} generations, {args.images} images of {args.size} px "
          f"per prompt ({prompt_tokens} prompt tokens), {args.completion} completion tokens, beta {args.beta}, "
          f"threads {torch.get_num_threads()}")
    for side in ("stock", "migrl"):
        print(f"loss, grad norm per step, {side}: {[(f'{a:.6g}', f'{b:.6g}') for a, b in logs[side]]}")
    for name, timer in (("stock TRL GRPOTrainer", stock_timer), ("migrl MigrlGRPOTrainer", migrl_timer)):
        print(f"{name}: {statistics.median(timer.times):.3f} s/step (median of {len(timer.times)}: "
              f"{[round(x, 2) for x in timer.times]})")
    print(f"stock/migrl per pair of adjacent steps: {[round(x, 2) for x in pair_ratios]}")
    print(f"ratio={statistics.median(pair_ratios):.2f}")


if __name__ == "__main__":
    main()
