"""migrl's GRPO computes a group's shared prompt and images once; these tests hold it to TRL's numbers.

The reference is stock ``trl.GRPOTrainer`` on the same model, data, config and seeds: the same rollouts,
log-probs, entropies, loss and gradients (to float rounding), so the speed of bench/grpo_step.py is not
bought with a different algorithm.
"""

import pytest
import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from migrl.data.world import write_split
from migrl.images import load_image
from migrl.models.loading import load_model, load_processor
from migrl.models.peft import freeze_vision
from migrl.records import data_root, read_records
from migrl.rewards import completion_text, format_reward, iou_reward
from migrl.stages.grpo import GRPOStageConfig, MigrlGRPOTrainer, build_dataset
from migrl.training.grpo_packing import group_order, pack_shared_prefix, row_groups
from migrl.training.vision_dedup import SharedImageProcessor, dedup_vision


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    # common_object and region items: 2-4 images each, prompts of different lengths (left padding)
    return write_split(tmp_path_factory.mktemp("rl") / "world", "train", 2, seed=3, tasks=("region", "common_object"))


def text_reward(completions, **kwargs):
    """A reward that varies with the text (the tiny model earns no IoU in 12 tokens): non-zero advantages."""
    return [(sum(map(ord, completion_text(c))) % 7) / 7 for c in completions]


# The model of each family the equivalence is held to: the shipped tiny Qwen2.5-VL base, the released-shaped
# Qwen3-VL-8B-Instruct folder (tiny random weights, DeepStack on: its visual features join decoder layers 0 and 1)
# and the released-shaped Qwen3.5 folder (Gated DeltaNet layers beside attention: never packed, TRL's path for
# the decoder, the vision work still shared).
SLOW = pytest.mark.slow
FOLDER_FIXTURES = {"qwen3_vl": "released_qwen3_vl_folder", "qwen3_5": "released_qwen3_5_folder"}
PACKED = {"qwen2_5_vl": True, "qwen3_vl": True, "qwen3_5": False}


@pytest.fixture
def family_folder(request, family):
    return request.getfixturevalue(FOLDER_FIXTURES[family]) if family in FOLDER_FIXTURES else None


def make_trainer(cls, data, out, rewards=(iou_reward, format_reward), folder=None, **kw):
    processor = load_processor(folder)
    base = dict(output_dir=str(out), num_generations=4, per_device_train_batch_size=8, max_steps=1,
                max_completion_length=12, learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none",
                use_cpu=True, bf16=False, beta=0.04, seed=0, loss_type="grpo", remove_unused_columns=False,
                temperature=1.0, max_grad_norm=0.0, disable_tqdm=True)
    cfg = GRPOStageConfig(**{**base, **kw})
    dataset, errors = build_dataset(read_records(data), data_root(data), processor, cfg)
    assert not errors
    model = load_model(folder, dtype=torch.float32)
    freeze_vision(model)
    trainer = cls(model=model, reward_funcs=list(rewards), args=cfg, train_dataset=dataset,
                  processing_class=processor)
    trainer.model.train()
    return trainer


def close(a, b, rel=1e-4):
    """Equal to float rounding, measured against the tensor's scale (summation order differs)."""
    return bool((a - b).abs().max() <= rel * b.abs().max() + 1e-7)


def generated(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(0)
    return trainer._generate_and_score_completions(batch)


# -- pieces -------------------------------------------------------------------------------------------

def test_rows_share_a_group_only_with_the_same_tokens_and_the_same_images():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [0, 5, 6], [7, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [0, 1, 1], [1, 1, 1]])
    a, b = torch.zeros(4, 3), torch.ones(4, 3)
    # rows 0-2 ask the same question; row 2 about another picture; row 3 has another prompt
    assert row_groups(ids, mask, [a, a.clone(), b, a]) == [0, 0, 1, 2]
    assert row_groups(ids, mask, None) == [0, 0, 0, 1]


def test_group_order_follows_the_draw_and_pulls_each_group_together():
    perm = torch.tensor([5, 0, 3, 4, 1, 2])
    groups = [0, 0, 0, 1, 1, 1]  # rows 0-2 one prompt, rows 3-5 another
    assert group_order(perm, groups).tolist() == [3, 4, 5, 0, 1, 2]  # row 5 came first: its group leads


