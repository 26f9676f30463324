"""Requests in flight vs one at a time, against an OpenAI-compatible teacher.

The synthesize stage asks a served teacher (vLLM, SGLang, ...) about thousands of multi-image items.
A server batches what it has in flight, so its answer time barely grows with concurrency; this
benchmark stands a fake server with a fixed per-request latency (tests/fake_openai_server.py, in a
process of its own) in for it, and runs the same items through OpenAICompatEngine with concurrency 1
and then --concurrency, side by side. Prints items/s of each and, last, ``ratio=X`` (concurrent over sequential).

    .venv/bin/python bench/synthesis_concurrency.py [--items 64] [--latency 0.5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

SERVER = Path(__file__).resolve().parent.parent / "tests" / "fake_openai_server.py"  # lives with the tests

from migrl.engines.base import Request, SamplingParams  # noqa: E402
from migrl.engines.openai_compat import Failure, OpenAICompatEngine, OpenAIConfig  # noqa: E402


def make_items(count: int, seed: int = 0) -> list[Request]:
    """Multi-image grounding prompts: 2-4 small noisy images each (noise so PNG has work to do)."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        k = rng.randint(2, 4)
        images = [Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3)) for w, h in ((rng.randint(96, 224), rng.randint(96, 224)) for _ in range(k))]
        parts = [{"type": "image"} for _ in images] + [{"type": "text", "text": f"Item {i}: which image shows the red cup? Give its box."}]
        items.append(Request(images=images, messages=[{"role": "user", "content": parts}]))
    return items


def run(base_url: str, items: list[Request], concurrency: int, params: SamplingParams) -> tuple[float, int]:
    engine = OpenAICompatEngine(OpenAIConfig(base_url=base_url, model="teacher", concurrency=concurrency))
    start = time.perf_counter()
    results = engine.generate(items, params)
    seconds = time.perf_counter() - start
    return seconds, sum(isinstance(r, Failure) for r in results)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.5, help="seconds the fake server takes per request")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--n", type=int, default=4, help="completions per item (one request, `n` field)")
    args = p.parse_args()

    items = make_items(args.items)
    params = SamplingParams(max_new_tokens=512, temperature=0.7, n=args.n)
    # The server runs in a process of its own, as a real teacher does: in this process it would share
    # the client's interpreter lock and the benchmark would measure their contention, not concurrency.
    server = subprocess.Popen([sys.executable, str(SERVER), "--latency", str(args.latency)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        seq_s, seq_failed = run(base_url, items, 1, params)
        con_s, con_failed = run(base_url, items, args.concurrency, params)
        out, _ = server.communicate(input="", timeout=30)
        most = out.strip().rpartition("=")[2]
    finally:
        server.kill()

    images = sum(len(r.images) for r in items)
    print(f"{args.items} items ({images} images), n={args.n}, server latency {args.latency:g} s per request")
    print(f"sequential   (1 in flight):  {seq_s:7.2f} s  {args.items / seq_s:7.2f} items/s  failed {seq_failed}")
    print(f"concurrent ({args.concurrency:>2} in flight): {con_s:7.2f} s  {args.items / con_s:7.2f} items/s  failed {con_failed}  (server saw at most {most})")
    print(f"ratio={seq_s / con_s:.2f}")


if __name__ == "__main__":
    main()
