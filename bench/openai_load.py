"""The OpenAI-compatible client under load: thousands of items against a slow and flaky server.

A fake server in its own process (tests/fake_openai_server.py) answers after --latency seconds,
fails the first attempt of every --flaky-every-th request (429, 500, 503 in turn) and lets every
--slow-every-th item's first attempt hang past the client's time-out, so retries, back-off and
time-outs all happen while --concurrency requests are in flight. Items are built lazily (two
noisy PNG images each, made on access), as LazyRequests does for synthesis.

Checks, for every item: exactly one result, reported exactly once, and it is the server's answer to
that very item (no item lost, none swapped). Measures items/s and memory: the peak of Python
allocations (tracemalloc) over all items and over a tenth of them -- bounded memory means the two
are about equal -- and the process's peak RSS. Prints, last, ``ratio=X``: items/s with
--concurrency in flight over items/s with 1 in flight (on a subsample of --serial-items).

    .venv/bin/python bench/openai_load.py [--items 3000] [--concurrency 64] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Sequence

from PIL import Image

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the fake server lives with the tests

from migrl.engines.base import Request, SamplingParams  # noqa: E402
from migrl.engines.openai_compat import Failure, OpenAICompatEngine, OpenAIConfig  # noqa: E402


class LazyItems(Sequence[Request]):
    """Item i: two small noisy images and a question naming i, made only when the engine takes it."""

    def __init__(self, count: int, offset: int = 0):
        self.count, self.offset = count, offset

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Request:  # type: ignore[override]
        rng = random.Random(self.offset + i)
        images = [Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3)) for _ in range(2)]
        parts = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": question(self.offset + i)}]
        return Request(images=images, messages=[{"role": "user", "content": parts}])


def question(i: int) -> str:
    return f"item {i}: where is the red cup?"


def serve(args: argparse.Namespace) -> None:
    """The server process: prints its URL, serves until stdin closes, prints what it saw."""
    from fake_openai_server import FakeOpenAIServer, last_text

    def slow(body: dict) -> bool:
        text = last_text(body.get("messages", []))
        return text.startswith("item ") and int(text.split(":")[0][5:]) % args.slow_every == 0

    server = FakeOpenAIServer(latency=args.latency, flaky_every=args.flaky_every, flaky_statuses=(429, 500, 503),
                              slow=slow if args.slow_every else None, slow_seconds=args.timeout * 3, slow_attempts=1)
    with server:
        print(server.base_url, flush=True)
        sys.stdin.read()
    statuses = [c.status for c in server.calls]
    print(f"max_in_flight={server.max_in_flight} calls={len(statuses)} retries={len(server.retries())} "
          f"errors={sum(s >= 400 for s in statuses)} abandoned={statuses.count(0)}", flush=True)


def run(base_url: str, items: LazyItems, concurrency: int, timeout: float, trace: bool = False) -> dict:
    engine = OpenAICompatEngine(OpenAIConfig(base_url=base_url, model="teacher", concurrency=concurrency,
                                             timeout=timeout, max_retries=4))
    reported: list[int] = []
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    results = engine.generate(items, SamplingParams(max_new_tokens=64), on_result=lambda i, r: reported.append(i))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    lost = [i for i, r in enumerate(results) if isinstance(r, Failure) or r != [f"answer 0 to: {question(items.offset + i)}"]]
    twice = len(reported) - len(set(reported))
    missing = len(items) - len(set(reported))
    return {"seconds": seconds, "items_per_s": len(items) / seconds, "lost": len(lost), "reported_twice": twice,
            "never_reported": missing, "peak_mb": peak / 1e6 if peak is not None else None,
            "failures": [r.reason for r in results if isinstance(r, Failure)][:3]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--serial-items", type=int, default=100, help="items of the 1-in-flight run the ratio compares with")
    p.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per request")
    p.add_argument("--flaky-every", type=int, default=7, help="every Nth request's first attempt fails (429/500/503)")
    p.add_argument("--slow-every", type=int, default=50, help="every Nth item's first attempt outlasts the time-out")
    p.add_argument("--timeout", type=float, default=1.0, help="the client's per-attempt time-out, seconds")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
        return

    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports (torch, openai)
    server = subprocess.Popen([sys.executable, __file__, "--serve", *sys.argv[1:]], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        serial = run(base_url, LazyItems(args.serial_items, offset=10**6), 1, args.timeout)
        full = run(base_url, LazyItems(args.items), args.concurrency, args.timeout)
        tenth = run(base_url, LazyItems(args.items // 10, offset=2 * 10**6), args.concurrency, args.timeout, trace=True)
        traced = run(base_url, LazyItems(args.items, offset=3 * 10**6), args.concurrency, args.timeout, trace=True)
    finally:
        server.stdin.close()
        seen = server.stdout.read().strip()
        server.wait()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"server: latency {args.latency:g} s, first attempt of every {args.flaky_every}th request fails (429/500/503), "
          f"every {args.slow_every}th item's first attempt outlasts the {args.timeout:g} s time-out; saw: {seen}")
    print(f"{'run':<34} {'items':>6} {'seconds':>8} {'items/s':>8} {'lost':>5} {'dup':>4} {'peak MB':>8}")
    for name, n, r in (("1 in flight", args.serial_items, serial), (f"{args.concurrency} in flight", args.items, full),
                       (f"{args.concurrency} in flight, traced", args.items // 10, tenth),
                       (f"{args.concurrency} in flight, traced", args.items, traced)):
        peak = f"{r['peak_mb']:.1f}" if r["peak_mb"] is not None else "-"
        print(f"{name:<34} {n:>6} {r['seconds']:>8.2f} {r['items_per_s']:>8.1f} {r['lost']:>5} {r['reported_twice'] + r['never_reported']:>4} {peak:>8}")
        if r["failures"]:
            print(f"  failures: {r['failures']}")
    print(f"peak RSS of the client process: {rss_mb:.0f} MB, {rss_mb - baseline_mb:.0f} MB above its size after imports; "
          f"Python allocations peak {traced['peak_mb']:.1f} MB over "
          f"{args.items} items vs {tenth['peak_mb']:.1f} MB over {args.items // 10}")
    ok = all(r["lost"] == r["reported_twice"] == r["never_reported"] == 0 for r in (serial, full, tenth, traced))
    print("no item lost, doubled or swapped" if ok else "ITEMS LOST OR DOUBLED")
    print(f"ratio={full['items_per_s'] / serial['items_per_s']:.2f}")


if __name__ == "__main__":
    main()
