"""``migrl score``: a predictions file against a benchmark's annotations, by the benchmark's protocol.

What is wrong is sorted three ways, as the result says: a broken prediction line is scored as an empty
answer; a bad migrl record is left out of the scores (there is no official denominator to keep); a fault
of a released annotation file or its images stays in the denominator, scored 0, as the official code does.
Only the first and the second are the user's to fix (exit 3); the release's own faults are reported, not
counted against the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrl.answer_space import AnswerSpace
from migrl.bad_records import BadRecord, BadRecords
from migrl.configs import ScoreConfig
from migrl.benchmarks import get
from migrl.benchmarks.base import root_of
from migrl.jsonl import write_json_atomic
from migrl.records import require_file
from migrl.scoring.predictions import read_predictions


@dataclass
class Scored:
    result: dict[str, Any]
    problems: dict[str, list[BadRecord]] = field(default_factory=dict)  # how each kind of fault was scored
    fixable: dict[str, Any] = field(default_factory=dict)  # summary of the faults the user can fix

    def printable(self, first: int = 20) -> list[str]:
        return [f"{label}: {item}" for label, items in self.problems.items() for item in items[:first]]


def check(cfg: ScoreConfig) -> None:
    """Everything a typo could get wrong, before anything is read."""
    require_file(cfg.data, "--data")
    require_file(cfg.predictions, "--predictions")
    entry = get(cfg.benchmark)
    entry.subset_kwargs(cfg.subset)
    if cfg.category_map:
        entry.check_category_map(cfg.category_map)


def score(cfg: ScoreConfig, space: AnswerSpace) -> Scored:
    """Score ``cfg`` in ``space``; ``check(cfg)`` first (migrl score runs it before resolving the space)."""
    entry = get(cfg.benchmark)
    preds = read_predictions(cfg.predictions)
    empty = BadRecords(cfg.predictions, cfg.strict)  # faults of the predictions file
    for err in preds.errors:  # broken prediction lines: the text is scored as empty
        empty.add_message(err, "text")
    root = Path(cfg.image_root) if cfg.image_root else root_of(cfg.data, None)
    loaded = entry.load_subset(cfg.data, cfg.image_root, cfg.subset)
    skipped: list[BadRecord] = []
    if not entry.keeps_denominator:  # a bad record is left out of the scores
        records_bad = BadRecords.from_load(loaded, cfg.data, cfg.strict)
        loaded.records = records_bad.usable(loaded.records, root)
        skipped = records_bad.items
    result = entry.score_loaded(loaded, preds.texts, space.coords, root, space.sizing, cfg.subset, cfg.category_map)
    kept = BadRecords(cfg.data)  # faults of the annotation file or its images: kept in the denominator, scored 0
    for err in result.get("errors", []):  # images the scorer could not read (the user's to fix: they count)
        kept.add_message(err, "images", stops=False)
    fixable = BadRecords(cfg.predictions)
    fixable.items = empty.items + skipped + kept.items
    for item in result.get("zero_for_bad_input_items", []):  # the released file's own faults, as officially scored
        kept.add(item["record"], item["field"], item["reason"], stops=False)
    result["answer_space"] = space.to_dict()
    everything = BadRecords(cfg.predictions)
    everything.items = empty.items + skipped + kept.items
    result["bad_records"] = everything.summary()
    if cfg.out:
        write_json_atomic(Path(cfg.out) / "scores.json", result)
        everything.write(cfg.out)
    problems = {"prediction scored as empty": empty.items, "skipped": skipped,
                "scored 0, kept in the denominator": kept.items}
    return Scored(result, problems, fixable.summary())


def protocol_line(benchmark: str, result: dict) -> str:
    """The figure ``migrl score`` reports, labelled with its protocol and denominator."""
    p = result.get("protocol") or {}
    avg = result.get("avg")
    figure = f"avg {avg:.2f}" if isinstance(avg, (int, float)) else "avg -"
    return (f"{benchmark}: {figure} [{p.get('kind', '?')}: {p.get('detail', '')}] over {p.get('items', '?')} items, "
            f"{p.get('zero_for_bad_input', 0)} scored 0 for bad input, {result.get('missing_predictions', 0)} without a prediction")
