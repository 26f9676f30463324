"""Loading model folders the same way in every stage: safetensors only, no remote code unless
asked, left padding for generation, and the one image-size setting applied to the processor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor, PreTrainedModel

from migrl.images import ImageSizing
from migrl.models.family import DEFAULT_FAMILY, DEFAULT_TINY_FAMILY, Family, family_of

# The embedded base shipped with the package; the default model of every stage.
TINY_BASE = Path(__file__).resolve().parent.parent / "assets" / "tiny-base"


def shipped_base(family_name: str = DEFAULT_TINY_FAMILY) -> Path:
    """Where the package keeps the tiny base of a tiny family (``migrl.models.family.TINY_FAMILIES``): the
    default family's is TINY_BASE, another's sits beside it as ``tiny-base-<name>`` (it may not be there)."""
    return TINY_BASE if family_name == DEFAULT_TINY_FAMILY else TINY_BASE.with_name(f"tiny-base-{family_name}")


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    if path in (None, "", "tiny-base"):
        return TINY_BASE
    p = Path(path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(
            f"{str(p)!r} is not a model folder (no config.json). migrl loads local folders only: "
            "download a checkpoint with your own tools and pass its path."
        )
    return p


def default_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def load_processor(path: str | os.PathLike | None, sizing: ImageSizing | None = None, trust_remote_code: bool = False) -> Any:
    processor = AutoProcessor.from_pretrained(
        resolve_model_path(path), padding_side="left", trust_remote_code=trust_remote_code
    )
    if sizing is not None:
        sizing.apply_to(processor, _family(path))
    return processor


def _family(path: str | os.PathLike | None) -> Family:
    """The folder's family; the default one for a model type the registry does not know."""
    return family_of(resolve_model_path(path)) or DEFAULT_FAMILY


def processor_as_loaded(path: str | os.PathLike, sizing: ImageSizing | None = None) -> Any:
    """The folder's processor as the folder defines it (its padding side, no truncation), with ``sizing``
    applied: what a training stage saves beside its weights. The instance a trainer used is not: TRL's
    collators set truncation at max_length on it, which the next stage would inherit and cut prompts with."""
    processor = AutoProcessor.from_pretrained(resolve_model_path(path))
    if sizing is not None:
        sizing.apply_to(processor, _family(path))
    return processor


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "tf_model.h5")


def require_safetensors(folder: Path) -> None:
    """Refuse a model folder without safetensors weights before transformers looks for others.

    Pickled weights (``pytorch_model.bin``) can run code when they are loaded; safetensors cannot.
    """
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists():
        return
    found = [name for name in PICKLE_WEIGHTS if (folder / name).exists()]
    what = f"only {', '.join(found)} (pickle-based weights, which can run code when loaded)" if found else "no weights"
    raise FileNotFoundError(
        f"{str(folder)!r} has {what}. migrl loads safetensors only: convert the checkpoint yourself "
        "where you trust it, e.g. `model.save_pretrained(folder, safe_serialization=True)`, and pass that folder."
    )


def load_model(
    path: str | os.PathLike | None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """The folder's model with its family's class (``migrl.models.family``); a model type the registry does
    not know goes to transformers' image-text-to-text auto class, which maps the folder's config itself."""
    folder = resolve_model_path(path)
    require_safetensors(folder)
    model = model_class(folder).from_pretrained(
        folder,
        dtype=dtype or default_dtype(),
        use_safetensors=True,  # never unpickle weights
        trust_remote_code=trust_remote_code,
    )
    if device is not None:
        model.to(device)
    return model.eval()


def model_class(folder: Path) -> type:
    """The transformers class that loads the folder: its family's, else the auto class."""
    import transformers

    family = family_of(folder)
    return getattr(transformers, family.model_class) if family else transformers.AutoModelForImageTextToText


def context_left(model: Any, new_tokens: int) -> int | None:
    """Positions a prompt's image tokens may take: the model's context minus the answer's tokens."""
    config = getattr(model.config, "text_config", model.config)
    limit = getattr(config, "max_position_embeddings", None)
    return limit - new_tokens if isinstance(limit, int) else None
