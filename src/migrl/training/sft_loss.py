"""SFT logits and loss at the trained positions only (``TrainedPositionsLossMixin``).

Why this exists, going around part of TRL: TRL 1.16's SFTTrainer never builds the (batch, seq, vocab)
logits -- it patches the model with a fused LM head (``trl.trainer.utils.add_fused_lm_head``) that
projects in tiles -- but only on Triton devices (CUDA, XPU) does that head project just the positions
whose next-token label is trained. Everywhere else, CPU included, it scores every position, so that
tile shapes stay fixed for compilers (its comment names Neuron). With assistant-only labels almost
every position is an image or prompt token: a batch of two ~3,000-token multi-image records is ~6,000
positions projected onto Qwen's 152,064 vocabulary rows, in tiles of 4,096 positions x 32,768 columns
(537 MB per float32 temporary, several per tile, forward and backward), for some 180 trained
positions; bench/sft_memory.py measures 6.0 GB peak RSS against 2.3 GB with this mixin, on a ~20M
parameter model. TRL offers nothing else that covers this: Liger's fused linear cross-entropy is
refused by SFTTrainer (it would replace the fused head) and is not installed, and ``loss_type`` only
picks between ``nll`` and ``dft`` on the same head.

The mixin keeps TRL's ``compute_loss`` -- the normalisation by ``num_items_in_batch`` under gradient
accumulation, the DFT weighting, the aux loss, the ``mean_token_accuracy``, ``entropy`` and
``num_tokens`` metrics -- and answers only its fused-head call itself: the model's own forward with
``logits_to_keep`` set to the positions that predict a trained label, then each kept position's
log-probability of its label, entropy and top-1 flag from those logits, laid out as TRL's fused head
lays them out (zero on ignored positions). On Triton devices TRL's own compact path already does
this, in tiles, and the mixin steps aside.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import is_triton_available
from trl.trainer.utils import FusedCausalLMOutput

IGNORE_INDEX = -100


def trl_scores_only_trained_positions(device: torch.device) -> bool:
    """Whether TRL's fused LM head already projects only the trained positions on ``device``: the
    condition of ``trl.kernels.chunked_logprob._use_triton``, which ``add_fused_lm_head`` reads. Should
    TRL's condition change, a stale copy only sends a batch down the other path, which is also exact."""
    return is_triton_available() and device.type in ("cuda", "xpu")


def next_token_targets(labels: torch.Tensor | None, shift_labels: torch.Tensor | None) -> torch.Tensor:
    """(batch, seq): the label each position predicts, -100 where it predicts nothing trained.

    Position i predicts labels[:, i + 1], so the last position predicts nothing; ``shift_labels`` (context
    parallelism passes them) are already in that layout."""
    if shift_labels is not None:
        return shift_labels
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def token_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per kept position: log-probability of its target (with gradient), entropy of the next-token
    distribution and whether the target is its first argmax (both without), in float32 as TRL's head."""
    logp = logits.float().log_softmax(-1)
    log_probs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
        # argmax returns the first maximum, as TRL's is_top1 counts a tie with an earlier token as a miss
        is_top1 = logp.argmax(-1) == targets
    return log_probs, entropy, is_top1


def _spread(keep: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # masked_scatter keeps an all-ignored batch connected to the graph: its loss is a differentiable zero
    return values.new_zeros(keep.shape).masked_scatter(keep, values)


def trained_positions_forward(model: Any, labels: torch.Tensor | None = None, shift_labels: torch.Tensor | None = None,
                              num_items_in_batch: Any = None, **inputs: Any) -> FusedCausalLMOutput:
    """What ``model(..., labels=labels, fused_lm_head=True)`` returns under TRL's fused head, from logits
    computed at the trained positions only."""
    targets = next_token_targets(labels, shift_labels)
    keep = targets != IGNORE_INDEX
    # A boolean (batch, seq) logits_to_keep keeps each row's own positions, flattened to (kept, vocab)
    # (transformers' slice_logits_to_keep); a 1-D union of indices would score every row at every
    # row's positions.
    outputs = model(**inputs, logits_to_keep=keep)
    log_probs, entropy, is_top1 = (_spread(keep, x) for x in token_scores(outputs.logits, targets[keep]))
    if shift_labels is None:  # TRL's head drops the last position, which predicts nothing
        keep, log_probs, entropy, is_top1 = (x[:, :-1] for x in (keep, log_probs, entropy, is_top1))
    loss = -log_probs.sum() / (keep.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
    aux_loss = getattr(outputs, "aux_loss", None)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=keep,
                               aux_loss=aux_loss)


class TrainedPositionsHead:
    """Stands in for the model inside TRL's ``compute_loss``: a fused-head call is answered from logits
    at the trained positions only; every other call (the full logits TRL asks for with
    ``return_outputs``, ``compute_loss_func`` or label smoothing) goes to the model unchanged."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, *args: Any, fused_lm_head: bool = False, **kwargs: Any) -> Any:
        if not fused_lm_head or args:  # TRL passes keywords; anything else keeps its own fused head
            return self.model(*args, fused_lm_head=fused_lm_head, **kwargs)
        return trained_positions_forward(self.model, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class TrainedPositionsLossMixin:
    """For a TRL ``SFTTrainer`` subclass (before it in the bases): logits and loss at the trained
    positions only where TRL's fused head would score every position (see the module docstring).
    Loss, gradients and metrics are TRL's, to float rounding."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        if self._selects_positions(model, inputs):
            model = TrainedPositionsHead(model)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _selects_positions(self, model: Any, inputs: dict[str, Any]) -> bool:
        device = inputs["input_ids"].device if "input_ids" in inputs else self.args.device
        if trl_scores_only_trained_positions(device):
            return False
        # Ulysses sequence parallelism hands the model to Trainer.compute_loss, which unwraps it; and
        # prompt-learning PEFT prepends virtual tokens, so the labels no longer line up with the
        # positions: both keep TRL's path.
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and getattr(parallelism, "sp_enabled", False):
            return False
        peft_config = getattr(model, "active_peft_config", None)
        return not getattr(peft_config, "is_prompt_learning", False)
