"""A model folder's generation_config.json must not change how migrl generates locally.

Qwen2.5-VL-7B-Instruct ships do_sample, temperature 1e-6 and repetition_penalty 1.05 (Qwen2-VL also
top_k 1, top_p 0.001). transformers' ``generate`` fills every field its GenerationConfig leaves unset
from the model's, so here a copy of the tiny base carries those and more (min_p, no_repeat_ngram_size,
typical_p: fields TRL's GRPOTrainer leaves unset), and every local generation path must give exactly
what it gives with the shipped folder: the batched engine (eval, reject, a local teacher), the greedy
baseline, and GRPO rollouts.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from migrl.engines.base import SamplingParams
from migrl.engines.hf import HFEngine, generate_one_by_one
from migrl.generation import request_for
from migrl.models.loading import load_model, load_processor
from migrl.records import data_root, read_records

# The released values, and fields that TRL does not set (each would change what is sampled).
FOLDER_SAMPLING = {"do_sample": True, "temperature": 1e-6, "repetition_penalty": 1.05, "top_k": 1, "top_p": 0.001,
                   "min_p": 0.9, "typical_p": 0.2, "no_repeat_ngram_size": 1}


@pytest.fixture(scope="module")
def folder_with_sampling(tiny_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("released-like") / "model"
    shutil.copytree(tiny_base, folder)
    config = json.loads((tiny_base / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, **FOLDER_SAMPLING}))
    return folder


@pytest.fixture(scope="module")
def models(tiny_base, folder_with_sampling):
    """The shipped tiny base and its copy whose generation_config.json sets sampling fields."""
    shipped = load_model(tiny_base, dtype=torch.float32)
    copy = load_model(folder_with_sampling, dtype=torch.float32)
    assert copy.generation_config.repetition_penalty == 1.05 and copy.generation_config.min_p == 0.9
    return shipped, copy


@pytest.fixture(scope="module")
def requests(world_test):
    records = read_records(world_test)
    return [request_for(r, data_root(world_test)) for r in records[:4]]


def test_the_engine_greedy_and_sampled_ignores_the_folders_sampling(models, requests, tiny_base):
    processor = load_processor(tiny_base)
    greedy, sampled = SamplingParams(max_new_tokens=24), SamplingParams(max_new_tokens=24, temperature=1.0, n=3)

    def run(model):
        engine = HFEngine(model, processor, batch_size=12)
        torch.manual_seed(0)
        return engine.generate(requests, greedy), engine.generate(requests, sampled)

    shipped, copy = models
    assert run(copy) == run(shipped)
    assert any(len(set(s)) > 1 for s in run(shipped)[1])  # samples differ: top_k 1 would have shown


def test_the_greedy_baseline_ignores_the_folders_penalties(models, requests, tiny_base):
    processor = load_processor(tiny_base)
    shipped, copy = models
    expected = generate_one_by_one(shipped, processor, requests, max_new_tokens=24)
    assert generate_one_by_one(copy, processor, requests, max_new_tokens=24) == expected
    assert copy.generation_config.no_repeat_ngram_size == 1  # the folder's own config is back afterwards


def test_grpo_rollouts_ignore_the_folders_sampling(world_test, tiny_base, folder_with_sampling, tmp_path):
    from migrl.stages.grpo import GRPOStageConfig, MigrlGRPOTrainer, build_dataset
    from migrl.rewards import format_reward

    processor = load_processor(tiny_base)
    cfg = GRPOStageConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=8, max_steps=1,
                          max_completion_length=12, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
                          beta=0.0, seed=0, remove_unused_columns=False, temperature=1.0, disable_tqdm=True)
    records = [r for r in read_records(world_test) if r.target is not None][:2]
    dataset, errors = build_dataset(records, data_root(world_test), processor, cfg)
    assert not errors

    def rollouts(folder, share_group_compute):
        model = load_model(folder, dtype=torch.float32)
        trainer = MigrlGRPOTrainer(model=model, reward_funcs=[format_reward], args=cfg, train_dataset=dataset,
                                   processing_class=processor, share_group_compute=share_group_compute)
        batch = next(iter(trainer.get_train_dataloader()))
        torch.manual_seed(0)
        out = trainer._generate_and_score_completions(batch)
        return out["completion_ids"], trainer.model.generation_config

    for share in (True, False):  # migrl's one-prefill-per-group path and TRL's own
        expected, _ = rollouts(tiny_base, share)
        got, config = rollouts(folder_with_sampling, share)
        assert torch.equal(got, expected), f"share_group_compute={share}"
        assert config.min_p == 0.9  # the folder's config is the model's again: checkpoints save it
