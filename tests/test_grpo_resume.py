"""A GRPO run killed with SIGKILL and rerun ends with the weights of a run never interrupted.

The end weights depend on everything a resume must restore: the optimizer's moments, the learning-rate
schedule, the RNG the rollouts are sampled with and the position in the data. A resume that lost any of
them would train the later steps differently.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from migrl.data.world import write_split
from migrl.stages.grpo import GRPOStageConfig, train_grpo

pytestmark = pytest.mark.slow


def settings(data, out, model):
    return dict(output_dir=str(out), model_name_or_path=str(model), data=str(data), num_generations=2,
                per_device_train_batch_size=4, max_steps=3, max_completion_length=8, learning_rate=5e-4,
                lr_scheduler_type="linear", temperature=1.0, beta=0.01, seed=0, logging_steps=1,
                # the base earns no reward yet (all advantages 0): TRL's entropy bonus gives every step a
                # gradient that depends on the sampled rollouts, hence on the RNG and the data order
                entropy_coef=0.01,
                save_strategy="steps", save_steps=1, report_to="none", use_cpu=True, bf16=False, rollout_log_every=0)


def test_killed_and_resumed_grpo_ends_where_an_uninterrupted_run_does(tmp_path, tiny_base):
    data = write_split(tmp_path / "world", "train", 3, seed=11, tasks=("common_object", "region"))
    straight = train_grpo(GRPOStageConfig(**settings(data, tmp_path / "straight", tiny_base)))
    assert straight["steps"] == 3

    out = tmp_path / "killed"
    script = ("import json, sys; from migrl.stages.grpo import GRPOStageConfig, train_grpo; "
              "train_grpo(GRPOStageConfig(**json.loads(sys.argv[1])))")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(settings(data, out, tiny_base))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (out / "checkpoint-1" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "grpo_summary.json").exists() and not (out / "checkpoint-3").exists()

    resumed = train_grpo(GRPOStageConfig(**settings(data, out, tiny_base)))
    assert resumed["steps"] == 3
    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "reward" in h] == [1, 2, 3]
    want, got = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    base = load_file(str(tiny_base / "model.safetensors"))
    moved = [k for k in want if not torch.allclose(want[k].float(), base[k].float(), atol=1e-4)]
    assert moved  # training changed the language model, so equal end weights mean equal training
    for k in want:
        assert torch.allclose(got[k].float(), want[k].float(), atol=1e-6), k
