"""A 7B-shaped GRPO step on one GPU: sample the group's completions, then forward + backward the policy.

Qwen2.5-VL-7B's shapes (``migrl.plan.SHAPES["7b"]``: 28 x 3584 language model, 32 x 1280 vision tower),
random init, bf16, sdpa attention. One step as the paper's recipe runs it per GPU: ``--prompts`` prompts of
``--images`` pictures of ``--image-size`` px, ``--generations`` completions each (sampled, forced to exactly
``--completion`` tokens so every run does the same work), then the GRPO policy-gradient loss (random
advantages: the rewards do not change the cost) over the completion tokens, micro-batch by micro-batch,
vision frozen, gradient checkpointing on. Prints, per phase, peak GPU memory and tokens/s, and the MFU of
the training forward + backward: model FLOPs (6 x language-model parameters per trained token + causal
attention, 2 x vision parameters per image patch; checkpointing's recomputation not counted, as usual)
over the GPU's dense bf16 peak. Last line: ``ratio=<MFU>``.

    python bench/gpu_step.py [--prompts 2] [--generations 8] [--images 2] [--image-size 448]
                             [--completion 256] [--micro-batch 4] [--steps 2] [--optim none|adamw]

Without a CUDA device it says so, runs the same code on a tiny shape on the CPU (the smoke run: the script
is known to work; its figures mean nothing) and exits 0 with ``ratio=nan``. ``--optim adamw`` adds the
optimizer step (bf16 states: 7B needs ~64 GB for weights, gradients and states on one GPU; the paper
shards them with ZeRO-3, see ``migrl plan``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch

from migrl.plan import SHAPES, VLShape, to_config

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets; --peak-tflops for others.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                    "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0, "B200": 2250.0}
TINY = VLShape("tiny (CPU smoke run)", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=152064,
               tied=False, vision_depth=2, vision_hidden=64, vision_intermediate=128, vision_heads=2)
PATCH = 14
MERGE = 2


@dataclass
class Batch:
    input_ids: torch.Tensor  # (prompts, prompt tokens): the same images and question layout in every prompt
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


def make_batch(config, prompts: int, images: int, size: int, text_tokens: int, device: str, dtype: torch.dtype) -> Batch:
    """Prompts laid out as Qwen2.5-VL's processor lays them out: per image <|vision_start|>, its image
    tokens, <|vision_end|>; then the question (random token ids)."""
    side = size // PATCH  # patches per side (size: a multiple of 28)
    per_image = (side // MERGE) ** 2
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(prompts):
        ids: list[int] = []
        for _ in range(images):
            ids += [config.vision_start_token_id] + [config.image_token_id] * per_image + [config.vision_end_token_id]
        ids += torch.randint(0, 150000, (text_tokens,), generator=g).tolist()
        rows.append(ids)
    patch_dim = 3 * config.vision_config.temporal_patch_size * PATCH * PATCH
    pixels = torch.randn(prompts * images * side * side, patch_dim, generator=g)
    grid = torch.tensor([[1, side, side]] * (prompts * images))
    return Batch(torch.tensor(rows, device=device), pixels.to(device, dtype), grid.to(device))


def params_of(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def generate(model, batch: Batch, generations: int, completion: int) -> torch.Tensor:
    """The group's completions, ``completion`` tokens each (min = max, so no run stops early)."""
    ids = batch.input_ids.repeat_interleave(generations, dim=0)
    images_per_prompt = batch.image_grid_thw.shape[0] // batch.input_ids.shape[0]
    patches = batch.image_grid_thw.prod(dim=1)
    per_prompt = list(torch.split(batch.pixel_values, patches.view(-1, images_per_prompt).sum(dim=1).tolist()))
    pixels = torch.cat([p for p in per_prompt for _ in range(generations)])
    grid = batch.image_grid_thw.view(-1, images_per_prompt, 3).repeat_interleave(generations, dim=0).view(-1, 3)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_grid_thw=grid,
                             do_sample=True, temperature=1.0, top_k=0, max_new_tokens=completion, min_new_tokens=completion,
                             pad_token_id=0, eos_token_id=None, use_cache=True)
    return out, pixels, grid


def train(model, sequences: torch.Tensor, pixels: torch.Tensor, grid: torch.Tensor, completion: int, micro: int,
          images_per_row: int) -> float:
    """GRPO's policy-gradient loss over the completion tokens, accumulated over micro-batches; returns the loss."""
    rows = sequences.shape[0]
    patches_per_row = int(grid[:images_per_row].prod(dim=1).sum())
    advantages = torch.randn(rows, device=sequences.device)
    total = 0.0
    for start in range(0, rows, micro):
        part = slice(start, min(rows, start + micro))
        ids = sequences[part]
        px = pixels[start * patches_per_row : part.stop * patches_per_row]
        g = grid[start * images_per_row : part.stop * images_per_row]
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=px, image_grid_thw=g,
                       logits_to_keep=completion + 1, use_cache=False).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, -completion:].unsqueeze(-1)).squeeze(-1)
        loss = -(advantages[part].unsqueeze(1) * logp).mean() * (part.stop - start) / rows
        loss.backward()
        total += float(loss.detach())
    return total


