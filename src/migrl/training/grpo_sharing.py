"""The trainer mixin (``GroupSharingMixin``): what the G rollouts of a GRPO group share, computed once per
group instead of once per rollout.

TRL 1.16 treats each rollout as its own sequence: the prompt, with every image token, is run through
the language model G times in the policy, old-policy and reference forwards, and the same images go
through the image processor and the vision tower G times. For multi-image grounding the prompt is most
of the sequence (a 224 px image is 64 tokens; 4 images and the question dwarf a short answer), so most
of a step recomputes identical numbers. This mixin removes that, without changing the algorithm,
wiring three kinds of pieces into TRL's trainer:

- generation (``GroupSharingMixin._generate_from_shared_prefill``): the prompt minus its last token is
  prefilled once per group and its KV cache copied to the group's rows; ``generate`` continues from it,
  sampling from the same logits in the same order as TRL's path, so the rollouts are the same.
- the forwards (``migrl.training.grpo_packing``): a group's rows packed into one sequence that shares
  the prompt (``pack_shared_prefix``), with the same log-probs, entropies and gradients as TRL's rows;
  the generation batch shuffled with each group kept in one micro-batch (``group_order``; not for
  ``bnpo``, the entropy mask or bonus: they normalise per micro-batch, so TRL's shuffle is kept).
- the images (``migrl.training.vision_dedup``): the vision tower encodes each distinct image of a call
  once (``dedup_vision``), the image processor processes each distinct image once per batch
  (``SharedImageProcessor``).

Only Qwen2-VL-style models (``image_grid_thw`` + 3D rope via ``get_rope_index``: Qwen2-VL, Qwen2.5-VL,
Qwen3-VL with its DeepStack features) with SDPA or eager attention are packed; anything else takes TRL's
own path. Flash-attention kernels cannot express the block mask, so with
``attn_implementation="flash_attention_2"`` nothing is packed. Nor is a family whose decoder has recurrent
layers (Qwen3.5's Gated DeltaNet): a recurrent state runs through the packed sequence in order, so a
completion would see the others, which no attention mask can prevent; its prompts and images still go
through the image processor and the vision tower once (tests/test_grpo_sharing.py).
"""

from __future__ import annotations

from typing import Any

import torch

from migrl.models.family import FAMILIES
from migrl.training.grpo_packing import chunk_groups, group_order, pack_shared_prefix, row_groups, rows_of_pixels
from migrl.training.vision_dedup import SharedImageProcessor, dedup_vision, vision_tower, vision_tower_owner

PACKABLE_ATTENTION = ("sdpa", "eager")
_NOT_PACKED = ("pixel_attention_mask", "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids", "image_position_ids")
_MICRO_BATCH_LOSSES = ("bnpo",)  # normalised per micro-batch: which rows share one changes the gradient


def _permute(batch: dict[str, Any], order: torch.Tensor) -> dict[str, Any]:
    """TRL's ``shuffle_sequence_dict`` with a given order."""
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
            return v
        if isinstance(v, torch.Tensor):
            return v[order.to(v.device)]
        return [v[i] for i in order.tolist()]

    return {k: one(v) for k, v in batch.items()}


