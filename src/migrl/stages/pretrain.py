"""``migrl pretrain-base``: make the tiny base weak but not blank, as a real base model is.

A random-init tiny Qwen2.5-VL learns the base skills of ``data/base_skills.py`` (naming, naming a
marked object, locating a named object, also in a named image of several) from freshly generated
examples; it never sees the world's reasoning tasks nor a chain of thought.

This is a plain PyTorch loop rather than a Trainer: examples are generated on the fly (no dataset
to materialise) and the loop is ~100 lines; SFT and GRPO use TRL.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from migrl.boxes import Space, convert, iou, parse_answer
from migrl.data.base_skills import SKILLS, Example, make_example
from migrl.engines.hf import HFEngine, Request, SamplingParams
from migrl.images import TINY_SIZING, ImageSizing
from migrl.models.tiny import build_tiny_model
from migrl.models.loading import load_model, load_processor
from migrl.prompts import assistant_message

IGNORE = -100


@dataclass
class PretrainConfig:
    out: str = "runs/tiny-base"
    steps: int = 3600
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    shape: str = "base"
    eval_every: int = 600
    eval_items: int = 64
    max_minutes: float = 0.0  # stop early when > 0 and time is up (the schedule still assumes `steps`)
    save_dtype: str = "float16"
    bf16: bool = True  # autocast matmuls to bfloat16 where the CPU/GPU supports it (master weights stay fp32)


def conversation(ex: Example, upto: int | None = None) -> list[dict[str, Any]]:
    """Chat messages of an example: the pictures in the first user turn, then question/answer turns."""
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(ex.turns[:upto]):
        content = [{"type": "image", "image": im} for im in ex.images] if i == 0 else []
        messages.append({"role": "user", "content": content + [{"type": "text", "text": turn.question}]})
        messages.append(assistant_message(turn.answer))
    return messages


def collate(processor: Any, examples: list[Example]) -> dict[str, torch.Tensor]:
    """Tokens, pictures and labels of a batch; loss on the assistant turns only."""
    batch = processor.apply_chat_template(
        [conversation(e) for e in examples],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )
    mask = batch.pop("assistant_masks").bool()
    batch["labels"] = batch["input_ids"].masked_fill(~mask, IGNORE)
    return dict(batch)


class _Batches(torch.utils.data.IterableDataset):
    """Fresh examples, collated in a worker process so the main process only trains."""

    def __init__(self, processor: Any, batch_size: int, seed: int):
        self.processor, self.batch_size, self.seed = processor, batch_size, seed

    def __iter__(self):
        # Draw 4 batches at once and group similar lengths: a third of each batch was padding.
        rng = random.Random(self.seed)
        while True:
            pool = [make_example(rng) for _ in range(4 * self.batch_size)]
            pool.sort(key=lambda e: (len(e.images), sum(len(t.question) + len(t.answer) for t in e.turns)))
            chunks = [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
            rng.shuffle(chunks)
            for chunk in chunks:
                yield collate(self.processor, chunk)


def bf16_autocast_available(device: str = "cpu") -> bool:
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def evaluate_skills(model: Any, processor: Any, n: int, seed: int, sizing: ImageSizing = TINY_SIZING) -> dict[str, float]:
    """Held-out single-turn accuracy per skill and image count: Acc@0.5 for locating, exact text for naming."""
    rng = random.Random(10_000 + seed)
    engine = HFEngine(model, processor, batch_size=32)
    out: dict[str, float] = {}
    for skill in SKILLS:
        for n_images, label in ((1, "single"), (None, "multi")):
            examples = [make_example(rng, n_images or rng.randint(2, 4), 1, skill, sizing) for _ in range(n)]
            requests = [Request(e.images, _question_only(e)) for e in examples]
            texts = engine.generate(requests, SamplingParams(max_new_tokens=40))
            hits = sum(_turn_correct(e, t[0], sizing) for e, t in zip(examples, texts))
            out[f"{skill}_{label}"] = round(100.0 * hits / n, 1)
    return out


def _question_only(ex: Example) -> list[dict[str, Any]]:
    return conversation(ex)[:1]


def _turn_correct(ex: Example, text: str, sizing: ImageSizing) -> bool:
    turn = ex.turns[0]
    if turn.box is None:
        return text.strip() == turn.answer
    box = parse_answer(text).first_box
    if box is None or box.image_index not in (None, turn.image_index):
        return False
    size = ex.images[turn.image_index].size
    return iou(convert(box.bbox, Space.QWEN25, Space.PIXELS, size, sizing), turn.box) >= 0.5


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    build_tiny_model(out, cfg.shape, seed=cfg.seed)
    processor = load_processor(out)
    model = load_model(out, dtype=torch.float32).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    batches = iter(
        torch.utils.data.DataLoader(_Batches(processor, cfg.batch_size, cfg.seed), batch_size=None, num_workers=1, prefetch_factor=4)
    )
    use_bf16 = cfg.bf16 and bf16_autocast_available()
    log: list[dict[str, Any]] = []
    start = time.time()
    bar = tqdm(range(cfg.steps), desc="pretrain-base", unit="step")
    for step in bar:
        if cfg.max_minutes and time.time() - start > cfg.max_minutes * 60:
            break
        for group in optim.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        batch = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(**batch).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            model.eval()
            scores = evaluate_skills(model, processor, cfg.eval_items, cfg.seed)
            model.train()
            log.append({"step": step + 1, "minutes": (time.time() - start) / 60, "loss": loss.item(), **scores})
            tqdm.write(json.dumps(log[-1]))
    model.eval()
    final = evaluate_skills(model, processor, 200, cfg.seed + 1)
    model.to(getattr(torch, cfg.save_dtype)).save_pretrained(out, safe_serialization=True)
    summary = {"config": asdict(cfg), "minutes": (time.time() - start) / 60, "final_skills": final, "log": log}
    (out / "pretrain_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
