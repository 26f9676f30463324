"""The paper recipes hold the paper's settings (DESIGN.md table) and parse with TRL's parser."""

from pathlib import Path

import pytest
from trl import TrlParser

from migrl.recipe import cpu_overrides
from migrl.stages.grpo import GRPOStageConfig
from migrl.stages.sft import SFTStageConfig

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PAPER_GPUS = 8


def parse(cls, recipe):
    (cfg,) = TrlParser(dataclass_types=[cls]).parse_args_and_config(args=cpu_overrides(["--config", str(RECIPES / recipe)]))
    return cfg


def global_batch(cfg, gpus=PAPER_GPUS):
    return cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * gpus


def test_paper_cold_start():
    cfg = parse(SFTStageConfig, "paper/sft.yaml")
    assert cfg.use_lora and cfg.freeze_vision and cfg.cot and cfg.merge
    assert cfg.learning_rate == 1e-4 and cfg.lr_scheduler_type.value == "cosine"
    assert global_batch(cfg) == 32 and cfg.max_length == 8192 and (cfg.min_pixels, cfg.max_pixels) == (3136, 1003520)


def test_paper_answer_only_baseline():
    cfg = parse(SFTStageConfig, "paper/sft_answer_only.yaml")
    assert not cfg.cot and cfg.learning_rate == 2e-6 and global_batch(cfg) == 64


def test_paper_grpo():
    cfg = parse(GRPOStageConfig, "paper/grpo.yaml")
    assert cfg.num_generations == 8 and cfg.temperature == 0.7 and cfg.beta == 1e-3
    assert cfg.learning_rate == 5e-5 and cfg.max_completion_length == 1024
    assert cfg.rewards == ["iou", "format"] and cfg.reward_weights == [1.0, 0.5]
    assert cfg.loss_type == "grpo" and cfg.scale_rewards == "group" and not cfg.use_bias_correction_kl
    # "batch 2, grad accum 4": 2 prompts x 8 rollouts per device per forward
    assert cfg.per_device_train_batch_size == 2 * cfg.num_generations and cfg.gradient_accumulation_steps == 4
    assert cfg.freeze_vision and not cfg.dynamic_filter


@pytest.mark.parametrize("recipe", sorted(p.relative_to(RECIPES).as_posix() for p in (RECIPES / "demo").rglob("*.yaml") if p.stem in ("sft", "grpo")))
def test_demo_recipes_parse(recipe, tmp_path):
    from migrl.recipe import stage_config

    cls = SFTStageConfig if "sft" in recipe else GRPOStageConfig
    # as the demo parses them: a family's own recipe extends the shared one (merged into output_dir/recipe.yaml)
    cfg = stage_config(cls, "test", ["--config", str(RECIPES / recipe), "--output_dir", str(tmp_path)])
    assert cfg.use_cpu
    if recipe == "demo/sft.yaml":
        assert cfg.max_steps == 300 and cfg.learning_rate == 2e-3  # the measured cold start (its comment says why)
