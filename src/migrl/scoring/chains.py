"""Where a run's points come from, on records that carry a worked chain of thought (the world's ``meta["cot"]``).

Every chain of the world ends in one grounding step, "Locate the <name> in image <k>." (``world.LOCATE_STEP``).
An answer whose last such step names the gold object and image reasoned right; whether its box then hits is
its grounding. Splitting the hits this way tells a stage that learned to reason (more right steps) from one
that learned to ground (more hits after a right step), and bounds what better grounding alone can add to a
task: at most the items whose step is right and whose box missed.

The hits are the scorer's own outcomes (``per_item`` in scores.json), so these figures add up to its accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from migrl.data.world import last_locate_step
from migrl.records import Record


@dataclass(frozen=True)
class ChainRates:
    """One task's answers, in percent of its scored items (None where no item falls in the group)."""

    items: int
    right_step: float  # the last locate step names the gold object and image
    hit_after_right: float | None  # hits among the right-step answers
    hit_after_other: float | None  # hits among the others (another object or image, or no step at all)


def gold_step(record: Record) -> tuple[str, int] | None:
    """The record's worked chain's last locate step, or None where it has none (not a world record)."""
    cot = (record.meta or {}).get("cot")
    return last_locate_step(cot[-1]) if isinstance(cot, list) and cot and isinstance(cot[-1], str) else None


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _rates(outcomes: list[tuple[bool, int]]) -> ChainRates:
    """A task's figures from its answers' (right step, hit) pairs."""
    after_right = [hit for right, hit in outcomes if right]
    after_other = [hit for right, hit in outcomes if not right]
    return ChainRates(len(outcomes), 100.0 * len(after_right) / len(outcomes),
                      _percent(sum(after_right), len(after_right)), _percent(sum(after_other), len(after_other)))


def chain_rates(records: Iterable[Record], texts: dict[str, str], outcomes: dict[str, Any]) -> dict[str, ChainRates]:
    """Per task, over the records with a worked chain that the scorer scored (``outcomes``: item id ->
    [task, 0 | 1]); an unanswered item counts as a wrong step, as its score counts it wrong."""
    answers: dict[str, list[tuple[bool, int]]] = {}  # task -> (right step, hit) per answer
    for r in records:
        gold = gold_step(r)
        if gold is not None and r.id in outcomes:
            right = last_locate_step(texts.get(r.id, "")) == gold
            answers.setdefault(r.task, []).append((right, int(bool(outcomes[r.id][1]))))
    return {task: _rates(pairs) for task, pairs in answers.items()}
