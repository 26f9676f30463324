"""Generation through an OpenAI-compatible chat API: a teacher behind `vllm serve`, SGLang, LMDeploy
or a hosted API, with many requests in flight.

Such a server batches whatever it has in flight, so throughput comes from keeping ``concurrency``
requests open. An item's images are PNG-encoded only when its request starts, so thousands of items
cost the memory of ``concurrency`` of them. Retries are the openai SDK's: 408/409/429/5xx,
connection errors and time-outs, with exponential back-off, honouring Retry-After. An item that
still fails becomes a `Failure` and the run goes on; a rejected key, model or route (401/403/404)
stops the run, since every other item would fail the same way.

Several servers (``base_url`` a list: e.g. one `vllm serve` per GPU or node) share the items: each
server gets ``concurrency`` workers that take the next item as they free up, so a faster server
answers more of them and a slow one does not hold the rest back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import openai
from PIL import Image

from migrl.engines.base import Request, SamplingParams
from migrl.images import ImageError

log = logging.getLogger(__name__)

REASON_CHARS = 300  # of the server's message kept in a Failure
NO_KEY = "EMPTY"  # what vLLM expects when it was started without --api-key
CONFIG_ERRORS = {401: "the API key was rejected", 403: "the API key may not use this model", 404: "no such model or route"}


@dataclass
class OpenAIConfig:
    base_url: str | Sequence[str]  # e.g. "http://127.0.0.1:8000/v1", or a list of servers serving the same model
    model: str  # the name the server serves, e.g. vLLM's --served-model-name
    api_key_env: str = "OPENAI_API_KEY"  # the key itself never sits in a config file
    concurrency: int = 16  # requests in flight, per server
    # Per attempt, in seconds. The SDK applies it to each wait on the socket (connect, every read),
    # which for a non-streamed completion is the whole generation, and retries it like a 5xx.
    timeout: float = 120.0
    max_retries: int = 5
    n_per_request: bool = True  # ask for n completions with `n`; False: n separate requests
    extra_body: dict[str, Any] | None = None  # passed through, e.g. vLLM's mm_processor_kwargs; wins over migrl's fields
    # vLLM's/SGLang's top_k, min_p and repetition_penalty in every request (SamplingParams.server_fields);
    # False for a hosted API that refuses fields it does not know (it has no generation_config.json to fill them).
    server_sampling_fields: bool = True


@dataclass
class Failure:
    """An item whose request still failed after all retries, or could not be built from its input."""

    reason: str
    field: str | None = None  # set when the input is at fault (e.g. "images": an image does not decode)


Result = list[str] | Failure


def image_data_url(image: Image.Image) -> str:
    # PNG keeps the pixels exact: the teacher sees what the student will be trained on.
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # encoding time matters more than bytes here
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def check_request(index: int, request: Request) -> None:
    """Fail before anything is sent if a request's image placeholders do not match its images."""
    placeholders = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ValueError(f"request {index}: a message's content must be a string or a list of parts, got {type(content).__name__}")
        for part in content:
            kind = part.get("type")
            if kind == "image":
                placeholders += 1
            elif kind != "text":
                raise ValueError(f"request {index}: unknown part type {kind!r}; expected {{'type': 'image'}} or {{'type': 'text', 'text': ...}}")
    if placeholders != len(request.images):
        raise ValueError(
            f"request {index} has {placeholders} {{'type': 'image'}} placeholders but {len(request.images)} images: "
            "each image needs exactly one placeholder, in order"
        )


def to_openai_messages(request: Request) -> list[dict[str, Any]]:
    """Chat messages in the API's form: each image placeholder becomes a PNG data URL, in order."""
    images = iter(request.images)
    out = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            out.append(message)
            continue
        parts = [
            {"type": "image_url", "image_url": {"url": image_data_url(next(images))}}
            if part["type"] == "image"
            else {"type": "text", "text": part["text"]}
            for part in content
        ]
        out.append({**message, "content": parts})
    return out


