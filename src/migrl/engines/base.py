"""What every engine takes and the shape of its ``generate``: a `Request` (images and chat messages),
`SamplingParams`, and the `Engine` protocol the generating stages drive.

Two shapes exist. `Engine` is the stages' one, ``generate(requests, params, on_batch)``: ``HFEngine``
(engines/hf.py) and ``BatchAdapter`` (engines/remote.py, served models) have it, and a stage's
generating loop (``migrl.generation.Generation``) persists each batch as ``on_batch`` reports it.
`ItemEngine` is ``OpenAICompatEngine``'s own (engines/openai_compat.py): ``on_result(index, result)``
per item as it finishes, a result being the completions or a ``Failure``; ``BatchAdapter`` turns it
into an `Engine`, keeping the failures aside in its ``failures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from PIL import Image

OnBatch = Callable[[list[int], list[list[str]]], None]  # request indices, their completions
OnResult = Callable[[int, Any], None]  # request index, its completions or a Failure


@dataclass
class Request:
    images: list[Image.Image]
    messages: list[dict[str, Any]]  # chat messages, images as {"type": "image"} parts


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # completions per request

    @property
    def rows(self) -> int:
        """Completions decoded per request: greedy ones are all the same, so one, repeated n times."""
        return self.n if self.temperature > 0 else 1

    # Every sampling field of a chat-completions request is sent, every time: vLLM's OpenAI server (by
    # default, --generation-config auto) and SGLang take each field a request leaves out from the model
    # folder's generation_config.json (Qwen2.5-VL-7B-Instruct's: repetition_penalty 1.05, temperature 1e-6).
    def api_fields(self) -> dict[str, Any]:
        """The OpenAI API's own sampling fields, at migrl's values (penalties off)."""
        return {"max_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "presence_penalty": 0.0, "frequency_penalty": 0.0}

    @staticmethod
    def server_fields() -> dict[str, Any]:
        """vLLM's and SGLang's sampling fields beyond the OpenAI API, all off. top_k -1 is "off" for both:
        vLLM prefers 0 but accepts -1, while SGLang and older vLLMs refuse 0."""
        return {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}


class Engine(Protocol):
    """What eval, reject and a local teacher drive (``HFEngine``, ``BatchAdapter``).

    ``generate`` returns ``params.n`` completions per request, in request order, and calls
    ``on_batch(indices, completions)`` as completions come in (so callers persist them and resume after a
    crash). An engine whose items can fail without an answer (a server) also has ``failures``: request
    index -> reason, of the last call; the stages never log those as answers, so a rerun asks again.
    """

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 on_batch: OnBatch | None = None) -> list[list[str]]: ...


class ItemEngine(Protocol):
    """An engine that reports each item as it finishes (``OpenAICompatEngine``): ``on_result(index,
    result)``, a result being the completions or a ``Failure``; the same list comes back, in order."""

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 on_result: OnResult | None = None) -> list[Any]: ...
