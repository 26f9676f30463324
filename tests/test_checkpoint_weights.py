"""Resuming a full fine-tune loads the checkpoint's weights (transformers 5.24's Trainer alone loads none
for Qwen2.5-VL: its checkpoints are saved in the original key layout)."""

import torch
from transformers import Trainer

from migrl.models.loading import load_model
from migrl.training.checkpoints import CheckpointWeightsMixin


class Plain:  # the attributes of a Trainer the resume path reads
    is_fsdp_enabled = is_deepspeed_enabled = False
    _issue_warnings_after_load = Trainer._issue_warnings_after_load
    _load_from_checkpoint = Trainer._load_from_checkpoint

    def __init__(self, model):
        self.model = model


class Resuming(CheckpointWeightsMixin, Plain):
    pass


def test_resume_loads_a_qwen25vl_checkpoints_weights(tmp_path):
    trained = load_model(None, dtype=torch.float32)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    trained.save_pretrained(tmp_path)  # what Trainer._save_checkpoint writes for a plain model
    fresh = load_model(None, dtype=torch.float32)
    Plain(fresh)._load_from_checkpoint(str(tmp_path))  # the library's own path loads nothing...
    assert not torch.equal(fresh.lm_head.weight, trained.lm_head.weight)
    Resuming(fresh)._load_from_checkpoint(str(tmp_path))  # ...migrl's loads everything
    want = trained.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())
