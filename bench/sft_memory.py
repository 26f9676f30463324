"""SFT peak memory, stock TRL SFTTrainer vs the trainer with migrl's TrainedPositionsLossMixin.

The released vocabulary (152,064 rows) on a released-shaped folder with tiny random weights
(``migrl.models.released``, ~20M parameters: the embedding and the output head are nearly all of it),
camera-size pictures (640x480, 1280x720, 1920x1080 PNGs) at the paper recipe's image budget (max_pixels
1,003,520 = 1,280 image tokens a picture: 2-3 pictures make a record of 2,600-3,000 tokens), max_length
4096, assistant-only labels (~100 trained tokens a record), LoRA on the language model with the vision
tower frozen as in ``migrl sft``. Same data, seeds and settings; each side trains --steps steps in its
own subprocess, whose peak RSS (``ru_maxrss``: torch's allocations are outside tracemalloc) is the
figure. Both print their per-step losses, which agree (tests/test_sft_loss.py holds loss, gradients and
metrics to stock TRL's).

    .venv/bin/python bench/sft_memory.py [--steps 3] [--batch 2] [--full] [--threads 0]

Last line ``ratio=X``: stock's peak RSS over migrl's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
MAX_PIXELS = 1280 * 28 * 28  # recipes/paper/sft.yaml's budget
MAX_LENGTH = 4096
# Pictures per record, different per record so rows are padded: 3, 2, 3, 2, ...
RECORD_SIZES = ([(640, 480), (1280, 720), (1920, 1080)], [(1280, 720), (1920, 1080)],
                [(1920, 1080), (640, 480), (1280, 720)], [(1920, 1080), (1280, 720)])
RESPONSE = ("<think>Every picture shows the same yellow mug: on the desk beside the keyboard in the first, on the "
            "shelf in the second, and in the last one it stands on the windowsill, left of the plant, partly in "
            "shadow.</think><answer>{{\"image\": {n}, \"bbox_2d\": [{x0}, {y0}, {x1}, {y1}]}}</answer>")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_records(root: Path, n: int) -> list[Any]:
    from migrl.records import GroundTruthBox, Record

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        sizes = RECORD_SIZES[i % len(RECORD_SIZES)]
        names = []
        for k, (w, h) in enumerate(sizes):
            # smooth noise compresses poorly enough to be a real decode, and differs per picture
            small = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((w, h)).save(root / f"r{i}_{k}.png")
            names.append(f"r{i}_{k}.png")
        w, h = sizes[-1]
        box = (w // 4, h // 4, w // 2, h // 2)
        response = RESPONSE.format(n=len(sizes), x0=box[0], y0=box[1], x1=box[2], y1=box[3])
        records.append(Record(id=f"bench-{i}", task="common_object", images=tuple(names), response=response,
                              question=f"These images share one object. Locate it in image {len(sizes)}.",
                              boxes=(GroundTruthBox(len(sizes) - 1, tuple(float(v) for v in box)),)))
    return records


def child(side: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train --steps steps with one side's trainer; its figures as a dict."""
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from migrl.images import ImageSizing
    from migrl.models.loading import load_model, load_processor
    from migrl.models.released import cached_released_folder
    from migrl.models.peft import LANGUAGE_MODEL_LINEARS, freeze_vision
    from migrl.stages.sft import MigrlSFTTrainer, training_dataset

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, a, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self._t0)

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = cached_released_folder(REPO / ".cache" / "fixtures")
    processor = load_processor(folder, ImageSizing(min_pixels=3136, max_pixels=MAX_PIXELS))
    model = load_model(folder, dtype=torch.float32)
    freeze_vision(model)
    records = json_records(root)
    cfg = SFTConfig(output_dir=str(root / side), max_length=MAX_LENGTH, per_device_train_batch_size=args.batch,
                    max_steps=args.steps, learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none",
                    use_cpu=True, bf16=False, gradient_checkpointing=False, assistant_only_loss=True,
                    remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, seed=0,
                    disable_tqdm=True, dataloader_num_workers=0)
    peft = None if args.full else LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=LANGUAGE_MODEL_LINEARS, task_type="CAUSAL_LM")
    cls = SFTTrainer if side == "stock" else MigrlSFTTrainer  # migrl sft's trainer
    steps = Steps()
    trainer = cls(model=model, args=cfg, train_dataset=training_dataset(records, root, cot=True, answers={}),
                  processing_class=processor, peft_config=peft, callbacks=[steps])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.batch)])
    before = rss_mb()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"side": side, "peak_mb": rss_mb(), "before_train_mb": before, "step_s": steps.times,
            "losses": [h["loss"] for h in logs], "mean_token_accuracy": [h["mean_token_accuracy"] for h in logs],
            "tokens_per_row": batch["attention_mask"].sum(1).tolist(), "padded_length": batch["input_ids"].shape[1],
            "trained_per_row": (batch["labels"][:, 1:] != -100).sum(1).tolist(),
            "vocab": model.config.get_text_config().vocab_size, "threads": torch.get_num_threads()}


def json_records(root: Path) -> list[Any]:
    from migrl.records import read_records

    return read_records(root / "records.jsonl")


def run_side(side: str, root: Path, argv: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", side, "--root", str(root), *argv],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.exit(f"{side} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--child", choices=("stock", "migrl"))
    p.add_argument("--root", type=Path)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args)))
        return
    argv = [f"--steps={args.steps}", f"--batch={args.batch}", f"--threads={args.threads}"] + (["--full"] * args.full)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open(root / "records.jsonl", "w", encoding="utf-8") as f:
            for r in write_records(root, args.batch * args.steps):
                f.write(r.to_json() + "\n")
        results = {side: run_side(side, root, argv) for side in ("stock", "migrl")}
    s, m = results["stock"], results["migrl"]
    print(f"config: released-shaped folder ({s['vocab']:,} vocabulary rows), {'full fine-tuning' if args.full else 'LoRA r16'}, "
          f"batch {args.batch}, {args.steps} steps, max_length {MAX_LENGTH}, max_pixels {MAX_PIXELS:,}, threads {s['threads']}; "
          f"first batch: {s['tokens_per_row']} tokens per row (padded to {s['padded_length']}), "
          f"{s['trained_per_row']} trained")
    for name, r in (("stock TRL SFTTrainer", s), ("migrl TrainedPositionsLossMixin", m)):
        print(f"{name}: peak RSS {r['peak_mb']:.0f} MB ({r['before_train_mb']:.0f} MB before training), "
              f"s/step {[round(t, 2) for t in r['step_s']]}, losses {[f'{x:.6g}' for x in r['losses']]}, "
              f"mean_token_accuracy {[f'{x:.4g}' for x in r['mean_token_accuracy']]}")
    print(f"ratio={s['peak_mb'] / m['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
