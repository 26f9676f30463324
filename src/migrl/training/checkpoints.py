"""Resuming training: which ``checkpoint-N`` folder a rerun may start from."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint the Trainer finished writing, or None.

    transformers (``Trainer._save_checkpoint``) writes a checkpoint's files in place -- weights,
    optimizer, scheduler, RNG, then ``trainer_state.json`` last -- and ``get_last_checkpoint`` takes
    the highest step whatever state that folder is in. After a ``kill -9`` during a save the newest
    folder lacks files, and resuming from it fails. A checkpoint counts here once its
    ``trainer_state.json`` parses and names its own step; a torn newer one is passed over (and
    overwritten when training reaches that step again).
    """
    out = Path(output_dir)
    if not out.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))), reverse=True)
    for step, folder in steps:
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is incomplete (interrupted while saving?); resuming from an earlier checkpoint", folder)
            continue
        if isinstance(state, dict) and state.get("global_step") == step:
            return str(folder)
        log.warning("%s has a trainer_state.json for another step; passed over", folder)
    return None


class CheckpointWeightsMixin:
    """For a ``Trainer`` subclass: resume a plain (non-PEFT, non-sharded) model from a checkpoint the way
    ``from_pretrained`` loads it.

    transformers 5.24's ``Trainer._load_from_checkpoint`` calls ``model.load_state_dict(file, strict=False)``
    on the checkpoint's keys as saved, but Qwen2.5-VL saves in its original layout (``visual.*``,
    ``model.layers.*``) and holds ``model.visual.*`` / ``model.language_model.*``: every key misses, the
    load is a no-op with a warning, and a resumed full fine-tuning continues from the starting weights
    with the optimizer of the trained ones (transformers#43701, open). ``from_pretrained`` applies the
    model's key conversion, so the weights go through it; PEFT adapters, FSDP and DeepSpeed checkpoints
    keep the Trainer's own path (they save the module's keys).
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from transformers import PreTrainedModel
        from transformers.utils import SAFE_WEIGHTS_NAME

        target = model if model is not None else self.model
        plain = isinstance(target, PreTrainedModel) and not hasattr(target, "peft_config")
        weights = Path(resume_from_checkpoint) / SAFE_WEIGHTS_NAME
        if not plain or not weights.exists() or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(target.parameters()).dtype
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype, use_safetensors=True)
        target.load_state_dict(saved.state_dict(), strict=True)
        log.info("loaded the weights of %s", resume_from_checkpoint)
