"""Batched generation with a Hugging Face model: several multi-image prompts per forward.

Requests are sorted by image count and prompt length, prefilled a few at a time (left padding) and
decoded together, finished rows leaving the batch (engines/decoding.py says why this is not
``model.generate``). This is the engine behind eval, rejection sampling and a local teacher.

A family whose decoder layers are not all key/value caches (Qwen3.5's Gated DeltaNet layers keep a
recurrent state, which migrl's decoder can neither stack nor trim) goes through transformers' own
``generate`` instead, one call per prefill batch: the same sampling fields, without the shared prefill or
the early exit of finished rows (bench/RESULTS.md, "Qwen3.5": 2.5x the per-sample loop on the
released-shaped folder, identical answers).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import torch
from transformers import GenerationConfig

from migrl.engines.base import OnBatch, Request, SamplingParams
from migrl.engines.decoding import decode, prefill, stack
from migrl.models.family import FAMILIES


class HFEngine:
    def __init__(self, model: Any, processor: Any, batch_size: int = 16, prefill_batch: int = 16):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size  # rows decoded together (prompts x samples)
        self.prefill_batch = prefill_batch  # prompts per prefill forward (similar lengths: little padding)
        self.tokenizer = processor.tokenizer
        if self.tokenizer.padding_side != "left":
            raise ValueError("generation needs a left-padding tokenizer (load it with padding_side='left')")
        family = FAMILIES.get(getattr(model.config, "model_type", ""))
        self.stacks_caches = family is None or family.kv_cache_only  # else: transformers' generate

    def prompt_text(self, request: Request) -> str:
        return self.processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)

    def _batches(self, requests: Sequence[Request], texts: Sequence[str]) -> Iterator[Any]:
        """Processor batches of ``prefill_batch`` prompts (left-padded), on the model's device."""
        for start in range(0, len(requests), self.prefill_batch):
            part = requests[start : start + self.prefill_batch]
            images = [im for r in part for im in r.images]
            batch = self.processor(text=list(texts[start : start + self.prefill_batch]), images=images or None,
                                   return_tensors="pt", padding=True)
            yield batch.to(self.model.device)

    def _generated(self, batch: Any, params: SamplingParams) -> list[list[int]]:
        """transformers' ``generate`` on one batch, ``params.rows`` completions per prompt, the folder's own
        sampling settings off (as in migrl's decoder: only temperature and top-p)."""
        sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0) \
            if params.temperature > 0 else dict(do_sample=False)
        with folder_sampling_off(self.model):
            ids = self.model.generate(**batch, max_new_tokens=params.max_new_tokens, num_return_sequences=params.rows,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        return ids[:, batch["input_ids"].shape[1] :].tolist()

    @torch.inference_mode()
    def _generate_batch(self, requests: Sequence[Request], texts: Sequence[str], params: SamplingParams) -> list[list[str]]:
        n = params.rows
        if self.stacks_caches:
            prefixes = [prefill(self.model, batch) for batch in self._batches(requests, texts)]
            tokens = decode(self.model, stack(prefixes), params.max_new_tokens, n=n,
                            temperature=params.temperature, top_p=params.top_p)
        else:
            tokens = [row for batch in self._batches(requests, texts) for row in self._generated(batch, params)]
        decoded = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        if n < params.n:  # greedy: the one answer, n times
            return [[d] * params.n for d in decoded]
        return [decoded[i * n : (i + 1) * n] for i in range(len(requests))]

    def generate(
        self,
        requests: Sequence[Request],
        params: SamplingParams,
        on_batch: OnBatch | None = None,
    ) -> list[list[str]]:
        """Completions per request (``params.n`` each), in request order.

        ``on_batch(indices, completions)`` is called after every batch, so callers can persist
        results as they come and resume after a crash.
        """
        texts = [self.prompt_text(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(requests[i].images), len(texts[i])))
        results: list[list[str]] = [[] for _ in requests]
        per_batch = max(1, self.batch_size // params.rows)
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            outs = self._generate_batch([requests[i] for i in idx], [texts[i] for i in idx], params)
            for i, o in zip(idx, outs):
                results[i] = o
            if on_batch is not None:
                on_batch(idx, outs)
        return results


TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@contextmanager
def folder_sampling_off(model: Any) -> Iterator[Any]:
    """Inside, ``model.generate`` takes nothing from the model folder's generation_config.json but its
    token ids; on exit the folder's config is back (checkpoints and the final folder keep it).

    transformers' ``generate`` fills every field that the GenerationConfig it is given leaves unset (None)
    from ``model.generation_config``: a folder's min_p, typical_p, no_repeat_ngram_size (...) would shape
    TRL's rollouts, which set only temperature, top_p, top_k and repetition_penalty, and a folder's
    repetition_penalty (Qwen2.5-VL's 1.05) the greedy baseline below.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's own
    original = base.generation_config
    base.generation_config = GenerationConfig(**{k: getattr(original, k, None) for k in TOKEN_IDS})
    try:
        yield model
    finally:
        base.generation_config = original


def generate_one_by_one(model: Any, processor: Any, requests: Iterable[Request], max_new_tokens: int) -> list[str]:
    """The per-sample loop of the official evaluation scripts (Migician's): one prompt per generate call.
    Kept as the baseline of bench/eval_throughput.py."""
    outs = []
    for r in requests:
        text = processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        batch = processor(text=[text], images=r.images or None, return_tensors="pt").to(model.device)
        with torch.inference_mode(), folder_sampling_off(model):
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
        outs.append(processor.tokenizer.decode(ids[0, batch["input_ids"].shape[1] :], skip_special_tokens=True))
    return outs