def failure_reason(err: openai.APIError, config: OpenAIConfig) -> str:
    if isinstance(err, openai.APITimeoutError):  # before its base class, APIConnectionError
        return f"time-out: no answer within {config.timeout:g} s on any of {config.max_retries + 1} attempts"
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__
        return f"connection error: {type(cause).__name__}: {cause}"[:REASON_CHARS] if cause else "connection error"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {server_message(err)}"[:REASON_CHARS]
    return f"{type(err).__name__}: {err}"[:REASON_CHARS]


def server_message(err: openai.APIStatusError) -> str:
    # The SDK puts only `error.message` of a JSON body in str(err); plain-text bodies (a proxy's
    # 502 page) and vLLM's top-level {"message": ...} are only on err.body.
    body = err.body
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body or err.message)


def redact(text: str, api_key: str) -> str:
    # A server may echo the key it rejected; reasons and errors are logged and written to disk.
    return text.replace(api_key, "<api key>") if api_key and api_key != NO_KEY else text


class OpenAICompatEngine:
    def __init__(self, config: OpenAIConfig):
        if config.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {config.concurrency}")
        self.config = config
        self.base_urls = [config.base_url] if isinstance(config.base_url, str) else list(config.base_url)
        if not self.base_urls:
            raise ValueError("no server: base_url is an empty list")
        self._warned_short_n = False

    def _client(self, base_url: str) -> openai.AsyncOpenAI:
        # One client per server and run: its connection pool belongs to the event loop that opened it.
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=os.environ.get(self.config.api_key_env) or NO_KEY,
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
        )

    def generate(self, requests: Sequence[Request], params: SamplingParams, on_result: Callable[[int, Result], None] | None = None) -> list[Result]:
        """``params.n`` completions per request, or a `Failure`, in request order.

        ``on_result(index, result)`` is called as each item finishes, so callers can persist results
        as they come and resume after a crash.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, params, on_result))
        raise RuntimeError("generate() was called inside a running event loop (a notebook, an async app): use `await engine.agenerate(...)` there")

    async def agenerate(self, requests: Sequence[Request], params: SamplingParams, on_result: Callable[[int, Result], None] | None = None) -> list[Result]:
        results: list[Result | None] = [None] * len(requests)
        pending = iter(range(len(requests)))  # shared by the workers of every server: each takes the next item

        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(self._client(url)) for url in self.base_urls]
            # Bounds each server's requests in flight (n of them per item if not n_per_request).
            server_slots = [asyncio.Semaphore(self.config.concurrency) for _ in clients]

            async def worker(client: openai.AsyncOpenAI, slots: asyncio.Semaphore) -> None:
                for i in pending:
                    # Requests may be a lazy sequence that loads images on access: touch one at a time.
                    try:
                        request = requests[i]
                    except ImageError as exc:  # a file that decodes badly fails its item, not the run
                        results[i] = Failure(str(exc), field="images")
                    else:
                        check_request(i, request)
                        results[i] = await self._item(client, slots, request, params)
                    if on_result is not None:
                        on_result(i, results[i])

            # `concurrency` workers per server rather than a task per item: only items being asked
            # about hold encoded images.
            per_server = min(self.config.concurrency, len(requests))
            tasks = [asyncio.create_task(worker(c, s)) for _ in range(per_server) for c, s in zip(clients, server_slots)]
            try:
                await asyncio.gather(*tasks)
            finally:  # a config error or a failing on_result stops the others before the client closes
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        failed = sum(isinstance(r, Failure) for r in results)
        if failed:
            log.warning("%d of %d items failed; their results are Failure(reason)", failed, len(results))
        return results  # type: ignore[return-value]  # every slot was filled

    async def _item(self, client: openai.AsyncOpenAI, slots: asyncio.Semaphore, request: Request, params: SamplingParams) -> Result:
        # PNG encoding is CPU work: off the event loop, so the other requests keep being served.
        messages = await asyncio.to_thread(to_openai_messages, request)
        texts: list[str] = []
        try:
            while len(texts) < params.n:
                missing = params.n - len(texts)
                if self.config.n_per_request:
                    got = await self._ask(client, slots, messages, params, missing)
                else:
                    answers = await asyncio.gather(*(self._ask(client, slots, messages, params, 1) for _ in range(missing)), return_exceptions=True)
                    errors = [a for a in answers if isinstance(a, BaseException)]
                    if errors:
                        raise errors[0]
                    got = [text for answer in answers for text in answer]  # type: ignore[union-attr]
                if not got:
                    return Failure("the server answered with no choices")
                if len(got) < missing and not self._warned_short_n:
                    # Some servers ignore `n`; asking again for the rest still gives n completions.
                    log.warning("the server returned %d of the %d completions asked for with `n`; asking again for the rest", len(got), missing)
                    self._warned_short_n = True
                texts += got
        except openai.APIStatusError as err:
            if err.status_code in CONFIG_ERRORS:
                raise self._config_error(err, client) from None
            return self._failure(err, client)
        except openai.APIError as err:
            return self._failure(err, client)
        return texts[: params.n]

    async def _ask(self, client: openai.AsyncOpenAI, slots: asyncio.Semaphore, messages: list[dict[str, Any]], params: SamplingParams, n: int) -> list[str]:
        kwargs: dict[str, Any] = {"n": n} if n > 1 else {}  # left out when 1: not every server knows `n`
        async with slots:
            response = await client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                **self._sampling(params),
                **kwargs,
            )
        return [choice.message.content or "" for choice in response.choices or []]

    def _sampling(self, params: SamplingParams) -> dict[str, Any]:
        """The sampling arguments of a request: all of them (see SamplingParams.api_fields), the server-only
        ones in the body, merged with the configured extra_body (which wins on a clash)."""
        body = SamplingParams.server_fields() if self.config.server_sampling_fields else {}
        body.update(self.config.extra_body or {})
        return {**params.api_fields(), "extra_body": body or None}

    def _config_error(self, err: openai.APIStatusError, client: openai.AsyncOpenAI) -> RuntimeError:
        message = redact(server_message(err)[:REASON_CHARS], client.api_key)
        url = str(client.base_url).rstrip("/")
        return RuntimeError(
            f"{url} answered HTTP {err.status_code} ({CONFIG_ERRORS[err.status_code]}): {message}. "
            f"Check the key in ${self.config.api_key_env}, the model name {self.config.model!r} "
            f"(GET {url}/models lists them) and that base_url ends in /v1."
        )

    def prompt_tokens(self, request: Request) -> dict[str, int | None]:
        """Each server's ``usage.prompt_tokens`` for ``request`` (asking for one token), None where a server
        reports no usage: how many tokens the server made of the prompt, its images included."""
        check_request(0, request)
        messages = to_openai_messages(request)

        async def ask_all() -> dict[str, int | None]:
            counts: dict[str, int | None] = {}
            for url in self.base_urls:
                async with self._client(url) as client:
                    try:
                        response = await client.chat.completions.create(
                            model=self.config.model, messages=messages,  # type: ignore[arg-type]
                            **self._sampling(SamplingParams(max_new_tokens=1)),
                        )
                    except openai.APIStatusError as err:
                        if err.status_code in CONFIG_ERRORS:
                            raise self._config_error(err, client) from None
                        raise RuntimeError(f"{url}: the probe request failed: {self._failure(err, client).reason}") from None
                    except openai.APIError as err:
                        raise RuntimeError(f"{url}: the probe request failed: {self._failure(err, client).reason}") from None
                usage = getattr(response, "usage", None)
                counts[url] = getattr(usage, "prompt_tokens", None)
            return counts

        return asyncio.run(ask_all())

    def _failure(self, err: openai.APIError, client: openai.AsyncOpenAI) -> Failure:
        reason = redact(failure_reason(err, self.config), client.api_key)
        log.warning("item failed: %s", reason)
        return Failure(reason)