class GroupSharingMixin:
    """For a ``GRPOTrainer`` subclass: the group-sharing pieces (see the module docstring), wired into TRL 1.16's private
    methods ``_prepare_inputs``, ``_generate_and_score_completions`` and
    ``_get_per_token_logps_and_entropies`` (TRL has no hook for any of them; the version is pinned).
    ``share_group_compute=False`` leaves every one of them TRL's own."""

    share_group_compute: bool = True

    def _install_group_sharing(self, enabled: bool) -> None:
        self.share_group_compute = enabled
        if not enabled:
            return
        for m in (self.model, getattr(self, "ref_model", None)):
            visual = vision_tower(m) if m is not None else None
            if visual is not None:
                dedup_vision(visual)

    # which micro-batch a rollout lands in
    def _keep_groups_together(self) -> bool:
        return (self.share_group_compute and self.loss_type not in _MICRO_BATCH_LOSSES
                and self.top_entropy_quantile >= 1.0 and not getattr(self, "_entropy_bonus_enabled", False))

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        # TRL's, but the generation batch is shuffled with groups kept whole (``group_order``): the sum of
        # the micro-batch gradients of the losses allowed here does not depend on which rows share one.
        from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

        if not (self.model.training and self._keep_groups_together()):
            return super()._prepare_inputs(generation_batch)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = split_pixel_values_by_grid(self._generate_and_score_completions(generation_batch))
            permutation = torch.randperm(len(batch["prompt_ids"]))  # the draw TRL's shuffle makes
            pixels = batch.get("pixel_values") if isinstance(batch.get("pixel_values"), list) else None
            groups = row_groups(batch["prompt_ids"], batch["prompt_mask"], pixels)
            batch = _permute(batch, group_order(permutation, groups))
            self._buffered_inputs = [unsplit_pixel_values_by_grid(b) for b in split_tensor_dict(batch, self.args.steps_per_generation)]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    # the image processor
    def _generate_and_score_completions(self, inputs: Any) -> Any:
        processor = self.processing_class
        inner = getattr(processor, "image_processor", None)
        if not (self.share_group_compute and inner is not None and hasattr(inner, "merge_size")):
            return super()._generate_and_score_completions(inputs)
        processor.image_processor = SharedImageProcessor(inner)
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            processor.image_processor = inner

    # generation: the prompt (images included) is prefilled once per group
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        plan = self._prefill_plan(prompt_ids, images, multimodal_fields, has_tool_images)
        if plan is None:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        return self._generate_from_shared_prefill(*plan)

    def _prefill_plan(self, prompt_ids, images, multimodal_fields, has_tool_images):
        """The padded prompts, their masks and groups when the prompts can be prefilled per group, else None."""
        from trl.trainer.utils import pad

        fields = set(multimodal_fields)
        if (not self.share_group_compute or self.use_vllm or self.use_transformers_continuous_batching or has_tool_images
                or images is None or fields != {"pixel_values", "image_grid_thw", "mm_token_type_ids"}):
            return None
        if self._qwen_backbone(self.model) is None:
            return None
        tensors = [torch.tensor(ids) for ids in prompt_ids]
        kw = {"padding_side": "left", "pad_to_multiple_of": self.pad_to_multiple_of}
        ids = pad(tensors, padding_value=self._tokenizer.pad_token_id, **kw)
        mask = pad([torch.ones_like(t) for t in tensors], padding_value=0, **kw)
        mm = multimodal_fields["mm_token_type_ids"]
        mm = mm if isinstance(mm, torch.Tensor) else pad([torch.tensor(x) for x in mm], padding_value=0, **kw)
        num_images = [len(x) if x else 0 for x in images]
        pixel_values = torch.as_tensor(multimodal_fields["pixel_values"])
        image_grid_thw = torch.as_tensor(multimodal_fields["image_grid_thw"])
        pixel_rows = rows_of_pixels(pixel_values, image_grid_thw, num_images)
        groups = row_groups(ids, mask, pixel_rows)
        if len(set(groups)) == len(groups):
            return None
        grid_rows = list(torch.split(image_grid_thw, num_images))
        return ids, mask, mm, groups, pixel_rows, grid_rows

    def _generate_from_shared_prefill(self, ids, mask, mm, groups, pixel_rows, grid_rows):
        # TRL's regular generation path, with the prompt minus its last token run once per group and its
        # KV cache copied to the group's rows; ``generate`` then continues from the cache. Each row samples
        # from the same logits as in TRL's path, in the same order, so the random draws are the same.
        from trl.models import unwrap_model_for_generation

        device = self.accelerator.device
        leaders = [groups.index(g) for g in range(max(groups) + 1)]
        ids, mask, mm = ids.to(device), mask.to(device), mm.to(device)
        prefix = {
            "input_ids": ids[leaders, :-1], "attention_mask": mask[leaders, :-1], "mm_token_type_ids": mm[leaders, :-1],
            "pixel_values": torch.cat([pixel_rows[i] for i in leaders]).to(device),
            "image_grid_thw": torch.cat([grid_rows[i] for i in leaders]).to(device),
        }
        with (
            unwrap_model_for_generation(
                self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs, gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            out = model(**prefix, use_cache=True, logits_to_keep=1)
            rows = torch.tensor(groups, device=device)
            cache = out.cache
            cache.batch_select_indices(rows)
            backbone = vision_tower_owner(model)
            # the rope offsets the prefill left behind, per row: generate's position ids continue from them
            backbone.rope_deltas = backbone.rope_deltas[rows]
            sequences = model.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm, cache=cache,
                                       generation_config=self.generation_config)
        completion_ids = sequences[:, ids.size(1):]
        # TRL's: everything after the first EOS is dropped
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=device))
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long, device=device)
        eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
        keep = torch.arange(is_eos.size(1), device=device).expand(is_eos.size(0), -1) <= eos_idx.unsqueeze(1)
        return [c[m].tolist() for c, m in zip(completion_ids.cpu(), keep.cpu())], None

    # the forwards: policy, old policy, reference
    def _qwen_backbone(self, model: Any) -> Any:
        """``model.model`` when it is Qwen2-VL-like (3D rope by ``get_rope_index``) with a packable
        attention, else None."""
        backbone = vision_tower_owner(self.accelerator.unwrap_model(model))
        config = getattr(backbone, "config", None)
        impl = getattr(getattr(config, "get_text_config", lambda: None)(), "_attn_implementation", None)
        if backbone is None or not hasattr(backbone, "get_rope_index") or impl not in PACKABLE_ATTENTION:
            return None
        family = FAMILIES.get(getattr(config, "model_type", ""))
        if family is not None and not family.kv_cache_only:  # recurrent layers: packing would leak across rows
            return None
        return backbone

    def _packable(self, model: Any, pixel_values: Any, image_grid_thw: Any, num_images: Any,
                  compute_aux_loss: bool, rest: dict[str, Any]) -> Any:
        """The backbone when the batch can be packed, else None."""
        if not self.share_group_compute or compute_aux_loss or pixel_values is None or image_grid_thw is None:
            return None
        if num_images is None or rest.get("mm_token_type_ids") is None or any(rest.get(k) is not None for k in _NOT_PACKED):
            return None
        return self._qwen_backbone(model)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, pixel_values=None,
                                           image_grid_thw=None, num_images=None, **rest):
        backbone = self._packable(model, pixel_values, image_grid_thw, num_images, compute_aux_loss, rest)
        p = input_ids.size(1) - logits_to_keep
        pixel_rows = rows_of_pixels(pixel_values, image_grid_thw, num_images) if backbone is not None else None
        groups = row_groups(input_ids[:, :p], attention_mask[:, :p], pixel_rows) if backbone is not None else None
        if backbone is None or len(set(groups)) == len(groups):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size, compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss, pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                num_images=num_images, **rest)
        return self._packed_logps(model, backbone, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                                  image_grid_thw, num_images, rest["mm_token_type_ids"], pixel_rows, groups)

    def _packed_logps(self, model, backbone, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                      image_grid_thw, num_images, mm_token_type_ids, pixel_rows, groups):
        # the positions TRL's forward computes for each unpacked row (Qwen2_5_VLModel.compute_3d_position_ids)
        position_ids, _ = backbone.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                                  image_grid_thw=image_grid_thw, attention_mask=attention_mask)
        grid_rows = list(torch.split(image_grid_thw, list(num_images)))
        impl = backbone.config.get_text_config()._attn_implementation
        dtype = backbone.get_input_embeddings().weight.dtype
        order, logps, entropies = [], [], []
        for rows in chunk_groups(groups, batch_size or input_ids.size(0)):
            idx = torch.tensor(rows, device=input_ids.device)
            packed = pack_shared_prefix(
                input_ids[idx], attention_mask[idx], logits_to_keep, [groups[r] for r in rows], position_ids[:, idx],
                [pixel_rows[r] for r in rows], [grid_rows[r] for r in rows], self._tokenizer.pad_token_id, impl, dtype)
            with self.accelerator.autocast():
                out = model(**packed.model_inputs, fused_lm_head=True)
            logps.append(out.log_probs[packed.row_index, packed.col_index])
            if compute_entropy:
                entropies.append(out.entropy[packed.row_index, packed.col_index])
            order.extend(rows)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        inverse = inverse.to(input_ids.device)
        logps_out = torch.cat(logps)[inverse]
        entropy_out = torch.cat(entropies)[inverse] if compute_entropy else None
        return logps_out, entropy_out, None
