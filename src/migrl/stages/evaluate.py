"""``migrl eval``: batched generation over a records file, resumable, then Acc@0.5 per task.

Predictions are appended to ``predictions.jsonl`` (``{"id", "text"}``) one batch at a time, so a
rerun after a crash or ``kill -9`` generates only what is missing and never duplicates an item.
Records are processed in chunks, so only a chunk's images are in memory at once. Records that
cannot run (bad fields, missing or broken images, boxes off their image, more image tokens than the
model's context) are skipped, listed in ``bad_records.jsonl`` and left out of a records file's
scores; a benchmark keeps its official denominator, where they count as wrong.

Data parallel: under ``torchrun`` / ``accelerate launch`` each rank generates its share of the records
into its own log and rank 0 merges and scores; ``--shard i/n`` runs one share as a separate job, and
the same command without it merges (``migrl.shards``). ``remote`` generates with served models instead
of a local one (``migrl.engines.remote``: `vllm serve`, several servers, image-token check).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from migrl.configs import EvalConfig
from migrl.answer_space import answer_space_of
from migrl.benchmarks import get
from migrl.bad_records import BadRecords
from migrl.engines.base import SamplingParams
from migrl.engines.hf import HFEngine
from migrl.engines.remote import connect, served_model_stub
from migrl.generation import Generation, request_for, shard_result
from migrl.images import ImageSizing
from migrl.jsonl import write_json_atomic
from migrl.records import LoadReport, Record, data_root, require_file
from migrl.run_identity import generator_identity, input_fingerprint
from migrl.shards import Shard, generate_sharded, rank_device


def load_items(cfg: EvalConfig) -> tuple[LoadReport, BadRecords, Path]:
    """What the benchmark's loader read, its bad records, and the folder image paths are relative to."""
    loaded = get(cfg.benchmark).load_subset(cfg.data, cfg.image_root, cfg.subset)
    root = Path(cfg.image_root) if cfg.image_root else data_root(cfg.data)
    return loaded, BadRecords.from_load(loaded, cfg.data, cfg.strict), root


def select(records: list[Record], limit_per_task: int) -> list[Record]:
    if not limit_per_task:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in records:
        if seen.get(r.task, 0) < limit_per_task:
            seen[r.task] = seen.get(r.task, 0) + 1
            out.append(r)
    return out


def evaluate(cfg: EvalConfig, model: Any = None, processor: Any = None) -> dict[str, Any]:
    from migrl.models.loading import context_left, load_model, load_processor, resolve_model_path

    require_file(cfg.data, "--data")  # before any model loads: a typo should cost a second, not a minute
    resolve_model_path(cfg.model)
    entry = get(cfg.benchmark)
    entry.subset_kwargs(cfg.subset)  # an unknown subset stops here, before any model loads
    if cfg.category_map:
        entry.check_category_map(cfg.category_map)
    processor = processor or load_processor(cfg.model)
    if model is None:
        model = load_model(cfg.model, device=rank_device()) if cfg.remote is None else served_model_stub(cfg.model)
    sizing = ImageSizing.from_processor(processor)
    space = answer_space_of(cfg.model, cfg.coords, sizing)
    cfg = replace(cfg, coords=space.coords.value)
    loaded, bad, root = load_items(cfg)
    records = select(loaded.records, cfg.limit_per_task)
    n_load_errors = len(bad)  # their ids may be good records' (a duplicate id): not to be unscored
    runnable = bad.usable(records, root, check_boxes=entry.checks_boxes, sizing=sizing,
                          max_image_tokens=context_left(model, cfg.max_new_tokens))
    out = Path(cfg.out)
    engine = HFEngine(model, processor, batch_size=cfg.batch_size) if cfg.remote is None else connect(cfg.remote, sizing, processor)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens)
    generation = Generation(engine, params, lambda r: request_for(r, root, cfg.cot),
                            lambda r, texts: {"id": r.id, "text": texts[0]}, bad, cfg.chunk, desc="eval")
    identity = generator_identity(cfg.model, cfg.remote, max_new_tokens=cfg.max_new_tokens, cot=cfg.cot, benchmark=cfg.benchmark,
                                  data=input_fingerprint(cfg.data))
    run = generate_sharded(Shard.resolve(cfg.shard), out / "predictions.jsonl", runnable, generation, identity=identity)
    if run.log is None:
        return shard_result(run, generation.messages())
    generation.take_reports(run.errors)
    predictions = {rid: row["text"] for rid, row in run.log.rows.items()}
    unscored = {b.record for b in bad.items[n_load_errors:]}
    if not entry.keeps_denominator:  # migrl records: a record that could not run is left out of the scores
        loaded = replace(loaded, records=[r for r in records if r.id not in unscored])
    scores = entry.score_loaded(loaded, predictions, space.coords, root, sizing, cfg.subset, cfg.category_map)
    generation.list_unanswered(runnable)  # after scoring: an unanswered item counts as wrong
    scores["answer_space"] = space.to_dict()  # how report and score read these answers again
    scores["record_errors"] = [str(b) for b in bad.items]
    scores["bad_records"] = bad.finish(out)
    write_json_atomic(out / "scores.json", scores)
    return scores
