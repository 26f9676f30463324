"""SFT's loss at the trained positions only (training/sft_loss.py) is TRL's, held to stock SFTTrainer.

The reference is TRL 1.16's own ``SFTTrainer.compute_loss`` on the same trainer, model and batch (its
fused LM head, which on a CPU scores every position): the same loss, gradients (to 1e-5) and metrics,
on multi-image records of different lengths with assistant-only labels, with LoRA and full fine-tuning,
and under gradient accumulation (``num_items_in_batch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from migrl.models.loading import load_model, load_processor
from migrl.models.peft import LANGUAGE_MODEL_LINEARS
from migrl.records import GroundTruthBox, Record
from migrl.stages.sft import MigrlSFTTrainer, training_dataset
from migrl.training.checkpoints import CheckpointWeightsMixin
from migrl.training.sft_loss import TrainedPositionsLossMixin

METRICS = ("entropy", "mean_token_accuracy", "num_tokens")


MixinSFTTrainer = MigrlSFTTrainer  # the stage's trainer, with the mixin
assert issubclass(MigrlSFTTrainer, TrainedPositionsLossMixin)


class StockSFTTrainer(CheckpointWeightsMixin, SFTTrainer):
    """The stage's trainer without the mixin: TRL's own loss."""


def write_records(root: Path, shapes: list[list[tuple[int, int]]], responses: list[str]) -> list[Record]:
    """One record per entry of ``shapes`` (the sizes of its images), noise PNGs, a response each."""
    rng = np.random.default_rng(0)
    records = []
    for i, (sizes, response) in enumerate(zip(shapes, responses)):
        names = []
        for k, (w, h) in enumerate(sizes):
            name = f"r{i}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
            names.append(name)
        records.append(Record(id=f"r{i}", task="common_object", images=tuple(names), response=response,
                              question=f"Which object do these {len(sizes)} images share? Locate it in image {len(sizes)}.",
                              boxes=(GroundTruthBox(len(sizes) - 1, (1.0, 2.0, 30.0, 40.0)),)))
    return records


# Multi-image records of different lengths: the batch is right-padded and each row's assistant
# tokens sit at other positions.
SHAPES = [[(56, 56), (84, 56), (112, 84)], [(112, 112), (56, 84)], [(84, 84), (56, 56)], [(56, 112), (112, 56), (56, 56)]]
RESPONSES = [
    '<think>The mug is in every image.</think><answer>{"image": 3, "bbox_2d": [1, 2, 30, 40]}</answer>',
    '<think>A cat.</think><answer>{"image": 2, "bbox_2d": [5, 6, 20, 22]}</answer>',
    '<think>Both show the same red ball on the floor near the wall.</think><answer>{"image": 2, "bbox_2d": [0, 0, 9, 9]}</answer>',
    '<answer>{"image": 3, "bbox_2d": [3, 3, 12, 14]}</answer>',
]


@pytest.fixture(scope="module")
def sft_records(tmp_path_factory) -> tuple[list[Record], Path]:
    root = tmp_path_factory.mktemp("sft_loss")
    return write_records(root, SHAPES, RESPONSES), root


def make_trainer(cls: type, folder: Path, records: list[Record], root: Path, out: Path, lora: bool, **kw: Any) -> Any:
    from peft import LoraConfig

    set_seed(0)  # the same LoRA initialisation for every trainer built
    cfg = SFTConfig(output_dir=str(out), assistant_only_loss=True, remove_unused_columns=False,
                    dataset_kwargs={"skip_prepare_dataset": True}, use_cpu=True, bf16=False, report_to="none",
                    save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, **kw)
    # init_lora_weights=False: B is random rather than zero, so the adapters change the forward and
    # both A and B get gradients
    peft = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LANGUAGE_MODEL_LINEARS,
                      init_lora_weights=False, task_type="CAUSAL_LM") if lora else None
    return cls(model=load_model(folder, dtype=torch.float32), args=cfg, processing_class=load_processor(folder),
               train_dataset=training_dataset(records, root, cot=True, answers={}), peft_config=peft)


def batches(trainer: Any, rows: list[list[int]]) -> list[dict[str, Any]]:
    data = trainer.train_dataset
    return [trainer._prepare_inputs(trainer.data_collator([data[i] for i in r])) for r in rows]


def trained_tokens(batch: dict[str, Any]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def run(trainer: Any, compute_loss, micro_batches: list[dict[str, Any]], num_items: int | None):
    """Loss per micro-batch, accumulated gradients and the logged metrics of one pass."""
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    trainer._metrics["train"].clear()
    trainer._total_train_tokens = 0
    n = None if num_items is None else torch.tensor(num_items)
    losses = []
    for b in micro_batches:
        loss = compute_loss(model, dict(b), num_items_in_batch=n)
        loss.backward()
        losses.append(loss.item())
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    metrics = {k: list(trainer._metrics["train"][k]) for k in METRICS}
    return losses, grads, metrics


def assert_same(trainer: Any, micro_batches: list[dict[str, Any]], num_items: int | None = None) -> None:
    stock = run(trainer, lambda *a, **k: SFTTrainer.compute_loss(trainer, *a, **k), micro_batches, num_items)
    ours = run(trainer, trainer.compute_loss, micro_batches, num_items)
    assert ours[0] == pytest.approx(stock[0], rel=1e-5, abs=1e-6)
    assert stock[1] and ours[1].keys() == stock[1].keys()
    for name, g in stock[1].items():
        torch.testing.assert_close(ours[1][name], g, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    for k in METRICS:
        assert ours[2][k] == pytest.approx(stock[2][k], rel=1e-5), k


def assistant_only(batch: dict[str, Any]) -> None:
    labels, ids = batch["labels"], batch["input_ids"]
    trained = labels != -100
    assert 0 < trained.sum() < 0.5 * batch["attention_mask"].sum()  # images and prompt are not trained
    assert torch.equal(labels[trained], ids[trained])
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(lengths)  # rows of different lengths: right padding


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_same_loss_gradients_and_metrics_as_stock(tiny_base, sft_records, tmp_path, lora):
    trainer = make_trainer(MixinSFTTrainer, tiny_base, *sft_records, tmp_path, lora)
    (batch,) = batches(trainer, [[0, 1, 3]])
    assistant_only(batch)
    assert_same(trainer, [batch])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_same_under_gradient_accumulation(tiny_base, sft_records, tmp_path, lora):
    trainer = make_trainer(MixinSFTTrainer, tiny_base, *sft_records, tmp_path, lora)
    micro = batches(trainer, [[0, 1], [2, 3]])
    assert_same(trainer, micro, num_items=sum(trained_tokens(b) for b in micro))


def test_logits_only_at_trained_positions(tiny_base, sft_records, tmp_path):
    trainer = make_trainer(MixinSFTTrainer, tiny_base, *sft_records, tmp_path, lora=True)
    (batch,) = batches(trainer, [[0, 2]])
    kept = []
    hook = trainer.model.get_base_model().lm_head.register_forward_hook(lambda m, i, o: kept.append(o.shape))
    trainer.compute_loss(trainer.model, dict(batch))
    hook.remove()
    assert kept == [(trained_tokens(batch), trainer.model.config.get_text_config().vocab_size)]


def test_a_batch_without_trained_tokens_is_a_differentiable_zero(tiny_base, sft_records, tmp_path):
    trainer = make_trainer(MixinSFTTrainer, tiny_base, *sft_records, tmp_path, lora=False)
    (batch,) = batches(trainer, [[0, 1]])
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    assert loss.item() == 0.0


@pytest.mark.slow  # trains or runs the demo: end to end
def test_training_logs_as_stock(tiny_base, sft_records, tmp_path):
    """Two optimizer steps of 2 micro-batches each (the Trainer's own num_items_in_batch): the same
    logged loss, gradient norm and metrics."""
    logs = []
    for cls in (StockSFTTrainer, MixinSFTTrainer):
        trainer = make_trainer(cls, tiny_base, *sft_records, tmp_path / cls.__name__, lora=True, max_steps=2,
                               per_device_train_batch_size=1, gradient_accumulation_steps=2, learning_rate=1e-3)
        trainer.train()
        logs.append([h for h in trainer.state.log_history if "loss" in h])
    assert len(logs[0]) == len(logs[1]) == 2
    for stock, ours in zip(*logs):
        for k in ("loss", "grad_norm", *METRICS):
            assert ours[k] == pytest.approx(stock[k], rel=1e-5), k


def test_released_shaped_folder(sft_records, tmp_path):
    """The real 152k vocabulary and the released chat template, which TRL swaps for its training
    template (``get_training_chat_template``) to find the assistant tokens."""
    from migrl.models.released import cached_released_folder

    folder = cached_released_folder(Path(__file__).resolve().parent.parent / ".cache" / "fixtures")
    trainer = make_trainer(MixinSFTTrainer, folder, *sft_records, tmp_path, lora=True)
    assert trainer.chat_template is not None and "{% generation %}" in trainer.chat_template
    (batch,) = batches(trainer, [[0, 2]])
    assistant_only(batch)
    assert_same(trainer, [batch])
