"""The engine's own decode loop against transformers' generate, on the tiny base and world items.

Small prefill and decode batches make every path run: prompts of different lengths and image counts
stacked across prefill batches, finished rows dropped mid-batch, several decode batches.
"""

from __future__ import annotations

import pytest
import torch

from migrl.engines.base import Request, SamplingParams
from migrl.engines.hf import HFEngine, generate_one_by_one
from migrl.generation import request_for
from migrl.records import data_root, read_records


@pytest.fixture(scope="module")
def requests(world_test):
    records = read_records(world_test)
    return [request_for(r, data_root(world_test)) for r in records[:14]]


def test_greedy_answers_are_those_of_generate_one_by_one(base_model, requests):
    model, processor = base_model
    assert len({len(r.images) for r in requests}) > 1  # multi-image prompts of several sizes
    expected = generate_one_by_one(model, processor, requests, max_new_tokens=48)
    engine = HFEngine(model, processor, batch_size=6, prefill_batch=4)
    got = [o[0] for o in engine.generate(requests, SamplingParams(max_new_tokens=48))]
    assert got == expected
    assert len({len(t) for t in got}) > 1  # rows finished at different steps


def test_text_only_prompts_are_positioned_past_their_padding(base_model):
    model, processor = base_model
    texts = ["Name a colour.", "Say where the red square is in a picture of a field with many shapes in it."]
    requests = [Request(images=[], messages=[{"role": "user", "content": [{"type": "text", "text": t}]}]) for t in texts]
    expected = generate_one_by_one(model, processor, requests, max_new_tokens=24)
    got = [o[0] for o in HFEngine(model, processor, batch_size=4).generate(requests, SamplingParams(max_new_tokens=24))]
    assert got == expected


def test_answers_stop_at_the_first_eos_and_at_the_token_budget(base_model, requests):
    from migrl.engines.decoding import decode, prefill

    model, processor = base_model
    engine = HFEngine(model, processor)
    batch = processor(text=[engine.prompt_text(r) for r in requests[:6]],
                      images=[im for r in requests[:6] for im in r.images], return_tensors="pt", padding=True)
    eos = model.generation_config.eos_token_id
    for budget in (5, 64):
        rows = decode(model, prefill(model, batch), budget)
        assert all(0 < len(t) <= budget for t in rows)
        assert all(eos not in t[:-1] for t in rows)  # nothing after an EOS
    assert any(t[-1] == eos for t in rows)


def test_sampling_gives_n_answers_per_prompt_and_follows_the_seed(base_model, requests):
    model, processor = base_model
    engine = HFEngine(model, processor, batch_size=8, prefill_batch=3)
    params = SamplingParams(max_new_tokens=32, temperature=1.0, n=4)
    torch.manual_seed(0)
    first = engine.generate(requests[:5], params)
    torch.manual_seed(0)
    again = engine.generate(requests[:5], params)
    assert first == again
    assert all(len(o) == 4 for o in first)
    assert any(len(set(o)) > 1 for o in first)  # the samples of a prompt differ


def test_top_p_near_zero_samples_the_greedy_answer(base_model, requests):
    model, processor = base_model
    engine = HFEngine(model, processor, batch_size=8)
    greedy = engine.generate(requests[:4], SamplingParams(max_new_tokens=32))
    nucleus = engine.generate(requests[:4], SamplingParams(max_new_tokens=32, temperature=0.7, top_p=1e-6, n=2))
    assert nucleus == [[g[0]] * 2 for g in greedy]
