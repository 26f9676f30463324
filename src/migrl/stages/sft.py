"""``migrl sft``: the cold start -- TRL's SFTTrainer on multi-image chat records, LoRA by default.

The paper's stage 1: LoRA on the language model (lr 1e-4 cosine, batch 32, max length 1024), the
vision encoder and the projector (merger) frozen, loss on the assistant tokens only, then the LoRA
merged into a plain model folder. Also its baselines: SFT without CoT (the answer only,
``cot: false``) and full fine-tuning (``use_lora: false``).

Records whose prompt and answer do not fit ``max_length`` are skipped with an error naming them (field
``length``): TRL would truncate them through their image tokens, which fails later with "image features
and image tokens do not match". When more than ``LENGTH_DROP_LIMIT`` of them would be skipped the stage
stops before training: ``max_length`` or the image budget is wrong for the data.

The folder written at the end carries the processor as it was loaded (with the stage's image setting),
not the one TRL's collator turned to truncation at ``max_length``: the next stage loads it exactly as it
loaded the released folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer

from migrl.answer_space import RESPONSE_SPACE, resolve_coords, sizing_override
from migrl.bad_records import LENGTH_DROP_LIMIT, BadRecords, check_length_drops
from migrl.boxes import Space, format_answer
from migrl.images import ImageError, ImageSizing, load_image, resolve_image_path
from migrl.jsonl import write_json_atomic
from migrl.models.loading import load_model, load_processor, processor_as_loaded, resolve_model_path
from migrl.models.peft import LoraOptions, freeze_vision, lora_config
from migrl.prompts import chat_messages
from migrl.recipe import adapt_to_device, record_recipe
from migrl.records import LENGTH_FIELD, Record, data_root, load_records, require_file
from migrl.training.checkpoints import CheckpointWeightsMixin
from migrl.training.finish import check_ranks_agree, rank_digests, save_final
from migrl.training.sft_loss import TrainedPositionsLossMixin


@dataclass
class SFTStageConfig(SFTConfig, LoraOptions):
    """TRL's SFTConfig plus what the stage needs; recipes are YAML files of these fields."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "model folder (default: the shipped tiny base)"})
    data: str = field(default="", metadata={"help": "SFT records JSONL (records with a 'response')"})
    cot: bool = field(default=True, metadata={"help": "train on the chain of thought; false = answer only (plain SFT baseline)"})
    freeze_vision: bool = field(default=True, metadata={"help": "freeze the vision tower and the merger (projector)"})
    merge: bool = field(default=True, metadata={"help": "merge the LoRA and save a plain model folder"})
    coords: str | None = field(default=None, metadata={"help": "space of the answers (answer-only baseline; default: the model folder's family)"})
    min_pixels: int = field(default=0, metadata={"help": "override the model's image-size setting (0 = keep)"})
    max_pixels: int = 0
    length_skip_limit: float = field(default=LENGTH_DROP_LIMIT, metadata={"help": "stop before training when more than this share of the records is too long (the length setting is wrong for the data)"})
    strict: bool = field(default=False, metadata={"help": "stop at the first bad record instead of skipping it"})


class RecordDataset(torch.utils.data.Dataset):
    """SFT examples loaded lazily: images are decoded when a batch needs them."""

    def __init__(self, records: list[Record], root: Path, cot: bool, answers: dict[str, str]):
        self.records, self.root, self.cot, self.answers = records, root, cot, answers

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        if not self.cot:
            r = r.with_response(self.answers[r.id])
        images = [load_image(resolve_image_path(p, self.root)) for p in r.images]
        return {"images": images, "messages": chat_messages(r, cot=self.cot, with_response=True)}


def training_dataset(records: list[Record], root: Path, cot: bool, answers: dict[str, str]) -> Any:
    """A ``datasets.Dataset`` of (messages, images) as TRL's vision collator reads it; images are paths
    decoded when a batch needs them (the ``Image`` feature), not held in memory."""
    from datasets import Dataset, Image, List

    rows = []
    for r in records:
        if not cot:
            r = r.with_response(answers[r.id])
        rows.append({
            "messages": chat_messages(r, cot=cot, with_response=True),
            "images": [str(resolve_image_path(p, root)) for p in r.images],
        })
    return Dataset.from_list(rows).cast_column("images", List(Image()))


def answer_only(record: Record, size: tuple[int, int], space: Space, sizing: ImageSizing) -> str:
    """The plain-SFT target: the ground-truth box in the model's space, no reasoning."""
    from migrl.boxes import convert

    gt = record.target
    return format_answer(convert(gt.bbox, gt.space, space, size, sizing), gt.image_index)


def fit_records(records: list[Record], root: Path, processor: Any, max_length: int | None, cot: bool,
                answers: dict[str, str], bad: BadRecords | None = None) -> tuple[list[Record], list[str]]:
    """Records that load and fit ``max_length``, and an error for each one that does not (also added
    to ``bad`` when given)."""
    bad = bad if bad is not None else BadRecords()
    dataset = RecordDataset(records, root, cot, answers)
    kept, errors = [], []
    for i, record in enumerate(records):
        try:
            example = dataset[i]
        except ImageError as exc:
            errors.append(bad.add(record, "images", exc))
            continue
        except ValueError as exc:
            errors.append(bad.add(record, "response", exc))
            continue
        if max_length:
            ids = processor.apply_chat_template(
                [_with_images(example)], tokenize=True, return_dict=True, processor_kwargs={"padding": False}
            )["input_ids"][0]
            if len(ids) > max_length:
                reason = (f"{len(ids)} tokens with its {len(record.images)} image(s), over max_length {max_length}; "
                          "truncating would cut the answer or image tokens, so it is skipped")
                errors.append(bad.add(record, LENGTH_FIELD, reason))
                continue
        kept.append(record)
    return kept, errors


