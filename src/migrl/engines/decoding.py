"""Prefill in small batches, decode in one large one, and drop rows as they finish.

Why not ``model.generate`` for the engine: on a CPU prefill costs the same FLOPs batched or not, so
its padding is pure loss, and ``generate`` keeps computing every finished row until the batch's longest
answer ends. Here prompts are prefilled in micro-batches of similar length (little padding), their
KV caches are stacked into one decode batch, ``n`` samples of a prompt share one prefill (``generate``
repeats the prompt n times before prefilling), and finished rows leave the batch. Greedy answers are
token-for-token those of ``generate`` (tests/test_decoding.py); sampling uses transformers' own
temperature and top-p warpers. Measured in bench/RESULTS.md ("Evaluation").

Qwen2-VL / Qwen2.5-VL / Qwen3-VL place image tokens on 3-D (M-RoPE) positions; after the prompt every
row's next position is its text position plus a per-row offset that the model computes in the prefill
forward and keeps as ``model.model.rope_deltas`` (what ``generate`` itself reads back while decoding).
Qwen3-VL's DeepStack features enter the first decoder layers at image tokens only, so in the prefill
(tests/test_families.py checks its greedy answers against ``generate``). Qwen3.5 is refused: its Gated
DeltaNet layers keep a recurrent state, not the key/value cache this loop stacks and trims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, StaticCache
from transformers.generation.logits_process import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from migrl.models.family import FAMILIES

# Finished rows are dropped once this share of the batch has finished: every drop copies the cache.
COMPACT_SHARE = 0.25


@dataclass
class Prefix:
    """Prompts already run through the model: the logits of their last token and their KV cache."""

    logits: torch.Tensor  # (rows, vocab)
    keys: list[torch.Tensor]  # per layer (rows, kv_heads, length, head_dim), left-padded
    values: list[torch.Tensor]
    mask: torch.Tensor  # (rows, length) 1 for prompt tokens, 0 for padding
    deltas: torch.Tensor  # (rows, 1) M-RoPE offset of each row (0 for text-only models)


def _require_kv_cache(model: Any) -> None:
    family = FAMILIES.get(getattr(model.config, "model_type", ""))
    if family is not None and not family.kv_cache_only:
        raise NotImplementedError(
            f"{family.name} keeps a recurrent state in its linear-attention layers, which migrl's batched decoder "
            "cannot stack: serve the model (--engine openai --base-url URL) to generate with it")


def _uses_mrope(model: Any) -> bool:
    return hasattr(getattr(model, "model", None), "rope_deltas")


def _text_positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def prefill(model: Any, batch: dict[str, torch.Tensor]) -> Prefix:
    """One forward over a processor batch (left-padded), keeping the cache."""
    _require_kv_cache(model)
    inner = getattr(model, "model", None)
    mrope = _uses_mrope(model)
    mask = batch["attention_mask"]
    kwargs: dict[str, Any] = {}
    if mrope:
        inner.rope_deltas = None  # stale offsets of an earlier call must not be reused
        if batch.get("image_grid_thw") is None and batch.get("video_grid_thw") is None:
            kwargs["position_ids"] = _text_positions(mask)[None].expand(3, -1, -1)  # the model would ignore padding
    else:
        kwargs["position_ids"] = _text_positions(mask)
    cache = DynamicCache(config=model.config)
    out = model(**batch, **kwargs, cache=cache, use_cache=True, logits_to_keep=1)
    rows = mask.shape[0]
    deltas = inner.rope_deltas if mrope and inner.rope_deltas is not None else mask.new_zeros(rows, 1)
    return Prefix(
        logits=out.logits[:, -1].float(),
        keys=[layer.keys for layer in cache.layers],
        values=[layer.values for layer in cache.layers],
        mask=mask,
        deltas=deltas.reshape(rows, 1).to(mask.device),
    )


def stack(prefixes: Sequence[Prefix]) -> Prefix:
    """Prefixes of different lengths as one batch: each left-padded to the longest."""
    length = max(p.mask.shape[1] for p in prefixes)

    def pad(t: torch.Tensor, p: Prefix) -> torch.Tensor:
        return F.pad(t, (0, 0, length - p.mask.shape[1], 0))

    layers = range(len(prefixes[0].keys))
    return Prefix(
        logits=torch.cat([p.logits for p in prefixes]),
        keys=[torch.cat([pad(p.keys[i], p) for p in prefixes]) for i in layers],
        values=[torch.cat([pad(p.values[i], p) for p in prefixes]) for i in layers],
        mask=torch.cat([F.pad(p.mask, (length - p.mask.shape[1], 0)) for p in prefixes]),
        deltas=torch.cat([p.deltas for p in prefixes]),
    )


def _warpers(temperature: float, top_p: float) -> LogitsProcessorList:
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def _eos_ids(model: Any, device: torch.device) -> torch.Tensor:
    # All this loop takes from the folder's generation_config.json: its sampling fields (Qwen2.5-VL's
    # repetition_penalty 1.05...) never apply here, only the caller's temperature and top_p.
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return torch.tensor(eos, dtype=torch.long, device=device)


@torch.inference_mode()
def decode(model: Any, prefix: Prefix, max_new_tokens: int, n: int = 1, temperature: float = 0.0,
           top_p: float = 1.0) -> list[list[int]]:
    """New token ids per row (``n`` rows per prompt, prompt-major), each ending at its first EOS."""
    device = prefix.logits.device
    rows = torch.arange(prefix.logits.shape[0], device=device).repeat_interleave(n)
    cache = StaticCache(config=model.config, max_cache_len=prefix.mask.shape[1] + max_new_tokens)
    for i, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
        cache.update(k[rows], v[rows], i)
    logits, mask, deltas = prefix.logits[rows], prefix.mask[rows], prefix.deltas[rows]
    position = mask.sum(-1, keepdim=True)  # text position of each row's next token
    owner = torch.arange(len(rows), device=device)  # output row of each batch row
    done = torch.zeros(len(rows), dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in range(len(rows))]
    eos = _eos_ids(model, device)
    warpers = _warpers(temperature, top_p) if temperature > 0 else None
    mrope = _uses_mrope(model)
    for step in range(max_new_tokens):
        if warpers is None:
            token = logits.argmax(-1)
        else:
            token = torch.multinomial(F.softmax(warpers(None, logits), dim=-1), 1).squeeze(-1)
        for r, finished, t in zip(owner.tolist(), done.tolist(), token.tolist()):
            if not finished:
                out[r].append(t)
        done |= torch.isin(token, eos)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        if int(done.sum()) >= max(1, COMPACT_SHARE * len(owner)):
            keep = (~done).nonzero().squeeze(-1)
            cache.reorder_cache(keep)
            owner, token, mask, position, deltas, done = (t[keep] for t in (owner, token, mask, position, deltas, done))
        mask = torch.cat([mask, mask.new_ones(len(owner), 1)], dim=1)
        pos = position + deltas
        pos = pos[None].expand(3, -1, -1) if mrope else pos
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=pos, cache=cache,
                       use_cache=True).logits[:, -1].float()
        position = position + 1
    return out
