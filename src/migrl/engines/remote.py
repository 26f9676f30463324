"""``eval`` and ``reject`` against served models (`vllm serve`, SGLang, any OpenAI-compatible server).

The stages drive an engine with ``generate(requests, params, on_batch)`` (``migrl.engines.base.Engine``);
`BatchAdapter` gives the OpenAI-compatible engine that interface, reporting each item as it finishes
(so the stages' append logs resume as with the local engine) and keeping the failures aside, with
their reasons, instead of writing them as answers: a rerun asks for them again.

`connect` builds the engine and, before any item is asked for, checks that every server makes the
image tokens training made (``migrl.engines.serving.check_image_tokens``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

from migrl.configs import RemoteConfig  # noqa: F401  (defined with the other configs; used here)
from migrl.engines.base import OnBatch, Request, SamplingParams
from migrl.engines.openai_compat import Failure, OpenAICompatEngine, OpenAIConfig
from migrl.engines.serving import check_image_tokens
from migrl.images import ImageSizing


class BatchAdapter:
    """`OpenAICompatEngine` (an ``ItemEngine``) as an ``Engine``: ``generate(requests, params, on_batch)``."""

    def __init__(self, engine: OpenAICompatEngine):
        self.engine = engine
        self.failures: dict[int, str] = {}  # of the last generate call: request index -> reason

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 on_batch: OnBatch | None = None) -> list[list[str]]:
        self.failures = {}

        def one(i: int, result: list[str] | Failure) -> None:
            if isinstance(result, Failure):
                self.failures[i] = result.reason
            elif on_batch is not None:
                on_batch([i], [result])

        results = self.engine.generate(requests, params, on_result=one)
        return [[] if isinstance(r, Failure) else r for r in results]


def connect(config: RemoteConfig, sizing: ImageSizing, processor: Any = None) -> BatchAdapter:
    """The engine for ``config``'s servers, once each passed the image-token check."""
    if not config.base_urls:
        raise ValueError("the openai engine needs at least one --base-url")
    engine = OpenAICompatEngine(OpenAIConfig(
        base_url=list(config.base_urls), model=config.model, api_key_env=config.api_key_env,
        concurrency=config.concurrency, timeout=config.timeout, server_sampling_fields=config.server_sampling_fields,
    ))
    check_image_tokens(engine, sizing, processor, model_name=config.model, max_images=config.max_images,
                       strict=not config.allow_image_token_mismatch)
    return BatchAdapter(engine)


def served_model_stub(folder: str | None) -> SimpleNamespace:
    """Stands in for the model where a stage reads only its config (the context length): the weights are
    on the servers, the folder here gives the processor and the config."""
    from transformers import AutoConfig

    from migrl.models.loading import resolve_model_path

    return SimpleNamespace(config=AutoConfig.from_pretrained(resolve_model_path(folder)))