def responses_fit(record: Record, sizing: ImageSizing, bad: BadRecords) -> bool:
    """False (and the record in ``bad``) when its response's boxes were written for another image setting:
    qwen25 pixels of images resized otherwise than this training resizes them would teach wrong boxes."""
    written = record.meta.get(RESPONSE_SPACE)
    if not written or "max_pixels" not in written:
        return True
    if (int(written["min_pixels"]), int(written["max_pixels"])) == (sizing.min_pixels, sizing.max_pixels):
        return True
    bad.add(record, "response", f"its boxes are {written['coords']} pixels of images resized with min/max pixels "
            f"{written['min_pixels']}/{written['max_pixels']}, but this training resizes with "
            f"{sizing.min_pixels}/{sizing.max_pixels}: synthesize again with the student's setting "
            "(--model and --min-pixels/--max-pixels as here), or train with theirs")
    return False


def _with_images(example: dict[str, Any]) -> list[dict[str, Any]]:
    images = iter(example["images"])
    out = []
    for m in example["messages"]:
        content = m["content"]
        if isinstance(content, list):
            content = [{**p, "image": next(images)} if p.get("type") == "image" else p for p in content]
        out.append({**m, "content": content})
    return out


class MigrlSFTTrainer(TrainedPositionsLossMixin, CheckpointWeightsMixin, SFTTrainer):
    """TRL's SFTTrainer with logits and loss only where labels are trained (``TrainedPositionsLossMixin``;
    on a CPU TRL scores every position of the 152k vocabulary) and a resume that loads a full fine-tune's
    weights (``CheckpointWeightsMixin``). The private trainer methods migrl overrides, and why, are
    listed on ``migrl.stages.grpo.MigrlGRPOTrainer``."""


def train_sft(cfg: SFTStageConfig) -> dict[str, Any]:
    adapt_to_device(cfg)  # the recipe loader's CPU fallback, for configs built in Python too
    require_file(cfg.data, "data")  # before any model loads
    model_path = resolve_model_path(cfg.model_name_or_path)
    sizing = sizing_override("migrl sft", model_path, cfg.min_pixels, cfg.max_pixels)
    processor = load_processor(model_path, sizing)
    to_save = processor_as_loaded(model_path, sizing)  # before TRL's collator sets truncation on `processor`
    sizing = ImageSizing.from_processor(processor)
    model = load_model(model_path, dtype=torch.float32 if cfg.use_cpu else None)
    if cfg.freeze_vision:
        freeze_vision(model)

    loaded = load_records(cfg.data, strict=cfg.strict)
    bad = BadRecords.from_load(loaded, cfg.data, cfg.strict)
    root = data_root(cfg.data)
    records = []
    for r in loaded.records:
        if cfg.cot and r.response is None:
            bad.add(r, "response", "no response to train on (cot: true needs the teacher's answer)")
        else:
            records.append(r)
    records = bad.usable(records, root)
    answers: dict[str, str] = {}
    if cfg.cot:
        records = [r for r in records if responses_fit(r, sizing, bad)]
    else:
        from migrl.images import image_size

        coords = resolve_coords("migrl sft", model_path, cfg.coords)
        for r in records:
            size = image_size(resolve_image_path(r.images[r.target.image_index], root))
            answers[r.id] = answer_only(r, size, coords, sizing)
    n_candidates = len(records)
    records, _ = fit_records(records, root, processor, cfg.max_length, cfg.cot, answers, bad)
    errors = [str(b) for b in bad.items]
    bad_summary = bad.finish(cfg.output_dir)  # before training: a crash or kill still leaves the report
    record_recipe(cfg)  # the recipe and the data are checked: keep what is run beside its output
    check_length_drops(bad, n_candidates, f"max_length (now {cfg.max_length})", cfg.length_skip_limit)
    if not records:
        raise ValueError(f"{cfg.data}: no usable SFT records ({len(errors)} errors; first: {errors[:1]})")

    cfg.assistant_only_loss = True
    cfg.remove_unused_columns = False
    cfg.dataset_kwargs = {"skip_prepare_dataset": True}
    peft_config = lora_config(cfg)
    trainer = MigrlSFTTrainer(
        model=model,
        args=cfg,
        train_dataset=training_dataset(records, root, cfg.cot, answers),
        processing_class=processor,
        peft_config=peft_config,
    )
    result = trainer.train(resume_from_checkpoint=_last_checkpoint(cfg))
    out = Path(cfg.output_dir)
    digests = rank_digests(trainer)  # before merging: every rank still holds its own copy
    save_final(trainer, to_save, out, merge_lora=cfg.use_lora and cfg.merge, base_model=model_path)
    summary = {"train_loss": result.training_loss, "steps": result.global_step, "records": len(records), "errors": errors,
               "bad_records": bad_summary, "world_size": trainer.accelerator.num_processes, "rank_weight_digests": digests}
    if trainer.accelerator.is_main_process:
        write_json_atomic(out / "sft_summary.json", summary)
    check_ranks_agree(digests)
    return summary


def _last_checkpoint(cfg: SFTStageConfig) -> str | None:
    from migrl.training.checkpoints import last_complete_checkpoint

    return last_complete_checkpoint(cfg.output_dir)
