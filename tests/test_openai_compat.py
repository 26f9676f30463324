"""The OpenAI-compatible engine against a real local HTTP server (tests/fake_openai_server.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging

import pytest
from PIL import Image

from fake_openai_server import FakeOpenAIServer, last_text
from migrl.engines import openai_compat
from migrl.engines.base import Request, SamplingParams
from migrl.engines.openai_compat import Failure, OpenAICompatEngine, OpenAIConfig

PLANTED_KEY = "sk-migrl-planted-0123456789"
PNG_PREFIX = "data:image/png;base64,"


def request(text: str, sizes: list[tuple[int, int]] = [(8, 6)]) -> Request:
    images = [Image.new("RGB", size, (40 * k % 256, 90, 160)) for k, size in enumerate(sizes)]
    parts = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return Request(images=images, messages=[{"role": "user", "content": parts}])


def engine(server: FakeOpenAIServer, **config) -> OpenAICompatEngine:
    return OpenAICompatEngine(OpenAIConfig(base_url=server.base_url, model="teacher", **config))


def decode(url: str) -> Image.Image:
    assert url.startswith(PNG_PREFIX)
    return Image.open(io.BytesIO(base64.b64decode(url[len(PNG_PREFIX) :])))


def test_multi_image_requests_arrive_whole_and_in_order():
    sizes = [[(11, 7)], [(5, 9), (13, 4)], [(6, 6), (20, 3), (3, 17)]]
    requests = [request(f"question {i}", s) for i, s in enumerate(sizes)]
    # Interleaved parts and a system prompt: every placeholder must take the next image.
    requests[2].messages = [
        {"role": "system", "content": "You ground objects."},
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image"}, {"type": "text", "text": "then"}, {"type": "image"}, {"type": "image"}, {"type": "text", "text": "question 2"}]},
    ]
    params = SamplingParams(max_new_tokens=77, temperature=0.7, top_p=0.9, n=3)
    with FakeOpenAIServer() as server:
        results = engine(server, extra_body={"mm_processor_kwargs": {"max_pixels": 1024}}).generate(requests, params)

    assert results == [[f"answer {k} to: question {i}" for k in range(3)] for i in range(3)]
    assert len(server.calls) == 3
    for i, s in enumerate(sizes):
        (call,) = server.calls_for(f"question {i}")
        body = call.body
        assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["n"]) == ("teacher", 77, 0.7, 0.9, 3)
        assert body["mm_processor_kwargs"] == {"max_pixels": 1024}
        parts = body["messages"][-1]["content"]
        urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
        assert [decode(u).size for u in urls] == s
        assert all(set(p) == {"type", "text"} or p["type"] == "image_url" for p in parts)
    (call,) = server.calls_for("question 2")
    assert call.body["messages"][0] == {"role": "system", "content": "You ground objects."}
    assert [p["type"] for p in call.body["messages"][1]["content"]] == ["text", "image_url", "text", "image_url", "image_url", "text"]
    assert [p["text"] for p in call.body["messages"][1]["content"] if p["type"] == "text"] == ["first", "then", "question 2"]


def test_n_as_separate_requests():
    with FakeOpenAIServer() as server:
        results = engine(server, n_per_request=False).generate([request("a"), request("b")], SamplingParams(n=3))
    assert results == [["answer 0 to: a"] * 3, ["answer 0 to: b"] * 3]
    assert len(server.calls) == 6 and all("n" not in c.body for c in server.calls)


def test_server_that_ignores_n_is_asked_again_and_none_content_is_empty():
    answers = iter(["one", None, "three"])
    with FakeOpenAIServer(answer=lambda messages, n: [next(answers)]) as server:
        (result,) = engine(server).generate([request("a")], SamplingParams(n=3))
    assert result == ["one", "", "three"]
    assert [c.body.get("n") for c in server.calls] == [3, 2, None]


def test_flaky_server_every_item_still_succeeds():
    with FakeOpenAIServer(latency=0.01, flaky_every=2, flaky_statuses=(429, 500)) as server:
        results = engine(server, concurrency=4).generate([request(f"q{i}") for i in range(10)], SamplingParams())
    assert results == [[f"answer 0 to: q{i}"] for i in range(10)]
    assert {c.status for c in server.calls if c.attempt == 0} == {200, 429, 500}
    assert len(server.retries()) == 5 and all(c.status == 200 for c in server.retries())


def test_slow_server_retries_then_fails_the_item_alone():
    slow = {"slow once", "slow always"}
    server = FakeOpenAIServer(latency=0.02, slow=lambda body: last_text(body["messages"]) in slow, slow_seconds=3.0)
    once = FakeOpenAIServer(latency=0.02, slow=lambda body: last_text(body["messages"]) == "slow once", slow_seconds=3.0, slow_attempts=1)
    texts = ["fast 0", "slow always", "fast 1"]
    with server:
        results = engine(server, timeout=0.3, max_retries=1).generate([request(t) for t in texts], SamplingParams())
    assert results[0] == ["answer 0 to: fast 0"] and results[2] == ["answer 0 to: fast 1"]
    assert isinstance(results[1], Failure) and "time-out" in results[1].reason and "0.3 s" in results[1].reason
    assert [c.attempt for c in server.calls_for("slow always")] == [0, 1]

    with once:
        (result,) = engine(once, timeout=0.3, max_retries=1).generate([request("slow once")], SamplingParams())
    assert result == ["answer 0 to: slow once"]
    assert [(c.attempt, c.status) for c in once.calls] == [(0, 0), (1, 200)]  # the first was given up on


def test_request_that_always_fails_becomes_a_failure_for_that_item_only():
    with FakeOpenAIServer(always_fail=lambda body: last_text(body["messages"]) == "bad") as server:
        results = engine(server, max_retries=2).generate([request("good 0"), request("bad"), request("good 1")], SamplingParams())
    assert results[0] == ["answer 0 to: good 0"] and results[2] == ["answer 0 to: good 1"]
    assert isinstance(results[1], Failure)
    assert results[1].reason.startswith("HTTP 500: planted failure") and len(results[1].reason) <= 300
    assert [c.attempt for c in server.calls_for("bad")] == [0, 1, 2]


def test_concurrency_is_bounded_results_are_ordered_and_reported_once():
    seen: list[int] = []
    with FakeOpenAIServer(latency=0.2) as server:
        results = engine(server, concurrency=4).generate(
            [request(f"q{i}") for i in range(20)], SamplingParams(), on_result=lambda i, r: seen.append(i)
        )
    assert 3 <= server.max_in_flight <= 4
    assert results == [[f"answer 0 to: q{i}"] for i in range(20)]
    assert sorted(seen) == list(range(20))


def test_images_are_encoded_only_when_their_request_starts(monkeypatch):
    encoded = 0
    encode = openai_compat.image_data_url

    def counting(image):
        nonlocal encoded
        encoded += 1
        return encode(image)

    monkeypatch.setattr(openai_compat, "image_data_url", counting)
    at_first_result: list[int] = []
    with FakeOpenAIServer(latency=0.05) as server:
        engine(server, concurrency=2).generate(
            [request(f"q{i}", [(4, 4), (5, 5)]) for i in range(12)], SamplingParams(), on_result=lambda i, r: at_first_result.append(encoded)
        )
    assert at_first_result[0] <= 2 * 2  # two items in flight, two images each
    assert encoded == 24


def test_api_key_reaches_the_server_and_nowhere_else(monkeypatch, caplog, capsys):
    monkeypatch.setenv("MIGRL_TEACHER_KEY", PLANTED_KEY)
    caplog.set_level(logging.DEBUG)
    echo_key = lambda call: "you sent " + call.headers.get("authorization", "")  # a server echoing the key
    with FakeOpenAIServer(flaky_every=2, always_fail=lambda body: last_text(body["messages"]) == "bad", error_detail=echo_key) as server:
        results = engine(server, api_key_env="MIGRL_TEACHER_KEY", max_retries=1).generate(
            [request("good"), request("bad"), request("good too")], SamplingParams()
        )
        server.always_fail_status = 401
        with pytest.raises(RuntimeError) as rejected:
            engine(server, api_key_env="MIGRL_TEACHER_KEY").generate([request("bad")], SamplingParams())

    assert all(c.headers["authorization"] == f"Bearer {PLANTED_KEY}" for c in server.calls)
    assert isinstance(results[1], Failure) and "you sent Bearer <api key>" in results[1].reason
    assert "HTTP 401" in str(rejected.value) and "$MIGRL_TEACHER_KEY" in str(rejected.value)
    assert any(r.name.startswith("openai") for r in caplog.records)  # the SDK's debug logging was live
    out, err = capsys.readouterr()
    for text in [caplog.text, out, err, str(rejected.value), *(str(r) for r in results)]:
        assert PLANTED_KEY not in text


def test_without_a_key_the_placeholder_is_sent(monkeypatch):
    monkeypatch.delenv("MIGRL_TEACHER_KEY", raising=False)
    with FakeOpenAIServer() as server:
        engine(server, api_key_env="MIGRL_TEACHER_KEY").generate([request("a")], SamplingParams())
    assert server.calls[0].headers["authorization"] == "Bearer EMPTY"


def test_mismatched_placeholders_fail_before_anything_is_sent():
    bad = request("a", [(4, 4), (4, 4)])
    bad.messages[0]["content"] = bad.messages[0]["content"][1:]  # one placeholder, two images
    with FakeOpenAIServer() as server:
        with pytest.raises(ValueError, match="1 .*placeholders but 2 images"):
            engine(server).generate([request("fine"), bad], SamplingParams())
    assert server.calls == []


def test_generate_inside_an_event_loop_points_to_agenerate():
    with FakeOpenAIServer() as server:
        e = engine(server)

        async def main():
            with pytest.raises(RuntimeError, match="agenerate"):
                e.generate([request("a")], SamplingParams())
            return await e.agenerate([request("a")], SamplingParams())

        assert asyncio.run(main()) == [["answer 0 to: a"]]


SAMPLING = ("max_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p", "repetition_penalty")


def sampling_sent(body: dict) -> dict:
    """The sampling fields of a request body; "missing" for each one left out."""
    return {k: body.get(k, "missing") for k in SAMPLING}


def test_every_sampling_field_is_sent_and_extra_body_wins_a_clash():
    # vLLM fills a field a request leaves out from the folder's generation_config.json (Qwen2.5-VL's
    # repetition_penalty 1.05): each request, the probe included, says every one of them.
    extra = {"mm_processor_kwargs": {"max_pixels": 1024}, "top_k": 20}
    params = SamplingParams(max_new_tokens=77, temperature=0.7, top_p=0.9, n=2)
    with FakeOpenAIServer() as server:
        e = engine(server, extra_body=extra)
        e.generate([request("n at once")], params)
        e.prompt_tokens(request("probe"))
        engine(server, n_per_request=False).generate([request("one by one")], params)
    sampled = {"max_tokens": 77, "temperature": 0.7, "top_p": 0.9, "presence_penalty": 0.0, "frequency_penalty": 0.0,
               "top_k": 20, "min_p": 0.0, "repetition_penalty": 1.0}
    (call,) = server.calls_for("n at once")
    assert sampling_sent(call.body) == sampled and call.body["n"] == 2
    assert call.body["mm_processor_kwargs"] == {"max_pixels": 1024}
    (probe,) = server.calls_for("probe")
    assert sampling_sent(probe.body) == {**sampled, "max_tokens": 1, "temperature": 0.0, "top_p": 1.0}
    separate = server.calls_for("one by one")
    assert len(separate) == 2 and all(sampling_sent(c.body) == {**sampled, "top_k": -1} for c in separate)
    assert extra == {"mm_processor_kwargs": {"max_pixels": 1024}, "top_k": 20}  # the config's dict is not written to


def test_a_hosted_api_can_be_spared_the_server_only_fields():
    with FakeOpenAIServer() as server:
        engine(server, server_sampling_fields=False).generate([request("a")], SamplingParams(max_new_tokens=5))
    body = server.calls[0].body
    assert sampling_sent(body) == {"max_tokens": 5, "temperature": 0.0, "top_p": 1.0, "presence_penalty": 0.0,
                                   "frequency_penalty": 0.0, "top_k": "missing", "min_p": "missing",
                                   "repetition_penalty": "missing"}
