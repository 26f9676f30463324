"""``migrl pretrain-base``: make the tiny base weak but not blank, as a real base model is.

A random-init tiny Qwen2.5-VL (or, with ``--family qwen3-vl``, Qwen3-VL) learns the base skills of
``data/base_skills.py`` (naming, naming a marked object, locating a named object, also in a named image of
several) from freshly generated examples, its boxes in its family's space and image setting; it never sees
the world's reasoning tasks nor a chain of thought.

This is a plain PyTorch loop rather than a Trainer: examples are generated on the fly (no dataset
to materialise) and the loop is ~100 lines; SFT and GRPO use TRL.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from migrl.bad_records import OptionError
from migrl.configs import PretrainConfig
from migrl.boxes import Space, iou
from migrl.data.base_skills import SKILLS, STAGES, Example, Stage, make_example, stage_at
from migrl.engines.base import Request, SamplingParams
from migrl.engines.hf import HFEngine
from migrl.data import scenes as sc
from migrl.images import MERGE_SIZE, TINY_SIZING, ImageSizing
from migrl.models.family import DEFAULT_FAMILY, FAMILIES, TINY_FAMILIES, Family, family_of
from migrl.models.tiny import build_tiny_model, folder_shape
from migrl.models.loading import load_model, load_processor
from migrl.prompts import assistant_message
from migrl.scoring.judge import is_hit, target_box

IGNORE = -100


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
    batch = dict(batch)
    merge = processor.image_processor.merge_size  # the family's: its grid counts patches, the probe merged tokens
    batch["probe"] = probe_targets([s for e in examples for s in e.scenes], batch["image_grid_thw"], merge)
    return batch


class _Batches(torch.utils.data.IterableDataset):
    """Fresh examples, collated in a worker process so the main process only trains.

    Batches come in pools of 4 drawn together and grouped by length (a third of each batch was
    padding otherwise); pool i has its own seed, so a resumed run sees exactly the batches it would
    have seen. Boxes are written in ``coords`` with ``sizing`` (the model's family and image setting).
    """

    POOL = 4

    def __init__(self, processor: Any, batch_size: int, seed: int, steps: int, start: int = 0, vision_steps: int = 0,
                 sizing: ImageSizing = TINY_SIZING, coords: Space = DEFAULT_FAMILY.coords, curriculum_start: float = 0.0):
        self.processor, self.batch_size, self.seed, self.steps, self.start = processor, batch_size, seed, steps, start
        self.vision_steps, self.sizing, self.coords, self.curriculum_start = vision_steps, sizing, coords, curriculum_start

    def stage(self, step: int) -> Stage:
        """The vision-only steps see the richest pictures; the language curriculum runs over the other steps,
        from ``curriculum_start`` of its way to its end."""
        if step < self.vision_steps:
            return STAGES[-1]
        progress = (step - self.vision_steps) / max(1, self.steps - self.vision_steps)
        return stage_at(self.curriculum_start + (1 - self.curriculum_start) * progress)

    def __iter__(self):
        pool_index, skip = divmod(self.start, self.POOL)
        while True:
            rng = random.Random(f"{self.seed}/{pool_index}")
            step = pool_index * self.POOL
            stage = self.stage(step)
            pool = [make_example(rng, sizing=self.sizing, stage=stage, coords=self.coords)
                    for _ in range(self.POOL * self.batch_size)]
            pool.sort(key=lambda e: (len(e.images), sum(len(t.question) + len(t.answer) for t in e.turns)))
            chunks = [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
            rng.shuffle(chunks)
            for chunk in chunks[skip:]:
                yield collate(self.processor, chunk)
            pool_index, skip = pool_index + 1, 0


def bf16_autocast_available(device: str = "cpu") -> bool:
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class VisionProbe(torch.nn.Module):
    """Dense supervision for the random-init vision tower (discarded after pretraining).

    Real VLMs start from a pretrained vision encoder; the tiny one starts blank, and learning shapes
    and positions only through the language model's answers was measured to stall (a constant box,
    every shape a "diamond", after 900 steps). So every merged image token is also asked, through
    linear heads, what covers its centre (colour, shape), that object's box and its own position.
    """

    N_COLOURS, N_SHAPES = len(sc.COLOURS) + 1, len(sc.SHAPES) + 1  # + background

    def __init__(self, hidden: int):
        super().__init__()
        self.head = torch.nn.Linear(hidden, self.N_COLOURS + self.N_SHAPES + 4 + 2)

    def loss(self, features: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.head(features.float())
        c, s = self.N_COLOURS, self.N_COLOURS + self.N_SHAPES
        colour, shape, box, pos = out[:, :c], out[:, c:s], out[:, s : s + 4].sigmoid(), out[:, s + 4 :].sigmoid()
        on_object = targets["colour"] < self.N_COLOURS - 1
        loss = torch.nn.functional.cross_entropy(colour, targets["colour"])
        loss = loss + torch.nn.functional.cross_entropy(shape, targets["shape"])
        loss = loss + 5 * (pos - targets["pos"]).abs().mean()
        if on_object.any():
            loss = loss + 5 * (box[on_object] - targets["box"][on_object]).abs().mean()
        return loss


def probe_targets(scenes: list[sc.Scene], grids: torch.Tensor, merge: int = MERGE_SIZE) -> dict[str, torch.Tensor]:
    """Per merged token (``merge`` x ``merge`` patches), in the vision tower's output order (row-major per image,
    images in order)."""
    colours, shapes, boxes, positions = [], [], [], []
    colour_ids = {c: i for i, c in enumerate(sc.COLOURS)}
    shape_ids = {s: i for i, s in enumerate(sc.SHAPES)}
    for scene, (_, gh, gw) in zip(scenes, grids.tolist()):
        rows, cols = gh // merge, gw // merge
        for r in range(rows):
            for c in range(cols):
                fx, fy = (c + 0.5) / cols, (r + 0.5) / rows
                x, y = fx * scene.width, fy * scene.height
                hit = next((o for o in scene.objects if o.box[0] <= x < o.box[2] and o.box[1] <= y < o.box[3]), None)
                positions.append((fx, fy))
                if hit is None:
                    colours.append(len(sc.COLOURS))
                    shapes.append(len(sc.SHAPES))
                    boxes.append((0.0, 0.0, 0.0, 0.0))
                else:
                    colours.append(colour_ids[hit.colour])
                    shapes.append(shape_ids[hit.shape])
                    x1, y1, x2, y2 = hit.box
                    boxes.append((x1 / scene.width, y1 / scene.height, x2 / scene.width, y2 / scene.height))
    return {
        "colour": torch.tensor(colours),
        "shape": torch.tensor(shapes),
        "box": torch.tensor(boxes, dtype=torch.float32),
        "pos": torch.tensor(positions, dtype=torch.float32),
    }


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def model_space(model: Any, processor: Any) -> tuple[ImageSizing, Space]:
    """The image setting the processor resizes with and the space the model's family answers in."""
    family = FAMILIES.get(model.config.model_type, DEFAULT_FAMILY)
    return ImageSizing.from_processor(processor), family.coords


