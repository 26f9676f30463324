"""A real HTTP server speaking `POST /v1/chat/completions` like vLLM, for tests and benchmarks.

It runs in a background thread on 127.0.0.1 (a free port), answers after a fixed latency, and can be
told to misbehave: fail the first attempt of every Nth request (429/500), always fail some requests,
or stay silent past the client's time-out. It records every request (headers and body) and the most
requests it had in flight at once.

    with FakeOpenAIServer(latency=0.2) as server:
        engine = OpenAICompatEngine(OpenAIConfig(base_url=server.base_url, model="teacher"))

It reports ``usage.prompt_tokens`` as a vLLM server resizing images with ``sizing`` would count the
image tokens (the text roughly: a token a word), so migrl's start-up image-token check passes against it
with the matching setting; ``prompt_tokens`` (e.g. `processor_prompt_tokens`) counts exactly instead.

A request's attempt number comes from the openai SDK's `x-stainless-retry-count` header (0 for a
first attempt), so retries of the same request are told apart from new ones without guessing.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from migrl.images import ImageSizing

Answer = Callable[[list[dict[str, Any]], int], list[str | None]]  # (messages, n) -> n contents
BodyTest = Callable[[dict[str, Any]], bool]


def echo_answer(messages: list[dict[str, Any]], n: int) -> list[str | None]:
    """n distinct answers naming the last text part, so a test can match answers to requests."""
    return [f"answer {k} to: {last_text(messages)}" for k in range(n)]


def last_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if isinstance(content, str):
            return content
        for part in reversed(content or []):
            if part.get("type") == "text":
                return part["text"]
    return ""


@dataclass
class Call:
    """One HTTP request the server received, and what it did with it."""

    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    attempt: int  # 0 for a first attempt, from x-stainless-retry-count
    status: int = 0  # what it answered (0 while in flight; 0 also if the client had gone)
    started: float = 0.0
    finished: float = 0.0


@dataclass
class FakeOpenAIServer:
    latency: float = 0.0  # seconds before every answer
    answer: Answer = echo_answer
    flaky_every: int = 0  # the first attempt of every Nth new request fails (0: none)...
    flaky_statuses: Sequence[int] = (429, 500)  # ...with these statuses, in turn
    always_fail: BodyTest | None = None  # requests whose every attempt fails...
    always_fail_status: int = 500  # ...with this status
    slow: BodyTest | None = None  # requests that sleep `slow_seconds` before answering...
    slow_seconds: float = 5.0
    slow_attempts: int | None = None  # ...on their first k attempts (None: on every attempt)
    retry_after_ms: int | None = 10  # sent with errors; the SDK honours retry-after-ms over its back-off
    error_detail: Callable[[Call], str] | None = None  # appended to error messages (e.g. echo a header)
    prompt_tokens: Callable[[dict[str, Any]], int] | None = None  # usage.prompt_tokens of a body...
    sizing: ImageSizing = field(default_factory=ImageSizing)  # ...else its images' tokens with this setting
    served_model: str = "served"  # what GET /v1/models lists

    calls: list[Call] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._first_attempts = 0
        self._stop = threading.Event()  # wakes slow handlers on exit
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first (use it as a context manager)"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:  # GET /v1/models, as vLLM lists what it serves
                if self.path.rstrip("/") == "/v1/models":
                    server._send(self, 200, {"object": "list", "data": [{"id": server.served_model, "object": "model"}]})
                else:
                    server._send(self, 404, {"error": {"message": f"no route {self.path}", "type": "NotFoundError", "code": 404}})

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read stderr

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read -------------------------------------------------------------------------

    def retries(self) -> list[Call]:
        return [c for c in self.calls if c.attempt > 0]

    def calls_for(self, text: str) -> list[Call]:
        """Calls whose last text part is `text`."""
        return [c for c in self.calls if last_text(c.body.get("messages", [])) == text]

    # --- serving ---------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if handler.path.rstrip("/") != "/v1/chat/completions":
            self._send(handler, 404, {"error": {"message": f"no route {handler.path}", "type": "NotFoundError", "code": 404}})
            return
        body = json.loads(raw or b"{}")
        call = Call(
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            attempt=int(handler.headers.get("x-stainless-retry-count") or 0),
            started=time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            flaky_status = None
            if call.attempt == 0:
                self._first_attempts += 1
                if self.flaky_every and self._first_attempts % self.flaky_every == 0:
                    k = self._first_attempts // self.flaky_every - 1
                    flaky_status = self.flaky_statuses[k % len(self.flaky_statuses)]
        try:
            delay = self.latency
            if self.slow is not None and self.slow(body) and (self.slow_attempts is None or call.attempt < self.slow_attempts):
                delay = self.slow_seconds
            if self._stop.wait(delay):
                return  # shutting down
            if self.always_fail is not None and self.always_fail(body):
                call.status = self._error(handler, self.always_fail_status, "planted failure: this request always fails", call)
            elif flaky_status is not None:
                call.status = self._error(handler, flaky_status, f"planted failure: first attempt answered {flaky_status}", call)
            else:
                call.status = self._send(handler, 200, self._completion(body))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up
        finally:
            call.finished = time.monotonic()
            with self._lock:
                self._in_flight -= 1

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        contents = self.answer(body.get("messages", []), n)
        prompt = self.prompt_tokens(body) if self.prompt_tokens is not None else sized_prompt_tokens(body, self.sizing)
        return {
            "id": f"chatcmpl-fake-{len(self.calls)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {"index": k, "message": {"role": "assistant", "content": c}, "finish_reason": "stop", "logprobs": None}
                for k, c in enumerate(contents)
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(contents), "total_tokens": prompt + len(contents)},
        }

    def _error(self, handler: BaseHTTPRequestHandler, status: int, message: str, call: Call) -> int:
        if self.error_detail is not None:
            message += " " + self.error_detail(call)
        headers = {"retry-after-ms": str(self.retry_after_ms)} if self.retry_after_ms is not None else {}
        return self._send(handler, status, {"error": {"message": message, "type": "PlantedError", "code": status}}, headers)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
        return status


def sized_prompt_tokens(body: dict[str, Any], sizing: ImageSizing) -> int:
    """A prompt's tokens: a token a word of text, and each image's tokens after resizing with ``sizing``."""
    from PIL import Image

    count = 0
    for message in body.get("messages", []):
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            if part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                with Image.open(io.BytesIO(base64.b64decode(data))) as im:
                    count += sizing.image_tokens(*im.size) + 2  # with <|vision_start|>, <|vision_end|>
            else:
                count += len(str(part.get("text", "")).split())
    return count


def processor_prompt_tokens(processor: Any) -> Callable[[dict[str, Any]], int]:
    """Count a request's prompt tokens the way vLLM does: the chat template, each image expanded into
    its image tokens by ``processor`` (with that processor's min/max pixels: the server's setting)."""
    from PIL import Image

    lock = threading.Lock()  # handler threads share the processor

    def count(body: dict[str, Any]) -> int:
        images, messages = [], []
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                messages.append(message)
                continue
            parts = []
            for part in content:
                if part["type"] == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            messages.append({**message, "content": parts})
        with lock:
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return int(processor(text=[text], images=images or None, return_tensors="pt")["input_ids"].shape[1])

    return count


def main() -> None:
    """Serve from a process of its own, as a real teacher server is: prints its base URL, serves until
    stdin closes, then prints the most requests it had in flight (benchmarks read both lines)."""
    import argparse
    import sys

    p = argparse.ArgumentParser()
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args()
    with FakeOpenAIServer(latency=args.latency) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
    print(f"max_in_flight={server.max_in_flight}", flush=True)


if __name__ == "__main__":
    main()

