"""Batch planning keeps the paper's global batch on any GPU count; launch configs load in accelerate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migrl.scale import grpo_step_completions, paper_batches, plan_batch

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch"


@pytest.mark.parametrize(
    "global_batch, per_device, world_size, accum",
    [(32, 4, 8, 1), (64, 4, 8, 2), (32, 2, 16, 1), (32, 1, 4, 8), (64, 4, 1, 16), (32, 32, 1, 1)],
)
def test_plan_batch(global_batch, per_device, world_size, accum):
    assert plan_batch(global_batch, per_device, world_size) == accum


def test_plan_batch_gives_the_global_batch_wherever_it_can():
    for global_batch in (32, 64, 96):
        for world_size in range(1, 17):
            for per_device in range(1, 9):
                if global_batch % (per_device * world_size) == 0:
                    assert per_device * world_size * plan_batch(global_batch, per_device, world_size) == global_batch
                else:
                    with pytest.raises(ValueError):
                        plan_batch(global_batch, per_device, world_size)


def test_plan_batch_names_the_numbers_when_it_cannot():
    with pytest.raises(ValueError, match=r"global batch 32 .* per_device 3 x world_size 8 .* multiple of 24") as err:
        plan_batch(32, 3, 8)
    assert "[1, 2, 4]" in str(err.value)  # the per_device values that would work
    with pytest.raises(ValueError, match="no per_device works: 32 is not a multiple of world_size 3"):
        plan_batch(32, 4, 3)
    with pytest.raises(ValueError, match="per_device 8 x world_size 8"):
        plan_batch(32, 8, 8)  # 64 per step > 32
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        plan_batch(32, 4, 0)


def test_paper_batches_match_the_recipes():
    batches = paper_batches()
    for name in ("sft", "sft_answer_only"):
        recipe = yaml.safe_load((REPO / "recipes" / "paper" / f"{name}.yaml").read_text())
        b = batches[name]
        assert recipe["per_device_train_batch_size"] == b.per_device
        assert recipe["gradient_accumulation_steps"] == plan_batch(b.global_batch, b.per_device, 8)
    grpo = yaml.safe_load((REPO / "recipes" / "paper" / "grpo.yaml").read_text())
    b = batches["grpo"]
    assert grpo["per_device_train_batch_size"] == b.per_device == 2 * grpo["num_generations"]
    assert grpo["gradient_accumulation_steps"] == b.grad_accum == 4
    assert grpo_step_completions(8) == 512


@pytest.mark.parametrize("path", sorted(LAUNCH.glob("*.yaml")), ids=lambda p: p.name)
def test_launch_configs_load_in_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    cfg = load_config_from_file(str(path))  # ClusterConfig(**yaml) rejects unknown keys
    assert f"accelerate launch --config_file launch/{path.name} -m migrl.cli " in path.read_text()
    assert cfg.num_processes == 8 * cfg.num_machines and cfg.mixed_precision == "bf16"
    # accelerate passes deepspeed_config keys on as launch arguments: each must be one.
    dests = {action.dest for action in launch_command_parser()._actions}
    assert set(cfg.deepspeed_config) <= dests
    if cfg.num_machines > 1:
        assert cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0


def test_launch_configs_cover_the_issue():
    stages = {}
    for path in LAUNCH.glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        ds = cfg.get("deepspeed_config") or {}
        kind = (cfg["distributed_type"], ds.get("zero_stage"), ds.get("offload_param_device"), cfg["num_machines"])
        stages[path.name] = kind
    assert set(stages.values()) == {
        ("MULTI_GPU", None, None, 1), ("DEEPSPEED", 2, "none", 1), ("DEEPSPEED", 3, "none", 1),
        ("DEEPSPEED", 3, "cpu", 1), ("DEEPSPEED", 3, "none", 2),
    }