def evaluate_skills(model: Any, processor: Any, n: int, seed: int, sizing: ImageSizing | None = None,
                    coords: Space | None = None) -> dict[str, float]:
    """Held-out single-turn accuracy per skill and image count: Acc@0.5 for locating, exact text for naming.
    Boxes in ``coords`` with ``sizing``; by default the model's family's space and the processor's setting."""
    own_sizing, own_coords = model_space(model, processor)
    sizing, coords = sizing or own_sizing, coords or own_coords
    rng = random.Random(10_000 + seed)
    engine = HFEngine(model, processor, batch_size=32)
    out: dict[str, float] = {}
    for skill in SKILLS:
        for n_images, label in ((1, "single"), (None, "multi")):
            examples = [make_example(rng, n_images or rng.randint(2, 4), 1, skill, sizing, coords=coords) for _ in range(n)]
            requests = [Request(e.images, _question_only(e)) for e in examples]
            texts = engine.generate(requests, SamplingParams(max_new_tokens=40))
            hits = sum(_turn_correct(e, t[0], sizing, coords) for e, t in zip(examples, texts))
            out[f"{skill}_{label}"] = round(100.0 * hits / n, 1)
    return out


def _question_only(ex: Example) -> list[dict[str, Any]]:
    return conversation(ex)[:1]


def _turn_correct(ex: Example, text: str, sizing: ImageSizing, coords: Space) -> bool:
    turn = ex.turns[0]
    if turn.box is None:
        return text.strip() == turn.answer
    box = target_box(text, turn.image_index, coords, Space.PIXELS, lambda i: ex.images[i].size, sizing)
    return box is not None and is_hit(iou(box, turn.box))


