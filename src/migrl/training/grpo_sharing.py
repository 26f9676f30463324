"""What the G rollouts of a GRPO group share, computed once per group instead of once per rollout.

TRL 1.16 treats each rollout as its own sequence: the prompt, with every image token, is run through
the language model G times in the policy, old-policy and reference forwards, and the same images go
through the image processor and the vision tower G times. For multi-image grounding the prompt is most
of the sequence (a 224 px image is 64 tokens; 4 images and the question dwarf a short answer), so most
of a step recomputes identical numbers. These pieces remove that, without changing the algorithm:

- generation (``GroupSharingMixin._generate_from_shared_prefill``): the prompt minus its last token is
  prefilled once per group and its KV cache copied to the group's rows; ``generate`` continues from it,
  sampling from the same logits in the same order as TRL's path, so the rollouts are the same.

- ``pack_shared_prefix``: a group becomes ONE packed sequence ``[prompt[:-1], (last, c_1), ..., (last, c_G)]``
  with an attention mask under which each completion block sees the shared prompt and itself only, the
  position ids each token has in its own unpacked row, and pre-shifted labels; its images go in once.
  Every completion token sees exactly the keys, values and positions it sees in TRL's per-rollout row,
  so log-probs and entropies match to float rounding, and gradients through the shared prompt add up
  the G rollouts' contributions as the separate rows do. (The last prompt token is repeated at the
  head of each block because one position can carry one label, and it predicts each c_i's first token.)
- ``dedup_vision``: the vision tower runs on each distinct image of a call once.
- ``SharedImageProcessor``: the image processor resizes and patches each distinct image once per batch.
- ``group_order``: keeps a group's rollouts in one micro-batch when TRL shuffles the generation batch,
  drawing the same random permutation as TRL so nothing else of the run's randomness moves (not for
  ``bnpo``, the entropy mask or bonus: they normalise per micro-batch, so TRL's shuffle is kept).

Only Qwen2-VL-style models (``image_grid_thw`` + 3D rope via ``get_rope_index``) with SDPA or eager
attention are packed; anything else takes TRL's own path. Flash-attention kernels cannot express the
block mask, so with ``attn_implementation="flash_attention_2"`` nothing is packed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

PACKABLE_ATTENTION = ("sdpa", "eager")


# -- which rows belong together ------------------------------------------------------------------

def _fingerprint(t: torch.Tensor, samples: int = 32) -> bytes:
    """A cheap key for bucketing equal tensors (verified with ``torch.equal`` afterwards)."""
    flat = t.reshape(-1)
    step = max(1, flat.numel() // samples)
    return bytes(str(tuple(t.shape)), "ascii") + flat[::step][:samples].detach().cpu().numpy().tobytes()


def row_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, pixels: Sequence[torch.Tensor | None] | None) -> list[int]:
    """Group id of each row: rows with the same prompt tokens and the same images share one.

    Tokens alone are not enough: two records can ask the same question about different pictures.
    """
    ids, mask = prompt_ids.cpu(), prompt_mask.cpu()
    buckets: dict[bytes, list[int]] = {}
    leaders: list[int] = []
    out: list[int] = []
    for row in range(ids.size(0)):
        key = ids[row][mask[row].bool()].numpy().tobytes()
        pix = pixels[row] if pixels is not None else None
        if pix is not None and pix.numel():
            key += _fingerprint(pix)
        for gid in buckets.setdefault(key, []):
            other = pixels[leaders[gid]] if pixels is not None else None
            if (pix is None) == (other is None) and (pix is None or torch.equal(pix, other)):
                out.append(gid)
                break
        else:
            buckets[key].append(len(leaders))
            out.append(len(leaders))
            leaders.append(row)
    return out


def group_order(permutation: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """``permutation`` reordered so each group's rows are adjacent: groups in the order their first
    row appears in it (TRL's draw decides), a group's rows in their original order. That order is the
    one the reference forward packed them in, so policy and reference see the same packed sequence
    and agree to the bit where their weights do (a KL of exactly 0 at the start, as in TRL)."""
    by_group: dict[int, list[int]] = {}
    for row in permutation.tolist():
        by_group.setdefault(groups[row], []).append(row)
    return torch.tensor([row for rows in by_group.values() for row in sorted(rows)], dtype=torch.long)


def rows_of_pixels(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, num_images: Sequence[int]) -> list[torch.Tensor]:
    """pixel_values split per row (Qwen layout: patches of all images, concatenated)."""
    per_image = image_grid_thw.prod(-1).tolist()
    sections, start = [], 0
    for n in num_images:
        sections.append(sum(per_image[start:start + n]))
        start += n
    return list(torch.split(pixel_values, sections))


# -- one packed sequence per group ---------------------------------------------------------------

@dataclass
class PackedBatch:
    model_inputs: dict[str, Any]
    row_index: torch.Tensor  # (B, C): packed row of each completion token
    col_index: torch.Tensor  # (B, C): packed column of each completion token


def pack_shared_prefix(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    groups: Sequence[int],
    position_ids: torch.Tensor,
    pixel_rows: list[torch.Tensor] | None,
    grid_rows: list[torch.Tensor] | None,
    pad_token_id: int,
    attn_implementation: str,
    mask_dtype: torch.dtype,
) -> PackedBatch:
    """Pack the rows of a (prompt + completion) batch, one sequence per group (see the module doc).

    ``position_ids`` (3, B, P + C) are the positions of the unpacked rows (``get_rope_index``), so a
    packed token keeps the position it has in TRL's row; completion labels are pre-shifted
    (``shift_labels``: the label at a position is the token predicted there).
    """
    device = input_ids.device
    c = logits_to_keep
    p = input_ids.size(1) - c
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(groups):
        members.setdefault(gid, []).append(row)
    seqs, poss, labels, segs, valids = [], [], [], [], []
    row_index = torch.empty(input_ids.size(0), c, dtype=torch.long)
    col_index = torch.empty(input_ids.size(0), c, dtype=torch.long)
    pixels, grids = [], []
    for packed_row, rows in enumerate(members.values()):
        lead = rows[0]
        real = int(attention_mask[lead, :p].sum())  # prompts are left-padded
        start = p - real
        tok = [input_ids[lead, start : p - 1]]
        pos = [position_ids[:, lead, start : p - 1]]
        lab = [torch.full((real - 1,), -100, dtype=torch.long, device=device)]
        seg = [torch.zeros(real - 1, dtype=torch.long, device=device)]
        val = [torch.ones(real - 1, dtype=torch.bool, device=device)]
        offset = real - 1
        for block, row in enumerate(rows, start=1):
            comp = input_ids[row, p:]
            comp_mask = attention_mask[row, p:].bool()
            tok.append(torch.cat([input_ids[row, p - 1 : p], comp]))
            pos.append(position_ids[:, row, p - 1 :])
            lab.append(torch.cat([comp.masked_fill(~comp_mask, -100), torch.full((1,), -100, dtype=torch.long, device=device)]))
            seg.append(torch.full((c + 1,), block, dtype=torch.long, device=device))
            val.append(torch.cat([torch.ones(1, dtype=torch.bool, device=device), comp_mask]))
            row_index[row] = packed_row
            col_index[row] = torch.arange(offset, offset + c)
            offset += c + 1
        seqs.append(torch.cat(tok))
        poss.append(torch.cat(pos, dim=1))
        labels.append(torch.cat(lab))
        segs.append(torch.cat(seg))
        valids.append(torch.cat(val))
        if pixel_rows is not None:
            pixels.append(pixel_rows[lead])
            grids.append(grid_rows[lead])
    length = max(s.numel() for s in seqs)
    n = len(seqs)
    ids = torch.full((n, length), pad_token_id, dtype=input_ids.dtype, device=device)
    pos_out = torch.zeros(3, n, length, dtype=position_ids.dtype, device=device)
    lab_out = torch.full((n, length), -100, dtype=torch.long, device=device)
    allowed = torch.zeros(n, 1, length, length, dtype=torch.bool, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    for i, (s, ps, lb, sg, vl) in enumerate(zip(seqs, poss, labels, segs, valids)):
        m = s.numel()
        ids[i, :m], pos_out[:, i, :m], lab_out[i, :m] = s, ps, lb
        same_or_prompt = (sg.unsqueeze(0) == 0) | (sg.unsqueeze(0) == sg.unsqueeze(1))
        allowed[i, 0, :m, :m] = causal[:m, :m] & same_or_prompt & vl.unsqueeze(0)
    # every query keeps at least itself: a row with no key would be NaN and poison the backward
    allowed |= torch.eye(length, dtype=torch.bool, device=device)
    if attn_implementation == "eager":
        mask: torch.Tensor = torch.zeros(allowed.shape, dtype=mask_dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(mask_dtype).min)
    else:
        mask = allowed
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos_out, "shift_labels": lab_out}
    if pixels:
        inputs["pixel_values"] = torch.cat(pixels)
        inputs["image_grid_thw"] = torch.cat(grids)
    return PackedBatch(inputs, row_index.to(device), col_index.to(device))


def chunk_groups(groups: Sequence[int], max_rows: int) -> list[list[int]]:
    """Rows split into chunks of whole groups, each at most ``max_rows`` rows (or one group)."""
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(groups):
        members.setdefault(gid, []).append(row)
    chunks: list[list[int]] = [[]]
    for rows in members.values():
        if chunks[-1] and len(chunks[-1]) + len(rows) > max_rows:
            chunks.append([])
        chunks[-1].extend(rows)
    return chunks


# -- the vision tower: each distinct image once per call ------------------------------------------

def _unique_images(hidden_states: torch.Tensor, sizes: list[int]) -> tuple[list[torch.Tensor], list[int], list[int]]:
    chunks = list(torch.split(hidden_states, sizes))
    buckets: dict[bytes, list[int]] = {}
    uniques: list[int] = []
    which: list[int] = []
    for i, ch in enumerate(chunks):
        for u in buckets.setdefault(_fingerprint(ch), []):
            if torch.equal(chunks[uniques[u]], ch):
                which.append(u)
                break
        else:
            buckets[_fingerprint(ch)].append(len(uniques))
            which.append(len(uniques))
            uniques.append(i)
    return chunks, uniques, which


def _expand_rows(t: torch.Tensor, unique_sizes: list[int], which: list[int]) -> torch.Tensor:
    starts = torch.tensor([0, *unique_sizes[:-1]]).cumsum(0).tolist()
    index = torch.cat([torch.arange(starts[u], starts[u] + unique_sizes[u]) for u in which]).to(t.device)
    return t.index_select(0, index)


def dedup_vision(visual: torch.nn.Module) -> None:
    """Make ``visual`` (a Qwen2-VL-style tower: ``forward(hidden_states, grid_thw)``) encode each
    distinct image of a call once and copy its features to the repeats.

    Exact: images are encoded independently (attention windows and ``cu_seqlens`` never cross images),
    and gradients of a repeated image sum through ``index_select`` as they would over the copies."""
    if getattr(visual, "_migrl_dedup", False):
        return
    original: Callable[..., Any] = visual.forward
    merge_unit = getattr(visual, "spatial_merge_unit", 4)

    def forward(hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            return original(hidden_states, grid_thw, **kwargs)
        sizes = grid_thw.prod(-1).tolist()
        chunks, uniques, which = _unique_images(hidden_states, sizes)
        if len(uniques) == len(chunks):
            return original(hidden_states, grid_thw, **kwargs)
        out = original(torch.cat([chunks[u] for u in uniques]), grid_thw[uniques], **kwargs)
        unique_sizes = [sizes[u] for u in uniques]
        out.pooler_output = _expand_rows(out.pooler_output, [s // merge_unit for s in unique_sizes], which)
        # last_hidden_state is in window order, but the windows of an image are contiguous per image
        out.last_hidden_state = _expand_rows(out.last_hidden_state, unique_sizes, which)
        return out

    visual.forward = forward
    visual._migrl_dedup = True


def vision_tower_owner(model: Any) -> Any:
    """``model.model`` of a (possibly PEFT-wrapped) Qwen2-VL-style model: the backbone holding ``visual``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "model", None)


