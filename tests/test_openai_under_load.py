"""The OpenAI-compatible client with hundreds of lazily built items against a slow and flaky local
server: every item gets its own answer exactly once, requests in flight stay bounded, and items are
built only as slots free up (memory bounded by the concurrency, not the item count). The benchmark
with thousands of items and its figures: bench/openai_load.py, bench/RESULTS.md."""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from fake_openai_server import FakeOpenAIServer, last_text
from migrl.engines.base import Request, SamplingParams
from migrl.engines.openai_compat import OpenAICompatEngine, OpenAIConfig

ITEMS, CONCURRENCY = 300, 8


class CountingItems(Sequence[Request]):
    def __init__(self, n: int):
        self.n, self.built = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Request:  # type: ignore[override]
        self.built += 1
        parts = [{"type": "image"}, {"type": "text", "text": f"item {i}"}]
        return Request(images=[Image.new("RGB", (8, 8), (i % 256, 0, 0))], messages=[{"role": "user", "content": parts}])


def peak_answered_in_flight(server: FakeOpenAIServer) -> int:
    """Most requests answered at once (attempts the client abandoned at its time-out left out)."""
    events = sorted(e for c in server.calls if c.status for e in ((c.started, 1), (c.finished, -1)))
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_hundreds_of_items_against_a_slow_flaky_server():
    slow = lambda body: last_text(body["messages"]).endswith("0")  # noqa: E731  every 10th item
    items = CountingItems(ITEMS)
    reported: list[int] = []
    built_at_first_result: list[int] = []

    def on_result(i, result):
        reported.append(i)
        if len(reported) == 1:
            built_at_first_result.append(items.built)

    with FakeOpenAIServer(latency=0.005, flaky_every=4, flaky_statuses=(429, 500, 503), slow=slow,
                          slow_seconds=1.0, slow_attempts=1) as server:
        engine = OpenAICompatEngine(OpenAIConfig(base_url=server.base_url, model="t", concurrency=CONCURRENCY,
                                                 timeout=0.3, max_retries=3))
        results = engine.generate(items, SamplingParams(), on_result=on_result)
    assert results == [[f"answer 0 to: item {i}"] for i in range(ITEMS)]  # none lost, none swapped
    assert sorted(reported) == list(range(ITEMS))  # each reported exactly once
    assert len(server.retries()) >= ITEMS // 4  # the flaky and slow first attempts were retried
    assert any(c.status == 0 for c in server.calls)  # and some were given up on at the time-out
    assert peak_answered_in_flight(server) <= CONCURRENCY
    assert built_at_first_result[0] <= CONCURRENCY and items.built == ITEMS
