"""Items the official code keeps in its denominator and scores 0 because their input is bad.

The official LISA and ReVOS loops wrap each item in ``try: ... except Exception: ious.append(0)``, and
BLINK's evaluator counts every ``idx`` of its answer file: an annotation without a box, a frame list that
does not index its video, a frame file without a number, is an item scored 0, not an item left out.
migrl's loaders cannot build a Record from such an item (there is nothing to prompt or to ground) and
report it as a load error; the scorers count it in the denominator, scored 0, and list it under
``zero_for_bad_input_items`` as ``{"record": id, "field": ..., "reason": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from migrl.records import LoadReport, RecordError

ZERO_KEY = "zero_for_bad_input_items"


@dataclass(frozen=True)
class ZeroItem:
    """One item of the official denominator that cannot be a Record: scored 0, reported."""

    record: str  # the item's id (its position, or its file's stem)
    field: str
    reason: str
    message: str  # the loader's error line, naming the file and the item

    @classmethod
    def from_error(cls, exc: RecordError, record: str) -> "ZeroItem":
        return cls(record, exc.field_name, exc.reason, str(exc))

    def entry(self) -> dict[str, str]:
        return {"record": self.record, "field": self.field, "reason": self.reason}


@dataclass
class Scan:
    """A loader's pass over a file: ``report`` holds every record and every error (what ``load`` returns);
    ``zeros`` the errors that are items of the official denominator (``task`` is their task)."""

    report: LoadReport
    zeros: list[tuple[str, ZeroItem]]
    notes: list[str] = field(default_factory=list)  # items read as the official code reads them, oddly

    def keep_zero(self, task: str, item: ZeroItem) -> None:
        self.zeros.append((task, item))
        self.report.errors.append(item.message)

    def other_errors(self) -> list[str]:
        """The errors that are not zero items (a file left out, an unreadable document)."""
        zero_messages = {z.message for _, z in self.zeros}
        return [e for e in self.report.errors if e not in zero_messages]


def count_zeros(zeros: Iterable[tuple[str, ZeroItem]], totals: dict[str, int]) -> None:
    """Each zero item adds one to its task's denominator (and no hit)."""
    for task, _ in zeros:
        totals[task] = totals.get(task, 0) + 1


def zero_entries(zeros: Iterable[tuple[str, ZeroItem]]) -> list[dict[str, Any]]:
    return [z.entry() for _, z in zeros]
