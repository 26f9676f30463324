"""Tiny models of the real Qwen2.5-VL and Qwen3-VL architectures, made locally (no hub here).

``build_tiny_model(out_dir)`` writes an ordinary model folder -- config, safetensors weights,
tokenizer with the Qwen special tokens, image processor, chat template -- that
``Qwen2_5_VLForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained`` load like
a hub checkpoint. The tokenizer is a byte-level BPE with Qwen2's pre-tokenisation (digits one by
one), trained on the embedded world's text and wrapped in transformers' ``Qwen2Tokenizer``.

``build_tiny_model(out_dir, family=QWEN3_VL)`` writes the same for ``Qwen3VLForConditionalGeneration``:
the same dimensions, Qwen3-VL's own parts (head_dim, interleaved M-RoPE, DeepStack taps of the vision
tower into the first decoder layers, a learned vision position grid, gelu vision MLPs), a
``Qwen3VLProcessor`` with 16-px patches merged 2 x 2 (32-px image tokens) and the same token budget as
the Qwen2.5-VL base (``migrl.images.tiny_sizing``), and Qwen3-VL's released chat template. It keeps the
same tokenizer: the Qwen3 tokenizer's 151,936 rows would be ~39M parameters of embeddings on a ~5M
model, while the tiny one has every token Qwen3-VL's processor and template use (``<|im_start|>``,
``<|vision_start|>``, ``<|image_pad|>``, ...; the world's ``<think>`` / ``<answer>`` tags are plain text in
both), so the two tiny bases differ in their architecture only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from migrl.images import MERGE_SIZE, PATCH_SIZE, TINY_SIZING, ImageSizing, tiny_sizing
from migrl.models.family import DEFAULT_FAMILY, QWEN25_VL, QWEN3_VL, Family

# Qwen2's pre-tokenizer pattern: digits split one by one, as in the real model.
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# The Qwen2.5-VL special tokens, in the real model's order.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL's chat template, with the assistant turn wrapped in {% generation %} so TRL's
# assistant-only loss can find it. Rendered text is identical to the released template.
CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{ 'Picture ' ~ image_count.value ~ ': ' }}{%- endif -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' ~ message['role'] ~ '\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{ render(message['content']) ~ '<|im_end|>' }}{%- endgeneration -%}{{ '\\n' }}"
    "{%- else -%}{{ render(message['content']) ~ '<|im_end|>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class TinyShape:
    """Sizes of the tiny model. ``mrope_section`` must sum to head_dim / 2."""

    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    vision_hidden_size: int = 128
    vision_intermediate_size: int = 384
    vision_depth: int = 4
    vision_heads: int = 4
    vocab_size: int = 1024  # BPE target; the real vocabulary may come out a little smaller
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


SHAPES = {
    "base": TinyShape(),
    # For tests that need a random model in seconds.
    "test": TinyShape(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        mrope_section=(2, 3, 3),
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_depth=2,
        vision_heads=2,
        vocab_size=600,
    ),
}


def folder_shape(folder: str | Path) -> str | None:
    """The name in SHAPES of the tiny model in ``folder`` (read from its config.json), or None for another."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    text, vision = cfg.get("text_config", cfg), cfg.get("vision_config", {})
    found = (text.get("hidden_size"), text.get("intermediate_size"), text.get("num_hidden_layers"),
             vision.get("hidden_size"), vision.get("depth"))
    for name, s in SHAPES.items():
        if found == (s.hidden_size, s.intermediate_size, s.num_hidden_layers, s.vision_hidden_size, s.vision_depth):
            return name
    return None


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenisation, wrapped as a transformers Qwen2Tokenizer."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",  # generation pads on the left; saved so every loader agrees
    )
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tok


