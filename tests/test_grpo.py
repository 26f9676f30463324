import json

import pytest
import torch
from safetensors.torch import load_file

from migrl.data.world import ID_TASKS, write_split
from migrl.jsonl import read_jsonl
from migrl.models.loading import load_processor
from migrl.records import data_root, read_records
from migrl.stages.grpo import GRPOStageConfig, build_dataset, train_grpo


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("rl") / "world", "train", 2, seed=3, tasks=ID_TASKS)


def _cfg(data, out, model, **kw):
    base = dict(
        output_dir=str(out), model_name_or_path=str(model), data=str(data), num_generations=2,
        per_device_train_batch_size=4, max_steps=2, max_completion_length=16, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
        rollout_log_every=1, temperature=1.0, beta=0.01, seed=0,
    )
    return GRPOStageConfig(**{**base, **kw})


def test_prompts_over_max_prompt_length_are_refused_not_truncated(rl_data, tiny_base):
    records = read_records(rl_data)
    cfg = _cfg(rl_data, "unused", tiny_base, max_prompt_length=40)
    dataset, errors = build_dataset(records, data_root(rl_data), load_processor(tiny_base), cfg)
    assert dataset is None and len(errors) == len(records)
    assert all("over max_prompt_length 40" in e and "image" in e for e in errors)
    assert errors[0].startswith(f"record {records[0].id}:")


def test_dataset_rows_carry_targets_in_the_model_space(rl_data, tiny_base):
    records = read_records(rl_data)
    dataset, errors = build_dataset(records, data_root(rl_data), load_processor(tiny_base), _cfg(rl_data, "x", tiny_base))
    assert not errors and len(dataset) == len(records)
    row = dataset[0]
    assert row["id"] == records[0].id and len(row["images"]) == len(records[0].images)
    assert row["target"]["image_index"] == records[0].target.image_index


@pytest.mark.slow
def test_grpo_trains_logs_rollouts_and_keeps_vision_frozen(rl_data, tiny_base, tmp_path):
    out = tmp_path / "grpo"
    summary = train_grpo(_cfg(rl_data, out, tiny_base))
    assert summary["steps"] == 2
    log = summary["last_log"]
    for key in ("reward", "rewards/iou_reward/mean", "rewards/format_reward/mean", "frac_reward_zero_std", "completions/mean_length"):
        assert key in log
    rollouts = read_jsonl(out / "rollouts.jsonl")
    assert rollouts and {"step", "id", "completion", "parsed_box", "rewards", "target"} <= set(rollouts[0])
    before, after = load_file(str(tiny_base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    vision = [k for k in before if k.startswith("visual.")]
    assert any(k.startswith("visual.merger.") for k in vision) and any(k.startswith("visual.blocks.") for k in vision)
    assert all(torch.equal(before[k].float(), after[k].float()) for k in vision)


@pytest.mark.slow
def test_grpo_resumes_from_its_last_checkpoint(rl_data, tiny_base, tmp_path):
    out = tmp_path / "grpo"
    train_grpo(_cfg(rl_data, out, tiny_base, save_strategy="steps", save_steps=1, max_steps=1))
    assert (out / "checkpoint-1").is_dir()
    state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    summary = train_grpo(_cfg(rl_data, out, tiny_base, save_strategy="steps", save_steps=1, max_steps=2))
    assert summary["steps"] == 2
    assert (out / "checkpoint-2").is_dir()
    steps = [h["step"] for h in json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"] if "reward" in h]
    assert steps == [1, 2]  # step 1 came from the checkpoint, only step 2 was trained again
