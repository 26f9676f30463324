"""GRPO's advantage and loss on small hand-made groups, through TRL's own code in migrl's trainer.

Rewards come from fixed reward functions, so the advantages of ``_generate_and_score_completions`` can
be computed by hand; the loss of ``compute_loss`` is checked against the GRPO formula written out here
(clipped importance ratio, KL to the reference, the normalisation of each ``loss_type``).
"""

import math

import pytest
import torch
from trl import GRPOTrainer

from migrl.data.world import write_split
from migrl.models.loading import load_model, load_processor
from migrl.models.peft import freeze_vision
from migrl.records import data_root, read_records
from migrl.stages.grpo import GRPOStageConfig, MigrlGRPOTrainer, build_dataset, reward_functions

G = 4  # rollouts per group; 2 groups per batch


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("rl") / "world", "train", 1, seed=5, tasks=("region", "common_object"))


def fixed(name, values):
    def reward(completions, **kwargs):
        assert len(completions) == len(values)
        return list(values)

    reward.__name__ = name
    return reward


def trainer_with(rl_data, out, rewards, weights=None, **kw):
    processor = load_processor(None)
    base = dict(output_dir=str(out), num_generations=G, per_device_train_batch_size=2 * G, max_steps=1,
                max_completion_length=8, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                bf16=False, beta=0.0, seed=0, loss_type="grpo", remove_unused_columns=False, reward_weights=weights)
    cfg = GRPOStageConfig(**{**base, **kw})
    dataset, errors = build_dataset(read_records(rl_data), data_root(rl_data), processor, cfg)
    assert not errors and len(dataset) == 2
    model = load_model(None, dtype=torch.float32)
    freeze_vision(model)
    trainer = MigrlGRPOTrainer(model=model, reward_funcs=rewards, args=cfg, train_dataset=dataset,
                               processing_class=processor, dynamic_filter=cfg.dynamic_filter)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = cfg.gradient_accumulation_steps  # set by Trainer's loop
    return trainer