def train_flops(body_params: int, head_params: int, vision_params: int, shape: VLShape, rows: int, seq: int,
                completion: int, patches: int) -> float:
    """Model FLOPs of one forward + backward over ``rows`` sequences of ``seq`` tokens: the decoder layers on
    every token, the output head on the completion's only (``logits_to_keep``), the vision tower forward only."""
    attention = 6 * shape.layers * shape.hidden * seq  # causal: half of 12 x layers x hidden x seq, per token
    return rows * (seq * (6 * body_params + attention) + (completion + 1) * 6 * head_params) + 2 * vision_params * patches


def gpu_peak_tflops(name: str, override: float) -> float | None:
    if override:
        return override
    for key, tflops in PEAK_BF16_TFLOPS.items():  # the more specific names first
        if key in name:
            return tflops
    return None


def run(args: argparse.Namespace, device: str) -> float:
    from transformers import Qwen2_5_VLForConditionalGeneration

    shape = SHAPES["7b"] if device.startswith("cuda") else TINY
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    config = to_config(shape)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    for p in model.model.visual.parameters():
        p.requires_grad_(False)  # the paper's recipe freezes the vision tower and the merger
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    vision_params = params_of(model.model.visual)
    head_params = shape.vocab * shape.hidden
    body_params = params_of(model) - vision_params - head_params * (1 if shape.tied else 2)  # the embedding lookup: no FLOPs
    print(f"model: {shape.name}, {params_of(model) / 1e9:.2f}B parameters ({body_params / 1e9:.2f}B in the decoder layers, "
          f"{head_params / 1e9:.2f}B head, {vision_params / 1e9:.2f}B vision), {dtype}, built in {time.perf_counter() - t0:.1f} s on {device}")
    batch = make_batch(config, args.prompts, args.images, args.image_size, args.question_tokens, device, dtype)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, foreach=True) if args.optim == "adamw" else None
    rows, prompt_len = args.prompts * args.generations, batch.input_ids.shape[1]
    seq = prompt_len + args.completion
    patches = rows * args.images * (args.image_size // PATCH) ** 2
    print(f"step: {args.prompts} prompts x {args.generations} completions, {args.images} images of {args.image_size} px, "
          f"prompt {prompt_len} tokens + completion {args.completion}, micro-batch {args.micro_batch}, optimizer {args.optim}")

    mfu = float("nan")
    for step in range(args.steps + 1):  # step 0 warms up (kernels, allocator)
        model.eval()
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        sequences, pixels, grid = generate(model, batch, args.generations, args.completion)
        sync(device)
        t_gen, mem_gen = time.perf_counter() - t0, peak_gb(device)
        model.train()
        reset_peak(device)
        t0 = time.perf_counter()
        loss = train(model, sequences, pixels, grid, args.completion, args.micro_batch, args.images)
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        sync(device)
        t_train, mem_train = time.perf_counter() - t0, peak_gb(device)
        flops = train_flops(body_params, head_params, vision_params, shape, rows, seq, args.completion, patches)
        peak = gpu_peak_tflops(torch.cuda.get_device_name() if device.startswith("cuda") else "", args.peak_tflops)
        mfu = flops / t_train / (peak * 1e12) if peak else float("nan")
        label = "warm-up" if step == 0 else f"step {step}"
        print(f"{label}: generate {t_gen:.2f} s, {rows * args.completion / t_gen:.0f} new tokens/s, peak {mem_gen:.1f} GB | "
              f"train {t_train:.2f} s, {rows * seq / t_train:.0f} tokens/s, {flops / t_train / 1e12:.1f} TFLOP/s, "
              f"MFU {mfu:.3f}, peak {mem_train:.1f} GB | loss {loss:.4f}")
    return mfu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=2, help="prompts per GPU per step (the paper: 2)")
    p.add_argument("--generations", type=int, default=8, help="completions per prompt (the paper: 8)")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--image-size", type=int, default=448, help="px, a multiple of 28 (448: 256 image tokens)")
    p.add_argument("--question-tokens", type=int, default=64)
    p.add_argument("--completion", type=int, default=256, help="new tokens per completion (the paper allows 1024)")
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per training forward")
    p.add_argument("--steps", type=int, default=2, help="measured steps after one warm-up step")
    p.add_argument("--optim", default="none", choices=["none", "adamw"])
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak, if not in the table")
    p.add_argument("--no-cpu-smoke", action="store_true", help="without a GPU, exit at once instead of the tiny CPU run")
    args = p.parse_args()
    if args.image_size % (PATCH * MERGE):
        p.error(f"--image-size must be a multiple of {PATCH * MERGE}")

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        print(f"GPU: {name}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GB; torch {torch.__version__}")
        mfu = run(args, "cuda")
        print(f"ratio={mfu:.3f}" if not math.isnan(mfu) else "ratio=nan  (unknown GPU peak: pass --peak-tflops)")
        return
    print("NO CUDA DEVICE: the 7B-shaped step was NOT run; no GPU figures were measured.")
    if not args.no_cpu_smoke:
        print("running the same step on a tiny shape on the CPU, to show the script works (its figures mean nothing):")
        smoke = argparse.Namespace(**{**vars(args), "prompts": 1, "generations": 2, "images": 2, "image_size": 56,
                                      "question_tokens": 8, "completion": 8, "micro_batch": 1, "steps": 1})
        run(smoke, "cpu")
    print("ratio=nan  (no GPU)")


if __name__ == "__main__":
    main()
