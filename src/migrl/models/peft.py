"""What SFT and GRPO train of a Qwen-VL model: the vision tower frozen, LoRA on the language model's linears.

``LANGUAGE_MODEL_LINEARS`` is the default ``lora_target_modules`` of both stages (a regex: the vision
tower has gate/up/down_proj too, so bare module names would put adapters there as well);
``LoraOptions`` are the LoRA fields both stage configs inherit (defined once; GRPO re-declares the defaults it
needs otherwise); ``lora_config`` hands them to TRL's ``get_peft_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The language model's linear layers only: the vision tower has gate/up/down_proj too.
LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def freeze_vision(model: Any) -> None:
    """The vision tower and the merger (``model.model.visual``) get no gradient."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)


@dataclass
class LoraOptions:
    """The LoRA fields of the sft and grpo configs, named as TRL's ``ModelConfig`` names them (``lora_*``) except
    its ``use_peft``, which recipes and the paper's ablations call ``use_lora``. The stages do not take
    ``ModelConfig`` itself: it also carries loading and quantisation fields (dtype, 4/8-bit, attention) that
    migrl's loader decides from the model folder."""

    use_lora: bool = field(default=True, metadata={"help": "LoRA on the language model (TRL's use_peft); false = train it whole"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default=LANGUAGE_MODEL_LINEARS, metadata={
        "help": "a regex of the modules that get adapters (default: the language model's linears, not the vision tower's)"})


def lora_config(cfg: LoraOptions) -> Any:
    """PEFT's ``LoraConfig`` built by TRL's ``get_peft_config`` from the stage's LoRA fields; None when
    ``use_lora`` is off (full fine-tuning)."""
    if not cfg.use_lora:
        return None
    from trl import ModelConfig, get_peft_config

    return get_peft_config(ModelConfig(use_peft=True, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                       lora_dropout=cfg.lora_dropout, lora_target_modules=cfg.lora_target_modules,
                                       lora_task_type="CAUSAL_LM"))