def vision_tower(model: Any) -> torch.nn.Module | None:
    """``model.model.visual`` of a (possibly PEFT-wrapped) Qwen2-VL-style model, else None."""
    return getattr(vision_tower_owner(model), "visual", None)


# -- the image processor: each distinct image once per batch ---------------------------------------

def _image_key(image: Any) -> tuple | None:
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        data = image.tobytes()
        return (image.mode, image.size, hash(data)), data
    return None


class SharedImageProcessor:
    """Wraps a Qwen2-VL-style image processor (output: ``pixel_values`` patches + ``image_grid_thw``)
    so that within its lifetime each distinct image is processed once; every other attribute is the
    wrapped processor's. Images are processed independently of their batch, so the output is the same.
    TRL calls the processor twice per step on G copies of each image (prompt tokens, then forward
    inputs); the cache covers both."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._cache: dict[tuple, list[tuple[bytes, torch.Tensor, torch.Tensor]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _lookup(self, key: tuple, data: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
        for stored, pix, grid in self._cache.get(key, []):
            if stored == data:
                return pix, grid
        return None

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.image_utils import make_flat_list_of_images

        # TRL's two calls: apply_chat_template passes no return_tensors (torch tensors come back), the
        # processor's own call passes "pt"
        if args or kwargs.get("return_tensors") not in (None, "pt") or images is None:
            return self._inner(images, *args, **kwargs)
        flat = make_flat_list_of_images(images)
        keys = [_image_key(im) for im in flat]
        if any(k is None for k in keys):
            return self._inner(images, **kwargs)
        setting = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        keys = [((setting, *key), data) for key, data in keys]  # other resize settings, other patches
        todo = {}
        for im, (key, data) in zip(flat, keys):
            if self._lookup(key, data) is None and (key, data) not in todo:
                todo[(key, data)] = im
        if todo:
            out = self._inner(list(todo.values()), **kwargs)
            if set(out.keys()) != {"pixel_values", "image_grid_thw"} or not all(isinstance(v, torch.Tensor) for v in out.values()):
                return self._inner(images, **kwargs)  # another layout: do not guess
            grids = out["image_grid_thw"]
            for (key, data), pix, grid in zip(todo, torch.split(out["pixel_values"], grids.prod(-1).tolist()), grids):
                self._cache.setdefault(key, []).append((data, pix, grid))
        found = [self._lookup(key, data) for key, data in keys]
        return BatchFeature(
            data={"pixel_values": torch.cat([f[0] for f in found]), "image_grid_thw": torch.stack([f[1] for f in found])}
        )


# -- the trainer side -------------------------------------------------------------------------------

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
    """For a ``GRPOTrainer`` subclass: the group-sharing pieces above, wired into TRL 1.16's private
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
        impl = getattr(getattr(backbone, "config", None), "get_text_config", lambda: None)()
        impl = getattr(impl, "_attn_implementation", None)
        if backbone is None or not hasattr(backbone, "get_rope_index") or impl not in PACKABLE_ATTENTION:
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
