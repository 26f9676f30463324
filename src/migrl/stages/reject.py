"""``migrl reject``: rejection sampling -- keep the items the SFT model gets sometimes right.

The merged CoT-SFT model answers each RL item ``k`` times; items answered right every time (nothing
to learn) or wrong every time (no signal: every reward of a GRPO group would be equal) are dropped.
Answers are judged with the shared reward module (IoU >= 0.5 in the model's own space).

Files in ``--out``: ``samples.jsonl`` (each item's k answers, appended batch by batch; a rerun after
``kill -9`` samples only what is missing), ``rl.jsonl`` (the kept records) and ``stats.json`` (per
task: asked, kept, all_right, all_wrong), rebuilt from the samples and written atomically, and
``bad_records.jsonl`` (the records skipped, with the reason).

Data parallel and served models as in ``migrl eval``: each rank or ``--shard i/n`` job samples its share
into its own log, merged before the files above are built (``migrl.shards``); ``remote`` samples with
`vllm serve` or other OpenAI-compatible servers (``migrl.engines.remote``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.configs import RejectConfig
from migrl.answer_space import answer_space_of
from migrl.bad_records import BadRecords
from migrl.boxes import Space
from migrl.engines.base import SamplingParams
from migrl.engines.hf import HFEngine
from migrl.engines.remote import connect, served_model_stub
from migrl.generation import Generation, request_for, shard_result
from migrl.images import ImageError, ImageSizing, image_size, resolve_image_path
from migrl.jsonl import AppendLog, write_json_atomic, write_jsonl_atomic
from migrl.records import Record, data_root, load_records, require_file
from migrl.rewards import is_correct, target_in_model_space
from migrl.run_identity import generator_identity, input_fingerprint
from migrl.shards import Shard, generate_sharded, rank_device


def verdict(texts: list[str], target: dict[str, Any]) -> str:
    right = sum(is_correct(t, target) for t in texts)
    if right == len(texts):
        return "all_right"
    if right == 0:
        return "all_wrong"
    return "kept"


def summarize(records: list[Record], log: AppendLog, root: Path, coords: Space, sizing: ImageSizing,
              bad: BadRecords | None = None) -> tuple[list[dict], dict[str, Any], list[str]]:
    kept, errors = [], []
    stats: dict[str, Any] = {"asked": 0, "kept": 0, "all_right": 0, "all_wrong": 0, "tasks": {}}
    for r in records:
        row = log.rows.get(r.id)
        if row is None:
            continue
        try:
            sizes = [image_size(resolve_image_path(p, root)) for p in r.images]
        except ImageError as exc:  # an image that went missing since it was sampled
            errors.append(bad.add(r, "images", exc) if bad is not None else f"record {r.id}: {exc}")
            continue
        v = verdict(row["samples"], target_in_model_space(r, sizes, coords, sizing))
        per = stats["tasks"].setdefault(r.task, {"asked": 0, "kept": 0, "all_right": 0, "all_wrong": 0})
        for d in (stats, per):
            d["asked"] += 1
            d[v] += 1
        if v == "kept":
            kept.append(r.with_absolute_images(root).to_dict())
    return kept, stats, errors


def reject(cfg: RejectConfig, model: Any = None, processor: Any = None) -> dict[str, Any]:
    from migrl.models.loading import context_left, load_model, load_processor, resolve_model_path

    require_file(cfg.data, "--data")  # before any model loads
    resolve_model_path(cfg.model)
    processor = processor or load_processor(cfg.model)
    if model is None:
        model = load_model(cfg.model, device=rank_device()) if cfg.remote is None else served_model_stub(cfg.model)
    sizing = ImageSizing.from_processor(processor)
    space = answer_space_of(cfg.model, cfg.coords, sizing)
    loaded = load_records(cfg.data, strict=cfg.strict)
    bad = BadRecords.from_load(loaded, cfg.data, cfg.strict)
    root = data_root(cfg.data)
    records = bad.usable(loaded.records, root, sizing=sizing, max_image_tokens=context_left(model, cfg.max_new_tokens))
    out = Path(cfg.out)
    engine = HFEngine(model, processor, batch_size=cfg.batch_size) if cfg.remote is None else connect(cfg.remote, sizing, processor)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, n=cfg.k)
    generation = Generation(engine, params, lambda r: request_for(r, root),
                            lambda r, samples: {"id": r.id, "samples": samples}, bad, cfg.chunk, desc="reject")
    identity = generator_identity(cfg.model, cfg.remote, k=cfg.k, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                  data=input_fingerprint(cfg.data))
    run = generate_sharded(Shard.resolve(cfg.shard), out / "samples.jsonl", records, generation, identity=identity)
    if run.log is None:
        return shard_result(run, generation.messages())
    generation.take_reports(run.errors)
    kept, stats, _ = summarize(records, run.log, root, space.coords, sizing, bad=bad)
    generation.list_unanswered(records)
    stats["errors"] = [str(b) for b in bad.items]
    stats["bad_records"] = bad.finish(out)
    write_jsonl_atomic(out / "rl.jsonl", kept)
    write_json_atomic(out / "stats.json", stats)
    return stats
