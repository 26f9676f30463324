"""The end of a training stage on any number of ranks: check that the ranks agree, write the folder once.

Under data parallelism (DDP, ZeRO-1/2) every rank holds the whole model and applies the same averaged
gradient, so all ranks must end with bit-identical weights; a rank that drifted (a non-synchronised
buffer, a rank-dependent branch) would make the saved folder one rank's private model. That is checked,
not assumed: each rank hashes its weights and the hashes are compared. The folder is written by the main
process only (every rank writing the same files at once can leave a torn file behind).

Under ZeRO-3 or FSDP the weights are sharded, so there is no per-rank copy to compare; ``trainer.save_model``
gathers them (launch/zero3.yaml sets ``zero3_save_16bit_model``). That path needs GPUs and DeepSpeed and is
not exercised by the CPU tests.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor of the state dict (names, dtypes, shapes and bytes), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_sharded(trainer: Any) -> bool:
    """True when no rank holds the whole model (ZeRO-3, FSDP)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return False
    plugin = trainer.accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3


def rank_digests(trainer: Any) -> list[str] | None:
    """Each rank's weights digest, gathered on every rank (None where the weights are sharded)."""
    from accelerate.utils import gather_object

    if weights_sharded(trainer):
        return None
    return gather_object([weights_digest(trainer.model)])


def check_ranks_agree(digests: list[str] | None) -> None:
    if digests and len(set(digests)) > 1:
        first = digests[0]
        differ = [rank for rank, d in enumerate(digests) if d != first]
        raise RuntimeError(
            f"the ranks ended training with different weights (ranks {differ} differ from rank 0; digests {digests}): "
            "the saved folder is rank 0's model only. Something updated one rank and not the others."
        )


def save_final(trainer: Any, processor: Any, out: Path, merge_lora: bool, base_model: str | Path) -> None:
    """The trained model as a plain model folder in ``out``, written once."""
    acc = trainer.accelerator
    if weights_sharded(trainer):
        trainer.save_model(str(out))  # every rank takes part in gathering the shards
        if merge_lora and acc.is_main_process:
            _merge_saved_adapter(out, base_model)
    elif acc.is_main_process:
        final = trainer.model
        if merge_lora:
            final = final.merge_and_unload()
        final.save_pretrained(out, safe_serialization=True)
    if acc.is_main_process:
        processor.save_pretrained(out)
    trainer.save_state()  # trainer_state.json (log history) beside the weights; written by rank 0 only
    acc.wait_for_everyone()  # no rank reads the folder (or exits) before it is whole


def _merge_saved_adapter(out: Path, base_model: str | Path) -> None:
    # Under ZeRO-3 the LoRA is saved as an adapter; merging needs the whole base, so it is done once, on
    # the CPU of the main process.
    from peft import PeftModel

    from migrl.models.loading import load_model

    merged = PeftModel.from_pretrained(load_model(base_model, dtype=torch.bfloat16), str(out)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink(missing_ok=True)