def _optimizer(model: Any, probe: VisionProbe, cfg: PretrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": list(probe.parameters()), "weight_decay": 0.0, "lr_mult": 1.0}]
    for vision in (True, False):
        params = [(n, p) for n, p in model.named_parameters() if n.startswith("model.visual.") == vision]
        for decay in (True, False):
            chosen = [p for n, p in params if (p.ndim >= 2) == decay]
            mult = cfg.vision_lr_mult if vision else 1.0
            groups.append({"params": chosen, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_mult": mult})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _save_checkpoint(path: Path, model: Any, probe: VisionProbe, optim: torch.optim.Optimizer, step: int, log: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {"model": model.state_dict(), "probe": probe.state_dict(), "optim": optim.state_dict(), "step": step, "log": log}
    torch.save(state, tmp)
    tmp.replace(path)


def _lm_and_probe_loss(model: Any, probe: VisionProbe, batch: dict[str, Any], vision_only: bool, probe_weight: float) -> torch.Tensor:
    targets = batch.pop("probe")
    if vision_only:
        features = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"]).pooler_output
        return probe.loss(features, targets)
    captured: list[torch.Tensor] = []
    hook = model.model.visual.register_forward_hook(lambda mod, inp, out: captured.append(out.pooler_output))
    try:
        loss = model(**batch).loss
    finally:
        hook.remove()
    return loss + probe_weight * probe.loss(captured[0], targets) if probe_weight else loss


def _tiny_folder(cfg: PretrainConfig, out: Path) -> Family:
    """Build ``cfg.family``'s random-init folder in ``out``, or check that the one there (a resumed run) is of it."""
    family = TINY_FAMILIES[cfg.family]
    if not (out / "config.json").exists():
        build_tiny_model(out, cfg.shape, seed=cfg.seed, family=family)
    elif family_of(out) is not family:
        found = family_of(out)
        raise OptionError(f"{str(out)!r} holds a {found.name if found else 'non-Qwen'} model, not {family.name}: "
                          f"pass another --out for --family {cfg.family}")
    elif (shape := folder_shape(out)) != cfg.shape:
        # A resumed run or a further phase trains the folder's model: another --shape would be logged, not used.
        keep = f"pass --shape {shape} to continue it, or" if shape else "pass"
        raise OptionError(f"{str(out)!r} holds a tiny model of shape {shape or 'unknown'}, not {cfg.shape}: "
                          f"{keep} another --out for a new base")
    return family


def _earlier_phases(out: Path) -> list[dict[str, Any]]:
    """The finished runs whose weights this one starts from (a second phase on a finished base), oldest first:
    each phase's log keeps the ones before it, so the shipped log tells every command that made the base."""
    path = out / "pretrain_log.json"
    if not path.exists():
        return []
    last = json.loads(path.read_text())
    return [*last.pop("earlier_phases", []), last]


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train the tiny base; resumes from ``<out>/checkpoint.pt`` when a previous run was cut short. On a folder
    that holds a finished base (weights and ``pretrain_log.json``, no checkpoint) it trains a further phase from
    those weights with its own schedule, optimizer and probe."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    _tiny_folder(cfg, out)
    processor = load_processor(out)
    model = load_model(out, dtype=torch.float32).train()
    sizing, coords = model_space(model, processor)
    probe = VisionProbe(model.config.vision_config.out_hidden_size)
    optim = _optimizer(model, probe, cfg)
    first, log = 0, []
    earlier = _earlier_phases(out)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)  # tensors and plain data only, no pickled code
        model.load_state_dict(state["model"])
        probe.load_state_dict(state["probe"])
        optim.load_state_dict(state["optim"])
        first, log = state["step"], state["log"]
        tqdm.write(f"resuming from step {first}")
    elif earlier:
        tqdm.write(f"continuing the finished base in {out} (phase {len(earlier) + 1})")
    batches = iter(
        torch.utils.data.DataLoader(
            _Batches(processor, cfg.batch_size, cfg.seed, cfg.steps, first, cfg.vision_steps, sizing, coords,
                     cfg.curriculum_start),
            batch_size=None, num_workers=1, prefetch_factor=4,
        )
    )
    use_bf16 = cfg.bf16 and bf16_autocast_available()
    start = time.time()
    bar = tqdm(range(first, cfg.steps), desc="pretrain-base", unit="step", initial=first, total=cfg.steps)
    for step in bar:
        if cfg.max_minutes and time.time() - start > cfg.max_minutes * 60:
            break
        for group in optim.param_groups:
            group["lr"] = cfg.lr * group["lr_mult"] * _lr_factor(step, cfg)
        batch = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = _lm_and_probe_loss(model, probe, batch, step < cfg.vision_steps, cfg.probe_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step >= cfg.vision_steps and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            scores = evaluate_skills(model, processor, cfg.eval_items, cfg.seed, sizing, coords)
            model.train()
            log.append({"step": step + 1, "loss": round(loss.item(), 4), **scores})
            tqdm.write(json.dumps(log[-1]))
        if (step + 1) % cfg.save_every == 0:
            _save_checkpoint(ckpt_path, model, probe, optim, step + 1, log)
    model.eval()
    final = evaluate_skills(model, processor, 200, cfg.seed + 1, sizing, coords)
    model.to(getattr(torch, cfg.save_dtype)).save_pretrained(out, safe_serialization=True)
    summary = {"config": asdict(cfg), "minutes_this_run": round((time.time() - start) / 60, 1), "final_skills": final, "log": log}
    if earlier:
        summary["earlier_phases"] = earlier
    (out / "pretrain_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    ckpt_path.unlink(missing_ok=True)
    return summary
