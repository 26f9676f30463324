"""Real data parallelism on the CPU: ``accelerate launch`` starts 2 processes (gloo) running ``migrl sft``
and ``migrl grpo``; both ranks must end with the same weights, and SFT must match one process on the
same global batch.

How the launch works here: ``accelerate launch --cpu`` runs ONE process unless mpirun is installed
(accelerate's simple launcher); ``--multi_gpu`` goes through torchrun, and each rank, finding no GPU
(``use_cpu``, which migrl sets without one), joins a gloo group as DistributedType.MULTI_CPU.

What is compared:
- SFT: 2 ranks x per-device batch 2 against 1 process x batch 2 x gradient accumulation 2, i.e. the same
  micro-batches, the same global batch of 4, the same optimizer steps. transformers averages per-micro-batch
  token means for this model (Qwen2.5-VL has ``accepts_loss_kwargs = False``), in accumulation and across
  ranks alike, so that is the run DDP must reproduce; one batch of 4 weighs tokens differently (~1e-3 apart
  here) and is not the same computation.
- GRPO: each rank samples its own completions, with seeds of its own (TRL seeds rank r with seed + r), so
  no single-process run draws the same ones; compared instead: the ranks' weights (bit-identical), and that
  training did something (a reward with spread, a non-zero gradient, weights moved, vision frozen).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from migrl.data.world import write_split
from migrl.jsonl import read_jsonl

pytestmark = pytest.mark.slow  # each launch starts 2 Python processes with torch + TRL: ~20 s

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
COMMON = ["--learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--seed", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(stage: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    if processes > 1:
        head = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port()), "-m", "migrl.cli"]
    else:
        head = [sys.executable, "-m", "migrl.cli"]
    done = subprocess.run([*head, stage, *args, *COMMON], env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    """One-picture grounding items: the base's answers to them sometimes overlap the target, so rewards
    have spread and GRPO has a gradient (on the multi-image tasks the untrained base scores 0 throughout)."""
    world = write_split(tmp_path_factory.mktemp("dp-rl") / "world", "train", 40, seed=3, tasks=("grounding",))
    rows = [r for r in read_jsonl(world) if len(r["images"]) == 1][:8]
    path = world.with_name("one_image.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_two_ranks_agree_and_match_one_process_on_the_same_global_batch(sft_data, tiny_base, tmp_path):
    run = ["--data", str(sft_data), "--max_steps", "3", "--lora_dropout", "0"]
    launch("sft", *run, "--output_dir", str(tmp_path / "dp"), "--per_device_train_batch_size", "2")
    launch("sft", *run, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "2",
           "--gradient_accumulation_steps", "2", processes=1)

    dp = json.loads((tmp_path / "dp" / "sft_summary.json").read_text())
    one = json.loads((tmp_path / "one" / "sft_summary.json").read_text())
    assert dp["world_size"] == 2 and one["world_size"] == 1 and dp["steps"] == one["steps"] == 3
    digests = dp["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold the same weights, bit for bit
    base, after_dp, after_one = weights(tiny_base), weights(tmp_path / "dp"), weights(tmp_path / "one")
    moved = max_diff(after_dp, base)
    assert moved > 1e-4  # the LoRA was merged into changed weights
    assert max_diff(after_dp, after_one) <= 1e-6 + 1e-3 * moved  # the same training, up to float reduction order
    assert dp["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)


@pytest.fixture(scope="module")
def grpo_start():
    """The shipped tiny Qwen3-VL base: to the paper's CoT prompt it writes bare, parseable boxes that sometimes
    overlap the target, so a group has spread. (The shipped Qwen2.5-VL base, pretrained further on several
    pictures at a time, writes malformed boxes to that prompt: every reward 0, nothing to learn from.)"""
    from migrl.models.loading import shipped_base

    folder = shipped_base("qwen3-vl")
    assert (folder / "model.safetensors").exists(), "the shipped tiny Qwen3-VL base is missing"
    return folder


def test_grpo_two_ranks_agree_and_train(rl_data, grpo_start, tmp_path):
    out = tmp_path / "dp"
    launch("grpo", "--model_name_or_path", str(grpo_start), "--data", str(rl_data), "--output_dir", str(out),
           "--rewards", "iou", "--num_generations", "4",
           "--per_device_train_batch_size", "8", "--max_steps", "3", "--max_completion_length", "48",
           "--temperature", "1.0", "--beta", "0.01", "--rollout_log_every", "1")

    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in h]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)
    assert any(h["reward_std"] > 0 and h["grad_norm"] > 1e-3 for h in logs)  # a group with spread drove an update
    before, after = weights(grpo_start), weights(out)
    vision = [k for k in before if k.startswith("model.visual.")]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)  # frozen on every rank
    assert max_diff({k: after[k] for k in after if k not in vision}, {k: before[k] for k in before if k not in vision}) > 1e-4
    # Only rank 0 logs rollouts: rollout_log_count (4) of its 8 completions per step, not twice that.
    assert len(read_jsonl(out / "rollouts.jsonl")) == 3 * 4
