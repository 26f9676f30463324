"""The memory plan's exact parts match real models: parameter counts, LoRA counts, AdamW state bytes."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from migrl.plan import (
    SHAPES,
    Setting,
    VLShape,
    adamw_state_bytes,
    estimate,
    lora_count,
    param_count,
    plan_table,
    shape_from_config,
    to_config,
)

# A mid-size shape built for real (about 20M parameters, untied head, GQA) next to the tiny shipped base.
MID = VLShape("mid", hidden=512, layers=4, heads=8, kv_heads=2, intermediate=1536, vocab=4096, tied=False,
              vision_depth=4, vision_hidden=256, vision_intermediate=768, vision_heads=4)


def real_counts(model) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), len(params)


@pytest.fixture(scope="module")
def tiny_model():
    """The tiny factory's base shape (tied embeddings, the shipped base's sizes), random init."""
    from migrl.models.tiny import SHAPES as TINY_SHAPES
    from migrl.models.tiny import make_config, tokenizer_corpus, train_tokenizer

    shape = TINY_SHAPES["base"]
    config = make_config(train_tokenizer(tokenizer_corpus(), shape.vocab_size), shape)
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


def test_count_matches_the_tiny_model(tiny_model):
    model = tiny_model
    assert model.config.tie_word_embeddings
    pc = param_count(shape_from_config(model.config))
    assert (pc.total, pc.tensors) == real_counts(model)
    assert pc.vision + pc.merger == sum(p.numel() for p in model.model.visual.parameters())


def test_count_matches_a_mid_size_model_built_for_real():
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(to_config(MID))
    pc = param_count(MID)
    assert (pc.total, pc.tensors) == real_counts(model)
    assert pc.language == sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    assert shape_from_config(model.config, "mid") == MID


@pytest.mark.parametrize("size", sorted(SHAPES))
def test_count_matches_the_released_shapes_on_meta(size):
    shape = SHAPES[size]
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(to_config(shape))
    pc = param_count(shape)
    assert (pc.total, pc.tensors) == real_counts(model)


def test_released_totals_are_the_published_sizes():
    # Hub model cards: 3.75B, 8.29B, 33.5B, 73.4B parameters.
    totals = {k: round(param_count(s).total / 1e9, 2) for k, s in SHAPES.items()}
    assert totals == {"3b": 3.75, "7b": 8.29, "32b": 33.45, "72b": 73.41}


def test_lora_count_matches_peft(tiny_model):
    from peft import LoraConfig, get_peft_model

    from migrl.models.peft import LANGUAGE_MODEL_LINEARS

    model = copy.deepcopy(tiny_model)  # get_peft_model changes the model in place
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LANGUAGE_MODEL_LINEARS))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert lora_count(shape_from_config(model.config), 8) == (sum(p.numel() for p in trainable), len(trainable))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adamw_state_bytes_match_torch(dtype):
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(to_config(MID)).to(dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = sum(p.float().square().sum() for p in model.parameters())
    loss.backward()
    opt.step()
    real = sum(t.numel() * t.element_size() for state in opt.state.values() for t in state.values())
    pc = param_count(MID)
    assert real == adamw_state_bytes(pc.total, pc.tensors, torch.tensor([], dtype=dtype).element_size())


def test_sharding_lowers_the_persistent_memory():
    shape = SHAPES["7b"]
    grpo = Setting("grpo", "grpo", 0, micro_batch=16, seq_len=2524, logit_tokens=1024, rollouts_at_once=64,
                   prompt_len=1500, completion_len=1024, reference=True)
    ddp, z2, z3 = (estimate(shape, Setting(**{**grpo.__dict__, "zero": z})) for z in (0, 2, 3))
    assert ddp.persistent > z2.persistent > z3.persistent
    assert z3.gathered > 0 and z2.gathered == 0  # ZeRO-3 gathers the policy to generate
    # KV cache: 2 x 28 layers x 4 kv heads x 128 x 2524 tokens x 64 sequences x 2 bytes
    assert z2.kv_cache == pytest.approx(2 * 28 * 4 * 128 * 2524 * 64 * 2 / 1e9)
    # ZeRO-3: bf16 weights and the reference are split 8 ways; fp32 master + Adam = 12 bytes per trainable param
    n, nt = param_count(shape).total, param_count(shape).language
    assert z3.weights == pytest.approx(2 * n / 8 / 1e9) and z3.reference == pytest.approx(2 * n / 8 / 1e9)
    assert z3.optimizer == pytest.approx(12 * nt / 8 / 1e9)
    off = estimate(shape, Setting(**{**grpo.__dict__, "zero": 3, "offload": True}))
    assert off.optimizer == 0 and off.cpu > 0 and off.peak < z3.peak


def test_settings_are_validated():
    with pytest.raises(ValueError, match="zero must be"):
        Setting("x", "sft", 1)
    with pytest.raises(ValueError, match="ZeRO-3 only"):
        Setting("x", "sft", 2, offload=True)
    with pytest.raises(ValueError, match="unknown model"):
        plan_table("13b")


def test_plan_table_lists_every_setting():
    table = plan_table("7b", gpus=8)
    assert "8,292,166,656 parameters" in table
    rows = [line for line in table.splitlines() if line.startswith("| SFT") or line.startswith("| GRPO")]
    assert len(rows) == 8 and all(row.rstrip(" |").split("| ")[-1] in {"yes", "tight", "no"} for row in rows)
