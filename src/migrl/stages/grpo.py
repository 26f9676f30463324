"""``migrl grpo``: GRPO on multi-image records with TRL's GRPOTrainer.

The paper's stage 2: 8 rollouts per prompt, advantage (r - mean) / std within the group, KL to the
fixed CoT-SFT model (beta 1e-3), reward 1.0 x IoU + 0.5 x format. TRL does the algorithm; migrl's
subclass (``MigrlGRPOTrainer``) adds what multi-image grounding needs around it:

- a JSONL of a few rollouts (prompt id, completion, parsed box, rewards) every N steps, to read;
- online dynamic filtering (optional): groups whose rewards are all equal carry no signal and are
  masked out of the loss, beside the offline rejection sampling of ``migrl reject``;
- records whose prompt (images included) exceeds ``max_prompt_length`` are refused one by one with a
  clear error, instead of being truncated through their image tokens.

The reference model is the policy's starting point: with LoRA, TRL disables the adapters to get it, so
start from the merged CoT-SFT folder; with full fine-tuning TRL reloads it from that folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

from migrl.answer_space import resolve_coords, sizing_override
from migrl.bad_records import LENGTH_DROP_LIMIT, BadRecords, check_length_drops
from migrl.boxes import parse_answer
from migrl.engines.hf import folder_sampling_off
from migrl.engines.serving import check_vllm_rollouts
from migrl.images import ImageError, ImageSizing, image_size, load_image, resolve_image_path
from migrl.jsonl import write_json_atomic
from migrl.models.loading import context_left, load_model, load_processor, processor_as_loaded, resolve_model_path
from migrl.models.peft import LoraOptions, freeze_vision, lora_config
from migrl.prompts import user_message
from migrl.recipe import adapt_to_device, record_recipe
from migrl.records import LENGTH_FIELD, Record, data_root, load_records, require_file
from migrl.rewards import REWARD_FUNCS, guarded, target_in_model_space
from migrl.training.checkpoints import CheckpointWeightsMixin
from migrl.training.finish import check_ranks_agree, rank_digests, save_final
from migrl.training.grpo_sharing import GroupSharingMixin


@dataclass
class GRPOStageConfig(GRPOConfig, LoraOptions):
    """TRL's GRPOConfig plus what the stage needs; recipes are YAML files of these fields."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "start (and reference) model folder: the merged CoT-SFT model"})
    data: str = field(default="", metadata={"help": "RL records JSONL (e.g. the output of migrl reject)"})
    rewards: list[str] = field(default_factory=lambda: ["iou", "format"], metadata={"help": "reward functions by name (migrl.rewards.REWARD_FUNCS); weights in reward_weights"})
    # GRPO's LoRA defaults differ from SFT's: the paper trains the whole language model in RL
    use_lora: bool = field(default=False, metadata={"help": "LoRA on the language model (TRL's use_peft); false = train the whole language model"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    freeze_vision: bool = field(default=True, metadata={"help": "freeze the vision tower and the merger"})
    merge: bool = field(default=True, metadata={"help": "with LoRA, merge it into a plain model folder at the end"})
    coords: str | None = field(default=None, metadata={"help": "space the model answers in (default: the model folder's family)"})
    min_pixels: int = field(default=0, metadata={"help": "override the model folder's image setting (0 = keep; the saved folder carries it)"})
    max_pixels: int = 0
    max_prompt_length: int = field(default=0, metadata={"help": "refuse records whose prompt (image tokens included) is longer; 0 = no limit"})
    reward_guards: bool = field(default=False, metadata={"help": "zero the reward of an empty answer, a whole-image box or several boxes (off in the paper recipe)"})
    dynamic_filter: bool = field(default=False, metadata={"help": "mask groups whose rewards are all equal out of the loss (online filtering)"})
    rollout_log_every: int = field(default=10, metadata={"help": "write a few rollouts to rollouts.jsonl every N steps (0 = never)"})
    rollout_log_count: int = 4
    share_group_compute: bool = field(default=True, metadata={"help": "compute a GRPO group's shared prompt, image features and image processing once, not per rollout (same algorithm; false = TRL's per-rollout path)"})
    allow_image_token_mismatch: bool = field(default=False, metadata={"help": "with use_vllm in server mode: warn instead of stopping when the server counts other image tokens than training"})
    length_skip_limit: float = field(default=LENGTH_DROP_LIMIT, metadata={"help": "stop before training when more than this share of the records is too long (the length setting is wrong for the data)"})
    strict: bool = field(default=False, metadata={"help": "stop at the first bad record instead of skipping it"})


def prompt_length(processor: Any, record: Record, images: list[Any]) -> int:
    text = processor.apply_chat_template([user_message(record)], add_generation_prompt=True, tokenize=False)
    return int(processor(text=[text], images=images, return_tensors="pt")["input_ids"].shape[1])


def build_dataset(records: list[Record], root: Path, processor: Any, cfg: GRPOStageConfig,
                  bad: BadRecords | None = None) -> tuple[Any, list[str]]:
    """Rows of (prompt, images, target, id); bad and too-long records come back as errors (and go to
    ``bad`` when given)."""
    from datasets import Dataset, Image, List

    bad = bad if bad is not None else BadRecords()
    sizing = ImageSizing.from_processor(processor)
    coords = resolve_coords("migrl grpo", resolve_model_path(cfg.model_name_or_path), cfg.coords)
    rows, errors = [], []
    for r in records:
        if r.target is None:
            errors.append(bad.add(r, "boxes", "no ground-truth box"))
            continue
        try:
            paths = [resolve_image_path(p, root) for p in r.images]
            images = [load_image(p) for p in paths]  # refuses bombs and broken files now, not mid-training
            target = target_in_model_space(r, [image_size(p) for p in paths], coords, sizing)
        except (ImageError, ValueError) as exc:
            errors.append(bad.add(r, "images", exc))
            continue
        if cfg.max_prompt_length:
            n = prompt_length(processor, r, images)
            if n > cfg.max_prompt_length:
                errors.append(bad.add(r, LENGTH_FIELD, (
                    f"prompt is {n} tokens with its {len(images)} image(s), over max_prompt_length "
                    f"{cfg.max_prompt_length}; truncating it would cut image tokens, so it is skipped")))
                continue
        rows.append({"prompt": [user_message(r)], "images": [str(p) for p in paths], "target": target, "id": r.id})
    if not rows:
        return None, errors
    return Dataset.from_list(rows).cast_column("images", List(Image())), errors


class MigrlGRPOTrainer(CheckpointWeightsMixin, GroupSharingMixin, GRPOTrainer):
    """GRPOTrainer with rollout logging and optional online filtering of zero-variance groups; a group's
    shared prompt and images computed once (``GroupSharingMixin``, same algorithm); resumed weights loaded
    through the model's key conversion (``CheckpointWeightsMixin``).

    Every private trainer method migrl overrides, SFT's included (TRL has no hook for any of them, so
    pyproject.toml pins trl 1.16 and transformers; a version bump re-reads each against the new code).
    The other ``_`` methods of these classes and mixins are migrl's own helpers (``_log_rollouts``,
    ``_prefill_plan``, ``_packed_logps``...), not overrides.

    Here (outermost in the method order, so these wrap the mixins' versions):

    - ``_generate_single_turn``: rollouts sample inside ``folder_sampling_off``. TRL's GenerationConfig
      leaves fields unset (min_p when None, typical_p, no_repeat_ngram_size...) and transformers fills
      them from the model folder's generation_config.json; ``generation_kwargs`` could set only the fields
      one thinks of, this covers every one (tests/test_generation_config.py).
    - ``_calculate_rewards``: keeps the step's rewards for the dynamic filter and writes ``rollouts.jsonl``.
      TRL 1.16's ``log_completions`` (with extra columns from a reward function's ``log_extra`` kwarg, the
      reward kwargs carrying ``id`` and ``target``) cannot replace the rollout log without changing it: it
      writes ``completions/completions_NNNNN.parquet`` at every logging step with every completion of the
      generation batch gathered from all ranks (plus a rich console table and wandb/trackio), where
      migrl appends ``rollout_log_count`` of rank 0's rollouts every ``rollout_log_every`` steps with the
      parsed box and image, which would need a reward function (or a wrapper around each) that logs
      instead of rewarding; test_grpo reads the JSONL's fields and test_distributed counts its rows. The
      two can run side by side (``log_completions: true`` in a recipe). TRL keeps no handle on the
      rewards it computed, so the filter needs this override either way.
    - ``_generate_and_score_completions``: with ``dynamic_filter``, groups whose rewards are all equal
      are masked out of the loss (``completion_mask``, ``num_items_in_batch``). TRL 1.16 only logs their
      share (``frac_reward_zero_std``); its zero advantage for them is not the same: their tokens still
      count in the loss's normaliser and under the KL term.

    In ``GroupSharingMixin`` (training/grpo_sharing.py; ``share_group_compute: false`` makes each one
    call TRL's own):

    - ``_prepare_inputs``: TRL's, but the generation batch is shuffled with each group's rollouts kept
      in one micro-batch (``group_order``, the same random draw); TRL's ``shuffle_sequence_dict`` has no
      option for it.
    - ``_generate_and_score_completions``: the image processor wrapped in ``SharedImageProcessor`` for the
      call, so each distinct image is resized and patched once; the processor is no argument to TRL.
    - ``_generate_single_turn``: the prompt prefilled once per group and its KV cache shared by the
      group's rows (TRL's regular ``generate`` path otherwise, same samples).
    - ``_get_per_token_logps_and_entropies``: one packed sequence per group for the policy, old-policy
      and reference forwards (``pack_shared_prefix``), the same log-probs and entropies as TRL's rows.

    In ``CheckpointWeightsMixin`` (training/checkpoints.py; also on ``MigrlSFTTrainer``):

    - ``_load_from_checkpoint`` (transformers' Trainer): a full fine-tune's checkpoint loaded through
      ``from_pretrained``'s key conversion; the Trainer's own load matches none of Qwen2.5-VL's saved
      keys and silently keeps the starting weights (transformers#43701).

    ``MigrlSFTTrainer`` overrides no other private method: its ``TrainedPositionsLossMixin`` overrides
    the public ``compute_loss`` (training/sft_loss.py). Private TRL attributes read here and in the mixins:
    ``_step``, ``_buffered_inputs``, ``_tokenizer``, ``_dist``, ``_metrics``, ``_entropy_bonus_enabled``.
    """

    def __init__(self, *args: Any, dynamic_filter: bool = False, rollout_log: Path | None = None,
                 rollout_log_every: int = 10, rollout_log_count: int = 4, share_group_compute: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._install_group_sharing(share_group_compute)
        self.dynamic_filter = dynamic_filter
        self.rollout_log, self.rollout_log_every, self.rollout_log_count = rollout_log, rollout_log_every, rollout_log_count
        self._last_rewards: torch.Tensor | None = None

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        # Rollouts sample with the recipe's settings alone: TRL leaves some fields unset (min_p,
        # typical_p...) and transformers would fill them from the model folder (folder_sampling_off).
        with folder_sampling_off(self.accelerator.unwrap_model(self.model)):
            return super()._generate_single_turn(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards = rewards
        self._log_rollouts(inputs, completions, rewards)
        return rewards

    def _log_rollouts(self, inputs: list[dict], completions: list[Any], rewards: torch.Tensor) -> None:
        step = self.state.global_step
        if not self.rollout_log or not self.rollout_log_every or step % self.rollout_log_every or not self.accelerator.is_main_process:
            return
        from migrl.rewards import completion_text

        names = [getattr(f, "__name__", str(f)) for f in self.reward_funcs]
        lines = []
        for i in range(min(self.rollout_log_count, len(inputs))):
            text = completion_text(completions[i])
            box = parse_answer(text).first_box
            lines.append(json.dumps({
                "step": step,
                "id": inputs[i].get("id"),
                "completion": text,
                "parsed_box": list(box.bbox) if box else None,
                "parsed_image": box.image_index if box else None,
                "target": inputs[i].get("target"),
                "rewards": {n: float(rewards[i, j]) for j, n in enumerate(names)},
            }))
        self.rollout_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rollout_log, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if not (self.dynamic_filter and self.model.training and self._last_rewards is not None):
            return out
        g = self.num_generations
        weights = self.reward_weights.to(self._last_rewards.device)
        total = (self._last_rewards * weights).nansum(dim=1).view(-1, g)
        informative = total.std(dim=1) > 1e-6
        n = len(inputs)
        start = self.accelerator.process_index * n
        keep = informative.repeat_interleave(g)[start : start + n].to(out["completion_mask"].device)
        out["completion_mask"] = out["completion_mask"] * keep.unsqueeze(1).to(out["completion_mask"].dtype)
        if "num_items_in_batch" in out:
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        self._metrics["train"]["dynamic_filter/kept_group_frac"].append(informative.float().mean().item())
        return out


def reward_functions(cfg: GRPOStageConfig) -> list[Any]:
    """The recipe's rewards by name, each behind the reward guards when ``reward_guards`` is on."""
    unknown = [r for r in cfg.rewards if r not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; known: {sorted(REWARD_FUNCS)}")
    return [guarded(REWARD_FUNCS[r]) if cfg.reward_guards else REWARD_FUNCS[r] for r in cfg.rewards]


def train_grpo(cfg: GRPOStageConfig) -> dict[str, Any]:
    from migrl.training.checkpoints import last_complete_checkpoint

    adapt_to_device(cfg)  # the recipe loader's CPU fallback, for configs built in Python too
    require_file(cfg.data, "data")  # before any model loads
    model_path = resolve_model_path(cfg.model_name_or_path)
    sizing = sizing_override("migrl grpo", model_path, cfg.min_pixels, cfg.max_pixels)
    processor = load_processor(model_path, sizing)
    to_save = processor_as_loaded(model_path, sizing)  # before TRL sets truncation or padding on `processor`
    check_vllm_rollouts(cfg, model_path, processor)  # vLLM must resize images as training does
    model = load_model(model_path, dtype=torch.float32 if cfg.use_cpu else None)
    if cfg.freeze_vision:
        freeze_vision(model)
    loaded = load_records(cfg.data, strict=cfg.strict)
    bad = BadRecords.from_load(loaded, cfg.data, cfg.strict)
    root = data_root(cfg.data)
    usable = bad.usable(loaded.records, root, sizing=ImageSizing.from_processor(processor),
                        max_image_tokens=context_left(model, cfg.max_completion_length))
    dataset, _ = build_dataset(usable, root, processor, cfg, bad)
    errors = [str(b) for b in bad.items]
    bad_summary = bad.finish(cfg.output_dir)  # before training: a crash or kill still leaves the report
    record_recipe(cfg)  # the recipe and the data are checked: keep what is run beside its output
    check_length_drops(bad, len(loaded.records), f"max_prompt_length (now {cfg.max_prompt_length}) or the context", cfg.length_skip_limit)
    if dataset is None:
        raise ValueError(f"{cfg.data}: no usable RL records ({len(errors)} errors; first: {errors[:1]})")
    reward_funcs = reward_functions(cfg)
    cfg.remove_unused_columns = False  # the reward functions read the `target` column
    peft_config = lora_config(cfg)
    out = Path(cfg.output_dir)
    trainer = MigrlGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=cfg,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        dynamic_filter=cfg.dynamic_filter,
        rollout_log=out / "rollouts.jsonl",
        rollout_log_every=cfg.rollout_log_every,
        rollout_log_count=cfg.rollout_log_count,
        share_group_compute=cfg.share_group_compute,
    )
    result = trainer.train(resume_from_checkpoint=last_complete_checkpoint(out))
    digests = rank_digests(trainer)  # before merging: every rank still holds its own copy
    save_final(trainer, to_save, out, merge_lora=cfg.use_lora and cfg.merge, base_model=model_path)
    history = [h for h in trainer.state.log_history if "reward" in h]
    summary = {"train_loss": result.training_loss, "steps": result.global_step, "records": len(dataset), "errors": errors,
               "bad_records": bad_summary,
               "first_log": history[0] if history else None, "last_log": history[-1] if history else None,
               "world_size": trainer.accelerator.num_processes, "rank_weight_digests": digests}
    if trainer.accelerator.is_main_process:
        write_json_atomic(out / "grpo_summary.json", summary)
    check_ranks_agree(digests)
    return summary
