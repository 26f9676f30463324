"""Serving a model with vLLM the way migrl trains it: the image-size flags, and a start-up check.

A Qwen2.5-VL box is in pixels of the image *as resized by the processor* (min/max pixels): a server
that resizes differently from training answers in another space and IoU drops with no error anywhere.
So the image-size setting (``migrl.images.ImageSizing``, stored in each model folder) must reach the
server, and every OpenAI-engine run checks at start-up that it did:

- ``vllm_serve_flags`` gives the flags for ``vllm serve`` (one function, used by ``migrl serve-flags``,
  the README and the mismatch error); ``--limit-mm-per-prompt`` also bounds what vLLM reserves for
  images when it profiles memory (video 0: migrl sends none).
- ``check_image_tokens`` sends a probe with images of known sizes to every server and compares its
  ``usage.prompt_tokens`` with the count made here. With the served model's processor (eval, reject:
  the model folder is local) the whole prompt is counted here and must match exactly. Without it (a
  teacher whose folder is elsewhere) two probes that differ only in their images are sent, and the
  difference of the server's counts must equal the difference of image tokens ``ImageSizing`` gives:
  text, template and tokenizer cancel out.

In TRL's GRPO with ``use_vllm`` (`check_vllm_rollouts`): the colocated engine is built from the model
folder (TRL 1.16 passes ``model=model.name_or_path`` and no processor kwargs to ``vllm.LLM``), so vLLM
reads the folder's processor config, which must then hold training's setting; in server mode the
server (``trl vllm-serve`` / ``vllm serve`` with these flags) is probed like any other.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image

from migrl.engines.base import Request
from migrl.images import ImageSizing
from migrl.models.family import Family

log = logging.getLogger(__name__)

# Probe images: one small enough that min_pixels enlarges it, one large enough that max_pixels shrinks
# it under any usual setting, so a difference in either limit changes the count.
PROBE_SIZES: tuple[tuple[int, int], ...] = ((24, 20), (1400, 1000))
PROBE_TEXT = "How many pictures are there?"


def vllm_serve_flags(sizing: ImageSizing, max_images: int = 8, family: Family | None = None) -> list[str]:
    """The ``vllm serve`` arguments that make vLLM resize images as training did; the budget in the form the
    family's processor keeps it (Qwen3-VL / Qwen3.5: a ``size`` dict; min/max_pixels otherwise -- transformers
    also takes min/max_pixels for the size dict, but it is the older spelling)."""
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    budget = family.budget_config(sizing.min_pixels, sizing.max_pixels) if family is not None else \
        {"min_pixels": sizing.min_pixels, "max_pixels": sizing.max_pixels}
    kwargs = json.dumps(budget, separators=(",", ":"))
    limits = json.dumps({"image": max_images, "video": 0}, separators=(",", ":"))
    return ["--mm-processor-kwargs", kwargs, "--limit-mm-per-prompt", limits]


def vllm_serve_command(model: str, sizing: ImageSizing, max_images: int = 8, family: Family | None = None) -> str:
    """A shell line starting the server, e.g. ``vllm serve runs/paper/sft --mm-processor-kwargs '{...}' ...``."""
    return shlex.join(["vllm", "serve", model, *vllm_serve_flags(sizing, max_images, family)])


def probe_request(sizes: Sequence[tuple[int, int]], text: str = PROBE_TEXT) -> Request:
    images = [_probe_image(w, h, k) for k, (w, h) in enumerate(sizes)]
    content: list[dict[str, Any]] = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return Request(images, [{"role": "user", "content": content}])


def _probe_image(width: int, height: int, k: int) -> Image.Image:
    # A plain gradient: any content gives the same token count, and PNG keeps it small to send.
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.merge("RGB", (*image.split()[:2], Image.new("L", (width, height), 40 * k % 256)))


def local_prompt_tokens(processor: Any, request: Request) -> int:
    """Tokens of the prompt as the processor makes it (chat template, image tokens included)."""
    text = processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=request.images or None, return_tensors="pt")
    return int(batch["input_ids"].shape[1])


@dataclass
class ProbeResult:
    server: str
    expected: int  # tokens (exact probe) or the token difference of two probes, counted here
    reported: int | None  # what the server's usage said (None: it reports no usage)
    exact: bool  # True: the whole prompt was counted with the served model's processor

    @property
    def matches(self) -> bool:
        return self.reported is None or self.reported == self.expected


class ImageTokenMismatch(RuntimeError):
    """A server makes a different number of image tokens than training did: it resizes images differently."""


def check_image_tokens(engine: Any, sizing: ImageSizing, processor: Any = None, model_name: str = "MODEL",
                       max_images: int = 8, strict: bool = True) -> list[ProbeResult]:
    """Probe every server of ``engine``; raise `ImageTokenMismatch` (``strict``) or warn loudly on a mismatch."""
    if processor is not None:
        request = probe_request(PROBE_SIZES)
        expected = local_prompt_tokens(processor, request)
        results = [ProbeResult(url, expected, n, True) for url, n in engine.prompt_tokens(request).items()]
    else:
        small, large = (probe_request(PROBE_SIZES[:1]), probe_request(PROBE_SIZES[1:]))
        expected = sizing.image_tokens(*PROBE_SIZES[1]) - sizing.image_tokens(*PROBE_SIZES[0])
        counts_small, counts_large = engine.prompt_tokens(small), engine.prompt_tokens(large)
        results = []
        for url, n_small in counts_small.items():
            n_large = counts_large.get(url)
            reported = None if n_small is None or n_large is None else n_large - n_small
            results.append(ProbeResult(url, expected, reported, False))
    for r in results:
        if r.reported is None:
            log.warning("%s reports no usage.prompt_tokens: cannot check that it resizes images as training did", r.server)
    bad = [r for r in results if not r.matches]
    if bad:
        message = mismatch_message(bad, sizing, model_name, max_images)
        if strict:
            raise ImageTokenMismatch(message)
        log.warning("%s", message)
    return results


def mismatch_message(bad: Sequence[ProbeResult], sizing: ImageSizing, model_name: str, max_images: int) -> str:
    sizes = ", ".join(f"{w}x{h}" for w, h in PROBE_SIZES)
    what = (
        f"the probe prompt (images {sizes}) is {{expected}} tokens here but the server counted {{reported}}"
        if bad[0].exact
        else f"the image tokens of a {PROBE_SIZES[1][0]}x{PROBE_SIZES[1][1]} image exceed a {PROBE_SIZES[0][0]}x{PROBE_SIZES[0][1]} one's by "
        "{expected} here but by {reported} on the server"
    )
    lines = [f"{r.server}: " + what.format(expected=r.expected, reported=r.reported) for r in bad]
    return (
        "the server resizes images differently from training (boxes would come back in another pixel space "
        "and IoU drops silently):\n  " + "\n  ".join(lines) + "\n"
        f"training resizes with min_pixels={sizing.min_pixels}, max_pixels={sizing.max_pixels}. Restart the server with\n"
        f"  {vllm_serve_command(model_name, sizing, max_images)}\n"
        "(or, if the difference is known and wanted, pass --allow-image-token-mismatch to warn instead)."
    )


def served_model_name(base_url: str, api_key_env: str = "OPENAI_API_KEY") -> str:
    """The first model a server lists (GET /models): what `trl vllm-serve --model X` serves X as."""
    import os

    import openai

    with openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", max_retries=2) as client:
        models = [m.id for m in client.models.list()]
    if not models:
        raise RuntimeError(f"{base_url}/models lists no model")
    return models[0]


def check_vllm_rollouts(cfg: Any, model_path: Any, processor: Any) -> None:
    """GRPO with TRL's vLLM rollouts: make sure vLLM resizes images as training does (no-op without vLLM)."""
    if not getattr(cfg, "use_vllm", False):
        return
    from migrl.models.loading import load_processor

    sizing = ImageSizing.from_processor(processor)
    if cfg.vllm_mode == "colocate":
        stored = ImageSizing.from_processor(load_processor(model_path))
        if stored != sizing:
            raise ValueError(
                f"the colocated vLLM builds its processor from {model_path} (TRL passes it no processor kwargs), which "
                f"resizes with min_pixels={stored.min_pixels}, max_pixels={stored.max_pixels}, but training uses "
                f"min_pixels={sizing.min_pixels}, max_pixels={sizing.max_pixels}: save the processor with training's "
                "setting into the folder first"
            )
        log.info("vLLM (colocate) reads %s: min_pixels=%d, max_pixels=%d, as training", model_path, sizing.min_pixels, sizing.max_pixels)
        return
    from migrl.engines.openai_compat import OpenAICompatEngine, OpenAIConfig

    base = (cfg.vllm_server_base_url or f"http://{cfg.vllm_server_host}:{cfg.vllm_server_port}").rstrip("/") + "/v1"
    name = served_model_name(base)
    check_image_tokens(OpenAICompatEngine(OpenAIConfig(base_url=base, model=name)), sizing, processor, model_name=name,
                       strict=not getattr(cfg, "allow_image_token_mismatch", False))