def scored(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    ids = [b["id"] for b in batch]
    assert ids == [ids[0]] * G + [ids[G]] * G and ids[0] != ids[G]  # two prompts, G rollouts each, in order
    torch.manual_seed(0)
    return trainer._generate_and_score_completions(batch)


# -- advantages --------------------------------------------------------------------------------------

def test_advantage_is_the_group_normalised_reward_and_zero_for_equal_rewards(rl_data, tmp_path):
    # group 1: rewards 1, 0, .5, .5 -> mean .5, sample std sqrt(1/6); group 2: all .7 -> std 0
    trainer = trainer_with(rl_data, tmp_path, [fixed("r", [1.0, 0.0, 0.5, 0.5, 0.7, 0.7, 0.7, 0.7])])
    out = scored(trainer)
    a = 0.5 / (math.sqrt(1 / 6) + 1e-4)  # TRL adds 1e-4 to the std
    assert out["advantages"].tolist() == pytest.approx([a, -a, 0, 0, 0, 0, 0, 0], abs=1e-6)
    assert torch.isfinite(out["advantages"]).all() and (out["advantages"][G:] == 0).all()
    assert trainer._metrics["train"]["frac_reward_zero_std"][-1] == 0.5


def test_weighted_rewards_are_summed_before_normalising(rl_data, tmp_path):
    # the paper's 1.0 x IoU + 0.5 x format: totals 1.5, 0, 1, .5 | 0, 0, 0, 0
    iou = fixed("iou", [1.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    fmt = fixed("fmt", [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    out = scored(trainer_with(rl_data, tmp_path, [iou, fmt], weights=[1.0, 0.5]))
    totals = torch.tensor([1.5, 0.0, 1.0, 0.5])
    want = (totals - totals.mean()) / (totals.std() + 1e-4)  # torch.std is the sample std, as TRL's nanstd
    assert out["advantages"][:G].tolist() == pytest.approx(want.tolist(), abs=1e-6)
    assert out["advantages"][G:].tolist() == [0.0] * G


def test_dr_grpo_advantage_is_not_scaled(rl_data, tmp_path):
    out = scored(trainer_with(rl_data, tmp_path, [fixed("r", [1.0, 0.0, 0.5, 0.5, 0.7, 0.7, 0.7, 0.1])],
                              scale_rewards="none", loss_type="dr_grpo"))
    assert out["advantages"].tolist() == pytest.approx([0.5, -0.5, 0, 0, 0.15, 0.15, 0.15, -0.45], abs=1e-6)


def test_dynamic_filter_masks_groups_without_reward_variance(rl_data, tmp_path):
    trainer = trainer_with(rl_data, tmp_path, [fixed("r", [1.0, 0.0, 0.5, 0.5, 0.7, 0.7, 0.7, 0.7])], dynamic_filter=True)
    out = scored(trainer)
    assert out["completion_mask"][G:].sum() == 0 and out["completion_mask"][:G].sum() > 0
    assert out["num_items_in_batch"] == out["completion_mask"].sum()
    assert trainer._metrics["train"]["dynamic_filter/kept_group_frac"][-1] == 0.5


# -- the loss ----------------------------------------------------------------------------------------

def grpo_loss_by_hand(logps, old, ref, adv, mask, beta, eps_low, eps_high, loss_type, max_len, kl_times_ratio):
    ratio = torch.exp(logps - old)
    a = adv.unsqueeze(1)
    per_token = -torch.min(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a)
    kl = torch.exp(ref - logps) - (ref - logps) - 1  # the k3 estimator of KL(policy || reference)
    per_token = per_token + beta * (kl * ratio if kl_times_ratio else kl)
    if loss_type == "grpo":  # mean over each sequence's tokens, then over sequences
        return ((per_token * mask).sum(1) / mask.sum(1)).mean()
    if loss_type == "dr_grpo":  # a constant: sequences x the completion budget
        return (per_token * mask).sum() / (mask.size(0) * max_len)
    return (per_token * mask).sum() / mask.sum()  # dapo: over all tokens of the batch


@pytest.fixture(scope="module")
def moved_policy(rl_data, tmp_path_factory):
    """A scored batch whose policy moved since sampling: ratios 1.5 (clipped at 1.2 for A > 0), 0.6 (clipped
    at 0.8 for A < 0) and 1.1 in turn, a reference 0.1 nats below the policy on every token."""
    trainer = trainer_with(rl_data, tmp_path_factory.mktemp("loss"), [fixed("r", [1.0, 0.0, 0.5, 0.5, 0.7, 0.7, 0.7, 0.7])],
                           beta=0.04)
    inputs = scored(trainer)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    fields = {k: inputs[k] for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    with torch.no_grad():
        logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, ids, torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1),
            inputs["completion_ids"].size(1), **fields)
    shift = torch.log(torch.tensor([1.5, 0.6, 1.1])).repeat(logps.size(1) // 3 + 1)[: logps.size(1)]
    inputs["old_per_token_logps"] = logps - shift
    inputs["ref_per_token_logps"] = logps - 0.1
    inputs["advantages"] = torch.tensor([1.2, -1.2, 0.3, -0.3, 0.0, 0.0, 0.0, 0.0])
    return trainer, inputs, logps


@pytest.mark.parametrize("loss_type,kl_times_ratio", [("grpo", False), ("grpo", True), ("dr_grpo", False), ("dapo", False)])
def test_loss_is_the_clipped_grpo_objective_with_kl(moved_policy, loss_type, kl_times_ratio):
    # kl_times_ratio: TRL 1.16's default use_bias_correction_kl=True weighs the KL by the importance
    # ratio; the paper's (DeepSeekMath) GRPO does not, and recipes/paper/grpo.yaml turns it off
    trainer, inputs, logps = moved_policy
    # the switches as GRPOTrainer reads them (set at init from the config)
    trainer.loss_type, trainer.args.use_bias_correction_kl = loss_type, kl_times_ratio
    loss = trainer.compute_loss(trainer.model, dict(inputs))
    want = grpo_loss_by_hand(logps, inputs["old_per_token_logps"], inputs["ref_per_token_logps"], inputs["advantages"],
                             inputs["completion_mask"].float(), trainer.beta, trainer.epsilon_low, trainer.epsilon_high,
                             loss_type, trainer.max_completion_length, kl_times_ratio)
    assert trainer.epsilon_low == trainer.epsilon_high == 0.2 and trainer.beta == 0.04
    assert loss.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-6)
    if not kl_times_ratio:
        assert trainer._metrics["train"]["kl"][-1] == pytest.approx(math.exp(-0.1) - 0.9, rel=1e-3)  # ref = logp - .1


def test_loss_type_of_the_config_reaches_trl(rl_data, tmp_path):
    trainer = trainer_with(rl_data, tmp_path, [fixed("r", [0.0] * (2 * G))], loss_type="dr_grpo", scale_rewards="none",
                           use_bias_correction_kl=False)
    assert (trainer.loss_type, trainer.scale_rewards, trainer.args.use_bias_correction_kl) == ("dr_grpo", "none", False)


def test_equal_rewards_give_zero_loss_and_zero_finite_gradients(rl_data, tmp_path):
    trainer = trainer_with(rl_data, tmp_path, [fixed("r", [0.3] * (2 * G))], beta=0.04)
    inputs = scored(trainer)
    assert (inputs["advantages"] == 0).all()
    loss = trainer.compute_loss(trainer.model, inputs)  # the policy is the reference: KL 0 too
    loss.backward()
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    # the reference is a second copy of the same weights: KL is 0 up to float rounding
    assert grads and abs(loss.item()) < 1e-9 and torch.isfinite(loss)
    assert all(torch.isfinite(g).all() and g.abs().max() < 1e-5 for g in grads)


def test_reward_guards_are_a_switch_of_the_stage(tmp_path):
    target = {"image_index": 0, "bbox": [10.0, 10.0, 50.0, 50.0], "extent": [0.0, 0.0, 112.0, 112.0]}
    texts = ['<think>it is here</think><answer>{"bbox_2d": [0, 0, 112, 112]}</answer>',  # the whole image
             '<think>it is here</think><answer>{"bbox_2d": [10, 10, 50, 50]}</answer>',
             '<think>two</think><answer>{"bbox_2d": [10, 10, 50, 50]} {"bbox_2d": [60, 60, 90, 90]}</answer>']

    def values(guards):
        cfg = GRPOStageConfig(output_dir=str(tmp_path), rewards=["iou", "format"], reward_guards=guards, use_cpu=True, bf16=False)
        return [f(texts, target=[target] * 3) for f in reward_functions(cfg)]

    (iou_off, fmt_off), (iou_on, fmt_on) = values(False), values(True)
    assert iou_off[0] == pytest.approx(40 * 40 / 112 ** 2) and iou_off[1] == 1.0 and iou_off[2] == 1.0
    assert iou_on == [0.0, 1.0, 0.0] and fmt_on[0] == 0.0 and fmt_on[1] == fmt_off[1]
    with pytest.raises(ValueError, match="unknown reward"):
        reward_functions(GRPOStageConfig(output_dir=str(tmp_path), rewards=["iou", "nope"], use_cpu=True, bf16=False))
