"""What SFT and GRPO train of a Qwen-VL model: the vision tower frozen, LoRA on the language model's linears.

``LANGUAGE_MODEL_LINEARS`` is the default ``lora_target_modules`` of both stages (a regex: the vision
tower has gate/up/down_proj too, so bare module names would put adapters there as well);
``lora_config`` builds PEFT's ``LoraConfig`` from a stage config's ``use_lora`` / ``lora_*`` fields.
"""

from __future__ import annotations

from typing import Any

# The language model's linear layers only: the vision tower has gate/up/down_proj too.
LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def freeze_vision(model: Any) -> None:
    """The vision tower and the merger (``model.model.visual``) get no gradient."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)


def lora_config(cfg: Any) -> Any:
    """PEFT's ``LoraConfig`` from a stage config's ``lora_r``, ``lora_alpha``, ``lora_dropout`` and
    ``lora_target_modules``; None when ``use_lora`` is off (full fine-tuning)."""
    if not cfg.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
