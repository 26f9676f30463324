"""Batched generation vs the per-sample loop of the official evaluation scripts (Migician's).

Same model (the shipped tiny base unless --model), same items (the world's test split), same
greedy decoding and token budget, run side by side. Prints items/s of each and, last,
``ratio=X`` (batched over per-sample). Also checks that both produce the same answers, and times the
batched path with one new token (prompts and pictures through the model, no decoding): per-sample
time over that is the most any decoder could reach on these items, the ``ceiling`` line.

    .venv/bin/python bench/eval_throughput.py [--items 60] [--batch-size 64] [--max-new-tokens 128] [--model DIR]
        [--device cuda --dtype bfloat16]   # on a GPU machine
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from migrl.data.world import write_split
from migrl.engines.base import SamplingParams
from migrl.engines.hf import HFEngine, generate_one_by_one
from migrl.generation import request_for
from migrl.models.loading import load_model, load_processor
from migrl.records import data_root, read_records
from migrl.stages.evaluate import EvalConfig, select


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None)
    p.add_argument("--items", type=int, default=60, help="items in all, spread over the 10 tasks")
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size, help="default: migrl eval's")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_split(tmp, "test", max(1, args.items // 10), seed=123)
        records = select(read_records(path), 0)[: args.items]
        requests = [request_for(r, data_root(path)) for r in records]
        model = load_model(args.model, dtype=getattr(torch, args.dtype), device=args.device)
        processor = load_processor(args.model)
        engine = HFEngine(model, processor, batch_size=args.batch_size)
        params = SamplingParams(max_new_tokens=args.max_new_tokens)
        engine.generate(requests[:4], params)  # warm-up, both paths share it

        t0 = time.perf_counter()
        single = generate_one_by_one(model, processor, requests, args.max_new_tokens)
        t_single = time.perf_counter() - t0

        t0 = time.perf_counter()
        batched = [o[0] for o in engine.generate(requests, params)]
        t_batched = time.perf_counter() - t0

        t0 = time.perf_counter()
        engine.generate(requests, SamplingParams(max_new_tokens=1))
        t_prefill = time.perf_counter() - t0

    same = sum(a == b for a, b in zip(single, batched))
    n = len(requests)
    print(f"items={n} device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
          f"batch_size={args.batch_size} max_new_tokens={args.max_new_tokens}")
    print(f"per-sample: {t_single:.1f} s, {n / t_single:.2f} items/s")
    print(f"batched:    {t_batched:.1f} s, {n / t_batched:.2f} items/s")
    print(f"batched, prefill alone: {t_prefill:.1f} s (ceiling with free decoding: {t_single / t_prefill:.2f})")
    print(f"identical answers: {same}/{n}")
    print(f"ratio={t_single / t_batched:.2f}")


if __name__ == "__main__":
    main()