def make_processor(tokenizer: Qwen2Tokenizer, sizing: ImageSizing = TINY_SIZING) -> Qwen2_5_VLProcessor:
    image_processor = Qwen2VLImageProcessor(
        min_pixels=sizing.min_pixels, max_pixels=sizing.max_pixels, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=sizing.min_pixels, max_pixels=sizing.max_pixels, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=CHAT_TEMPLATE
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return processor


def make_config(tokenizer: Qwen2Tokenizer, shape: TinyShape) -> Qwen2_5_VLConfig:
    ids = tokenizer.convert_tokens_to_ids
    assert sum(shape.mrope_section) * 2 == shape.head_dim, "mrope_section must sum to head_dim / 2"
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta, "mrope_section": list(shape.mrope_section)},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden_size,
        intermediate_size=shape.vision_intermediate_size,
        num_heads=shape.vision_heads,
        out_hidden_size=shape.hidden_size,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=list(range(1, shape.vision_depth, 2)),
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The config fields naming the image / video placeholder and vision start / end tokens (both families')."""
    ids = tokenizer.convert_tokens_to_ids
    return {"image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>")}


def tokenizer_corpus(n_items: int = 300, seed: int = 12345) -> list[str]:
    """Text the tiny model will read and write: world questions, chains of thought, skill prompts."""
    from migrl.data import base_skills, world
    from migrl.prompts import ANSWER_ONLY_SUFFIX, COT_SUFFIX

    texts = [COT_SUFFIX, ANSWER_ONLY_SUFFIX, "You are a helpful assistant."]
    for task in world.TASKS:
        for i in range(n_items // len(world.TASKS) + 1):
            item = world.generate(task, seed, "tokenizer", i)
            texts += [item.question, world.gold_response(item)]
    texts += [q + " " + a for q, a in base_skills.sample_texts(seed, n_items)]
    return texts


# --------------------------------------------------------------------------- Qwen3-VL

# Qwen3-VL's own values where its architecture differs from Qwen2.5-VL's (Qwen3-VL-2B/4B-Instruct configs and
# processor files): image normalisation, vision activation, RMSNorm epsilon.
QWEN3_IMAGE_MEAN = QWEN3_IMAGE_STD = (0.5, 0.5, 0.5)
QWEN3_VISION_ACT = "gelu_pytorch_tanh"
QWEN3_RMS_EPS = 1e-6
# TRL's copy of Qwen3-VL's released template with {% generation %} around the assistant turn (its qwen3_vl.jinja
# is the released one; migrl.models.released reads that).
QWEN3_TRAINING_TEMPLATE = "qwen3_vl_training.jinja"
QWEN3_MAX_DEEPSTACK = 3  # the released models tap three vision blocks (8B: 8, 16, 24 of 27)

# Interleaved M-RoPE gives height and width every third rotary frequency (``Qwen3VLTextRotaryEmbedding``), so a
# section realises as written only when 3 x its height / width part fits in head_dim / 2: Qwen2.5-VL's (4, 6, 6)
# would silently become (6, 5, 5). The tiny one keeps the released split of head_dim 128, (24, 20, 20).
QWEN3_RELEASED_MROPE = (24, 20, 20)


def interleaved_mrope_counts(half: int, section: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (t, h, w) frequencies Qwen3-VL's interleaving really gives each axis, for ``half`` = head_dim / 2."""
    h = len(range(1, min(3 * section[1], half), 3))
    w = len(range(2, min(3 * section[2], half), 3))
    return half - h - w, h, w


def qwen3_mrope_section(shape: TinyShape) -> tuple[int, int, int]:
    """The released section scaled to the tiny head: (6, 5, 5) for head_dim 32, (4, 2, 2) for 16."""
    half = shape.head_dim // 2
    spatial = half * QWEN3_RELEASED_MROPE[1] // sum(QWEN3_RELEASED_MROPE)
    section = (half - 2 * spatial, spatial, spatial)
    assert interleaved_mrope_counts(half, section) == section, f"interleaving does not realise {section}"
    return section


def deepstack_indexes(depth: int) -> list[int]:
    """Vision blocks whose features DeepStack adds to decoder layers 0, 1, ...: the last blocks before the final
    one (whose output is the main merger's), at most three, as the released models' intermediate taps."""
    return list(range(depth - 1))[-QWEN3_MAX_DEEPSTACK:]


def make_qwen3_processor(tokenizer: Qwen2Tokenizer, sizing: ImageSizing | None = None) -> Qwen3VLProcessor:
    """Qwen3VLProcessor: 16-px patches merged 2 x 2, the budget as Qwen3-VL keeps it (a size dict), and
    TRL's training variant of Qwen3-VL's released template (the same text, with {% generation %} tags for
    the assistant-only loss)."""
    sizing = sizing or tiny_sizing(QWEN3_VL)
    geometry = QWEN3_VL.geometry
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": sizing.min_pixels, "longest_edge": sizing.max_pixels}, patch_size=geometry.patch,
        merge_size=geometry.merge, image_mean=list(QWEN3_IMAGE_MEAN), image_std=list(QWEN3_IMAGE_STD),
    )
    # Videos keep the video processor's own budget (it bounds all frames together): the world has none.
    video_processor = Qwen3VLVideoProcessor(patch_size=geometry.patch, merge_size=geometry.merge)
    template = (resources.files("trl") / "chat_templates" / QWEN3_TRAINING_TEMPLATE).read_text(encoding="utf-8")
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=template
    )
    tokenizer.chat_template = template
    return processor


