"""The memory plan's exact parts match real models: parameter counts, LoRA counts, AdamW state bytes; Qwen2.5-VL,
Qwen3-VL and Qwen3-VL-MoE, each built by transformers from the same config (the released sizes on the meta
device, which allocates nothing)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import transformers
from transformers import Qwen2_5_VLForConditionalGeneration

from migrl.models.family import FAMILIES
from migrl.plan import (
    SHAPES,
    Qwen3VLMoeShape,
    Qwen3VLShape,
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
# Tiny Qwen3-VL shapes built for real: the dense one untied with head_dim != hidden / heads; the MoE tied, with
# a dense MLP layer among its sparse ones (mlp_only_layers) and a deepstack merger.
TINY_QWEN3 = Qwen3VLShape("tiny-qwen3-vl", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512,
                          tied=False, vision_depth=2, vision_hidden=32, vision_intermediate=64, vision_heads=2,
                          head_size=24, position_embeddings=64, deepstack=(0, 1))
TINY_MOE = Qwen3VLMoeShape("tiny-qwen3-vl-moe", hidden=64, layers=3, heads=4, kv_heads=2, intermediate=96, vocab=512,
                           tied=True, vision_depth=2, vision_hidden=32, vision_intermediate=64, vision_heads=2,
                           head_size=32, position_embeddings=64, deepstack=(1,), experts=4, experts_per_token=2,
                           moe_intermediate=32, mlp_only_layers=(1,))


def real_counts(model) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), len(params)


def build(shape: VLShape, device: str = "cpu"):
    """The transformers model of the shape's family (the class migrl's family registry loads it with)."""
    config = to_config(shape)
    with torch.device(device):
        return getattr(transformers, FAMILIES[config.model_type].model_class)(config)


def trainable_lora(model, r: int) -> tuple[int, int]:
    from peft import LoraConfig, get_peft_model

    from migrl.models.peft import LANGUAGE_MODEL_LINEARS

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=16, target_modules=LANGUAGE_MODEL_LINEARS))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    return sum(p.numel() for p in trainable), len(trainable)


def assert_counts_match(shape: VLShape, model) -> None:
    """Total and tensors, the vision / projector / language split, and the shape read back from the config."""
    pc = param_count(shape)
    assert (pc.total, pc.tensors) == real_counts(model)
    assert pc.vision + pc.merger == sum(p.numel() for p in model.model.visual.parameters())
    lm_head = 0 if shape.tied else model.lm_head.weight.numel()
    assert pc.language == sum(p.numel() for p in model.model.language_model.parameters()) + lm_head
    assert shape_from_config(model.config, shape.name) == replace(shape, source="")


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
    assert_counts_match(shape, build(shape, "meta"))


@pytest.mark.parametrize("size", ["7b", "qwen3-vl-8b", "qwen3-vl-30b-a3b"])
def test_lora_count_matches_peft_on_the_released_shapes(size):
    shape = SHAPES[size]
    with torch.device("meta"):  # PEFT's adapters on meta too: nothing is allocated
        assert lora_count(shape, 64) == trainable_lora(build(shape, "meta"), 64)


def test_released_totals_are_the_published_sizes():
    # Hub model cards: 3.75B, 8.29B, 33.5B, 73.4B parameters; Qwen3-VL-8B-Instruct 8.77B (LM Studio's model page),
    # Qwen3-VL-30B-A3B-Instruct 31.07B (model listings; the sources are in the shapes' ``source``).
    totals = {k: round(param_count(s).total / 1e9, 2) for k, s in SHAPES.items()}
    assert totals == {"3b": 3.75, "7b": 8.29, "32b": 33.45, "72b": 73.41, "qwen3-vl-8b": 8.77,
                      "qwen3-vl-30b-a3b": 31.07}


def test_the_exact_qwen3_counts():
    eight, moe = param_count(SHAPES["qwen3-vl-8b"]), param_count(SHAPES["qwen3-vl-30b-a3b"])
    assert (eight.total, eight.language, eight.vision + eight.merger) == (8_767_123_696, 8_190_735_360, 576_388_336)
    assert (moe.total, moe.language, moe.vision + moe.merger) == (31_070_754_032, 30_532_122_624, 538_631_408)
    # 48 layers x 120 unrouted experts x 3 x 2048 x 768 idle per token: the language model's 3.35B are "A3B".
    assert moe.active == 3_891_664_112 and moe.active - moe.vision - moe.merger == 3_353_032_704


@pytest.mark.parametrize("shape", [TINY_QWEN3, TINY_MOE], ids=lambda s: s.name)
def test_count_matches_a_tiny_qwen3_model_built_for_real(shape):
    torch.manual_seed(0)
    model = build(shape)
    assert_counts_match(shape, model)
    assert lora_count(shape, 4) == trainable_lora(copy.deepcopy(model), 4)


def test_moe_active_count_leaves_out_the_unrouted_experts():
    model = build(TINY_MOE, "meta")
    experts = [m for m in model.modules() if type(m).__name__ == "Qwen3VLMoeTextExperts"]
    assert len(experts) == 2  # layer 1 is dense (mlp_only_layers)
    unrouted = (TINY_MOE.experts - TINY_MOE.experts_per_token) / TINY_MOE.experts
    assert param_count(TINY_MOE).idle == sum(p.numel() for m in experts for p in m.parameters()) * unrouted


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


def test_plan_prints_the_qwen3_tables(capsys):
    from migrl.cli import main

    assert main(["plan", "--model", "qwen3-vl-8b"]) == 0
    dense = capsys.readouterr().out
    assert dense.startswith("Qwen3-VL-8B: 8,767,123,696 parameters") and "ZeRO-3 caveat" not in dense
    assert main(["plan", "--model", "qwen3-vl-30b-a3b", "--gpus", "16"]) == 0
    moe = capsys.readouterr().out
    assert "31,070,754,032 parameters" in moe and "3,891,664,112 active per token (8 of 128 experts)" in moe
    assert "ZeRO-3 caveat (MoE)" in moe and "ds3_gather_for_generation" in moe and "q/k/v/o_proj in the 48" in moe
    for out in (dense, moe):
        rows = [line for line in out.splitlines() if line.startswith(("| SFT", "| GRPO"))]
        assert len(rows) == 8 and all(row.rstrip(" |").split("| ")[-1] in {"yes", "tight", "no"} for row in rows)


def test_plan_model_choices_are_the_shapes():
    from migrl.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0]
    plan = commands.choices["plan"]
    assert set(next(a for a in plan._actions if a.dest == "model").choices) == set(SHAPES)
    assert "Qwen2.5-VL or Qwen3-VL" in next(a.help for a in commands._choices_actions if a.dest == "plan")