def test_packed_sequence_shows_each_completion_the_prompt_and_itself_only():
    # two rows of one group: prompt [pad, 10, 11, 12] (left padding), completions [20, 21] and [30, pad]
    ids = torch.tensor([[0, 10, 11, 12, 20, 21], [0, 10, 11, 12, 30, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    pos = torch.arange(6).expand(3, 2, 6) * 10
    packed = pack_shared_prefix(ids, mask, 2, [0, 0], pos, None, None, pad_token_id=0,
                                attn_implementation="sdpa", mask_dtype=torch.float32)
    inp = packed.model_inputs
    # prompt minus its last token, then (last prompt token, completion) per row
    assert inp["input_ids"].tolist() == [[10, 11, 12, 20, 21, 12, 30, 0]]
    assert inp["position_ids"][0, 0].tolist() == [10, 20, 30, 40, 50, 30, 40, 50]
    # the token predicted at each position; -100 where nothing is scored (and for the padded completion token)
    assert inp["shift_labels"].tolist() == [[-100, -100, 20, 21, -100, 30, -100, -100]]
    allowed = inp["attention_mask"][0, 0].int().tolist()
    assert allowed[5] == [1, 1, 0, 0, 0, 1, 0, 0]  # second block's head: the prompt, itself
    assert allowed[6] == [1, 1, 0, 0, 0, 1, 1, 0]  # not the first completion, not its padded token
    assert allowed[4] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert packed.row_index.tolist() == [[0, 0], [0, 0]] and packed.col_index.tolist() == [[2, 3], [5, 6]]
    eager = pack_shared_prefix(ids, mask, 2, [0, 0], pos, None, None, 0, "eager", torch.float32).model_inputs
    assert eager["attention_mask"].dtype == torch.float32 and (eager["attention_mask"] < 0).sum() == (inp["attention_mask"] == 0).sum()


class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, images, **kw):
        self.calls.append(len(images))
        return self.inner(images, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_shared_image_processor_returns_what_the_processor_returns(rl_data):
    processor = load_processor(None)
    records = read_records(rl_data)
    root = data_root(rl_data)
    images = [[load_image(root / p) for p in r.images] for r in records for _ in range(3)]  # 3 copies, fresh decodes
    plain = processor.image_processor(images, return_tensors="pt")
    counting = Counting(processor.image_processor)
    shared = SharedImageProcessor(counting)
    out = shared(images, return_tensors="pt")
    again = shared([[load_image(root / p) for p in r.images] for r in records], return_tensors="pt")
    assert torch.equal(out["pixel_values"], plain["pixel_values"]) and torch.equal(out["image_grid_thw"], plain["image_grid_thw"])
    as_in_chat_template = shared(images)  # apply_chat_template passes no return_tensors: tensors all the same
    assert torch.equal(as_in_chat_template["pixel_values"], plain["pixel_values"])
    assert counting.calls == [sum(len(r.images) for r in records)]  # each distinct image processed once; later calls are cached
    assert again["pixel_values"].shape[0] * 3 == plain["pixel_values"].shape[0]


def test_vision_tower_encodes_each_distinct_image_once(rl_data, base_model):
    _, processor = base_model
    model = load_model(None, dtype=torch.float32)
    record = read_records(rl_data)[0]
    images = [load_image(data_root(rl_data) / p) for p in record.images] * 3
    inputs = processor.image_processor(images, return_tensors="pt")
    with torch.no_grad():
        want = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        seen = []
        hook = model.model.visual.patch_embed.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
        dedup_vision(model.model.visual)
        got = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        hook.remove()
    assert seen == [inputs["pixel_values"].shape[0] // 3]
    assert torch.allclose(got.pooler_output, want.pooler_output, atol=1e-5)
    assert torch.allclose(got.last_hidden_state, want.last_hidden_state, atol=1e-5)


# -- against stock TRL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family, use_lora", [("qwen2_5_vl", False), ("qwen2_5_vl", True),
                                              pytest.param("qwen3_vl", False, marks=SLOW), pytest.param("qwen3_vl", True, marks=SLOW),
                                              pytest.param("qwen3_5", False, marks=SLOW)])
def test_packed_forward_gives_trls_logps_entropies_and_gradients(rl_data, tmp_path, use_lora, family, family_folder):
    trainer = make_trainer(MigrlGRPOTrainer, rl_data, tmp_path, folder=family_folder)
    if use_lora:  # LoRA on the language model, as in the demo recipe (random B: the adapter changes the outputs)
        from peft import LoraConfig, get_peft_model

        trainer.model = get_peft_model(trainer.model, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False))
    out = generated(trainer)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    c = out["completion_ids"].size(1)
    fields = {k: out[k] for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    keep = out["completion_mask"].bool()
    weights = torch.randn(keep.shape, generator=torch.Generator().manual_seed(1))

    def run(fn):
        trainer.model.zero_grad()
        logps, entropy, _ = fn(trainer, trainer.model, ids, mask, c, compute_entropy=True, **fields)
        ((logps * weights * keep).sum() + 0.1 * (entropy * keep).sum()).backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        return logps.detach(), entropy.detach(), grads

    rest = {"mm_token_type_ids": fields["mm_token_type_ids"]}
    packable = trainer._packable(trainer.model, fields["pixel_values"], fields["image_grid_thw"], fields["num_images"],
                                 False, rest)
    assert (packable is not None) == PACKED[family]  # the packed path runs where it may (TRL's would pass trivially)
    lp_trl, ent_trl, g_trl = run(GRPOTrainer._get_per_token_logps_and_entropies)
    lp, ent, g = run(MigrlGRPOTrainer._get_per_token_logps_and_entropies)
    assert len(set(out["prompt_mask"].sum(1).tolist())) > 1  # prompts of different lengths (left padding) in one batch
    assert torch.allclose(lp[keep], lp_trl[keep], atol=1e-4) and torch.equal(lp[~keep], lp_trl[~keep])
    assert torch.allclose(ent[keep], ent_trl[keep], atol=1e-4)
    assert g.keys() == g_trl.keys() and g
    for name in g:
        assert close(g[name], g_trl[name]), name


@pytest.mark.slow  # the step test below also compares the rollouts; this one looks at generation alone
def test_generation_from_one_prefill_per_group_samples_what_trl_samples(rl_data, tmp_path):
    stock = generated(make_trainer(GRPOTrainer, rl_data, tmp_path / "stock"))
    ours = generated(make_trainer(MigrlGRPOTrainer, rl_data, tmp_path / "migrl"))
    assert torch.equal(ours["completion_ids"], stock["completion_ids"])
    assert torch.equal(ours["completion_mask"], stock["completion_mask"])
    assert torch.equal(ours["advantages"], stock["advantages"])
    keep = stock["completion_mask"].bool()
    assert torch.allclose(ours["ref_per_token_logps"][keep], stock["ref_per_token_logps"][keep], atol=1e-4)


class GradsBeforeStep(TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def one_step(cls, data, out, folder=None, **kw):
    trainer = make_trainer(cls, data, out, rewards=(text_reward, format_reward), folder=folder, **kw)
    grads = GradsBeforeStep()
    trainer.add_callback(grads)
    trainer.train()
    loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    return loss, grads.grads, list(trainer._logs["completion"])


# every loss on the default family; the grpo loss on each other family (a Qwen3.5 step alone is minutes on 2 cores)
@pytest.mark.parametrize("family, loss_type", ["qwen2_5_vl grpo".split(), pytest.param("qwen2_5_vl", "dr_grpo", marks=SLOW),
                                               pytest.param("qwen2_5_vl", "dapo", marks=SLOW),
                                               pytest.param("qwen3_vl", "grpo", marks=SLOW), pytest.param("qwen3_5", "grpo", marks=SLOW)])
def test_a_step_has_stock_trls_loss_and_gradients(rl_data, tmp_path, loss_type, family, family_folder):
    # 2 prompts x 4 rollouts in 2 micro-batches: TRL scatters a group's rollouts over both, migrl keeps
    # each group in one; the accumulated gradient is the same sum.
    kw = dict(loss_type=loss_type, per_device_train_batch_size=4, gradient_accumulation_steps=2, folder=family_folder)
    loss_trl, g_trl, completions_trl = one_step(GRPOTrainer, rl_data, tmp_path / "stock", **kw)
    loss, g, completions = one_step(MigrlGRPOTrainer, rl_data, tmp_path / "migrl", **kw)
    assert completions == completions_trl
    assert loss == pytest.approx(loss_trl, abs=1e-5)
    assert g.keys() == g_trl.keys() and g
    assert not any(k.startswith("model.visual.") for k in g)  # frozen vision, as in the recipes
    assert sum(v.norm() for v in g_trl.values()) > 1e-3  # rewards varied: a real policy gradient
    for name in g:
        assert close(g[name], g_trl[name]), name