def make_qwen3_config(tokenizer: Qwen2Tokenizer, shape: TinyShape, sizing: ImageSizing | None = None) -> Qwen3VLConfig:
    ids = tokenizer.convert_tokens_to_ids
    sizing = sizing or tiny_sizing(QWEN3_VL)
    patch = QWEN3_VL.geometry.patch
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,  # Qwen3 states it; Qwen2.5 derives it
        max_position_embeddings=4096,
        rms_norm_eps=QWEN3_RMS_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta,
                         "mrope_section": list(qwen3_mrope_section(shape)), "mrope_interleaved": True},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden_size,
        intermediate_size=shape.vision_intermediate_size,
        num_heads=shape.vision_heads,
        hidden_act=QWEN3_VISION_ACT,
        out_hidden_size=shape.hidden_size,
        patch_size=patch,
        spatial_merge_size=QWEN3_VL.geometry.merge,
        temporal_patch_size=2,
        # The learned position grid covers the largest picture the budget allows, in patches (8 x 8 here),
        # rather than the released 48 x 48 that every tiny picture would be interpolated down from.
        num_position_embeddings=sizing.max_pixels // patch ** 2,
        deepstack_visual_indexes=deepstack_indexes(shape.vision_depth),
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )


# What each tiny family is built of: its processor and config (from the tokenizer, shape and image setting) and
# its model class. Qwen2.5-VL's config has no field the image setting decides.
_BUILDERS = {
    QWEN25_VL.model_type: (make_processor, lambda tok, shape, _sizing: make_config(tok, shape),
                           Qwen2_5_VLForConditionalGeneration),
    QWEN3_VL.model_type: (make_qwen3_processor, make_qwen3_config, Qwen3VLForConditionalGeneration),
}


def build_tiny_model(
    out_dir: str | Path,
    shape: TinyShape | str = "base",
    seed: int = 0,
    sizing: ImageSizing | None = None,
    family: Family = DEFAULT_FAMILY,
) -> Path:
    """Write a random-init tiny model folder of ``family`` (weights, tokenizer, processor, template); ``sizing``
    defaults to the family's tiny budget (``migrl.images.tiny_sizing``)."""
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    sizing = sizing or tiny_sizing(family)
    out = Path(out_dir)
    tokenizer = train_tokenizer(tokenizer_corpus(), shape.vocab_size)  # the same for every family
    make_processor_of, make_config_of, model_class = _BUILDERS[family.model_type]
    processor: ProcessorMixin = make_processor_of(tokenizer, sizing)
    torch.manual_seed(seed)
    model: PreTrainedModel = model_class(make_config_of(tokenizer, shape, sizing))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.do_sample = False
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / "migrl_tiny_shape.json").write_text(json.dumps(asdict(shape), indent=2) + "\n")
    return out
