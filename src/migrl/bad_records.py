"""The one report of the records a stage skipped, and what ``migrl``'s exit code says about them.

Every stage that reads records collects the ones it cannot use here -- a broken JSON line, a wrong
field, an unknown task, a missing, broken or oversized image, a path leaving the data root, a box
off its image, a prompt too long for the model -- and goes on with the rest. At the end it writes
``bad_records.jsonl`` into its output folder, one line per skipped record::

    {"file": "data/pool.jsonl", "line": 7, "record": "diff-train-00003", "field": "images[1]",
     "reason": "image '/data/x.png' does not exist", "where": "data/pool.jsonl:7 (id diff-train-00003)"}

and prints one summary line. The file is rewritten on every run (empty when nothing was skipped),
so it always describes the input as it is now. With ``strict`` the first bad record raises a
``RecordError`` instead, which ``migrl`` turns into exit code ``EXIT_STRICT``.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterable

from migrl.jsonl import write_jsonl_atomic
from migrl.records import LENGTH_FIELD, BadRecord, LoadReport, Record, RecordError, record_image_sizes

REPORT_NAME = "bad_records.jsonl"

class ExitCode(IntEnum):
    """Every exit code of the migrl command, in one place (documented in the README, "Failure and resume")."""

    OK = 0  # every record went through
    FAILED = 1  # an unexpected error (a traceback); migrl sweep: some variant did not finish
    USAGE = 2  # the user's to fix before anything ran: the command line, an option, a missing file, another run in --out
    SKIPPED = 3  # the run finished, some records were skipped: see bad_records.jsonl
    STRICT = 4  # --strict: stopped at the first bad record (printed), outputs not finished
    INTERRUPTED = 130  # Ctrl-C (the shell's 128 + SIGINT); what was done is saved and a rerun resumes


EXIT_OK, EXIT_SKIPPED, EXIT_STRICT = ExitCode.OK, ExitCode.SKIPPED, ExitCode.STRICT


class OptionError(ValueError):
    """An option that cannot work, found before any work (the command exits 2, as for a wrong command line)."""


# A stage that would skip more than this share of its records for length stops before training: then the
# setting (max_length, the image budget) is wrong for the data, not the records.
LENGTH_DROP_LIMIT = 0.05


def check_length_drops(bad: "BadRecords", total: int, settings: str, limit: float = LENGTH_DROP_LIMIT) -> None:
    """OptionError when over ``limit`` of ``total`` records were skipped for length; ``settings`` names
    what to change."""
    too_long = [b for b in bad.items if b.field == LENGTH_FIELD]
    if total and len(too_long) / total > limit:
        raise OptionError(
            f"{len(too_long)} of {total} records ({len(too_long) / total:.0%}) are too long "
            f"(over {limit:.0%}: the setting, not the data, is wrong); first: {too_long[0]}. "
            f"Raise {settings}, or lower the image budget (max_pixels), and run again "
            "(or allow more skips: --length_skip_limit)"
        )


class BadRecords:
    """The skipped records of one stage run; ``file`` is the records file they come from."""

    def __init__(self, file: str | Path | None = None, strict: bool = False, lines: dict[str, int] | None = None):
        self.file = str(file) if file is not None else None
        self.strict = strict
        self.lines = dict(lines or {})
        self.items: list[BadRecord] = []

    @classmethod
    def from_load(cls, report: LoadReport, file: str | Path, strict: bool = False) -> "BadRecords":
        """Start from a loader's errors (structured when ``load_records`` made them, messages otherwise)."""
        bad = cls(file, strict, report.lines)
        for item in report.bad or [BadRecord(str(file), "<record>", str(e), str(file)) for e in report.errors]:
            bad._keep(item, stops=True)
        return bad

    def __len__(self) -> int:
        return len(self.items)

    def where(self, record_id: str) -> str:
        if not self.file:
            return f"record {record_id}"
        line = self.lines.get(record_id)
        return f"{self.file}:{line} (id {record_id})" if line else f"{self.file} (id {record_id})"

    def add(self, record: Record | str, field: str, reason: object, stops: bool = True) -> str:
        """Skip ``record`` because of ``field``; returns the message. ``stops=False``: a failure that is
        not the input's fault (a teacher that kept failing) and that ``strict`` does not stop at."""
        rid = record.id if isinstance(record, Record) else str(record)
        item = BadRecord(self.where(rid), field, str(reason), self.file, self.lines.get(rid), rid)
        self._keep(item, stops)
        return str(item)

    def add_message(self, message: str, field: str, stops: bool = True) -> str:
        """Skip an item known only by a message that already says where it is (e.g. "file:3: ...")."""
        self._keep(BadRecord(self.file or "input", field, message, self.file), stops)
        return message

    def add_error(self, exc: RecordError, record: Record | str) -> str:
        return self.add(record, exc.field_name, exc.reason)

    def _keep(self, item: BadRecord, stops: bool) -> None:
        if self.strict and stops:
            raise RecordError(item.where, item.field, item.reason)
        self.items.append(item)

    def usable(self, records: Iterable[Record], root: str | Path, **check: Any) -> list[Record]:
        """The records whose images and boxes pass ``record_image_sizes`` (header reads only, no decoding);
        the others are added here. ``check`` goes to ``record_image_sizes``."""
        good = []
        for r in records:
            try:
                record_image_sizes(r, root, self.where(r.id), **check)
            except RecordError as exc:
                self.add_error(exc, r)
                continue
            good.append(r)
        return good

    def summary(self) -> dict[str, Any]:
        """For stats.json / scores.json: how many, and how many per field."""
        return {"count": len(self.items), "by_field": dict(sorted(Counter(_field_kind(b.field) for b in self.items).items())),
                "file": REPORT_NAME}

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / REPORT_NAME
        write_jsonl_atomic(path, (b.to_dict() for b in self.items))
        return path

    def finish(self, out_dir: str | Path) -> dict[str, Any]:
        """Write the report and return its summary."""
        self.write(out_dir)
        return self.summary()


def _field_kind(field: str) -> str:
    """``images[3]`` -> ``images``, ``boxes[0].bbox`` -> ``boxes.bbox``: for counting."""
    return re.sub(r"\[\d+\]", "", field) or "<record>"


def report_line(summary: dict[str, Any] | None, out_dir: str | Path | None) -> str:
    """The one line a command prints about skipped records."""
    n = (summary or {}).get("count", 0)
    if not n:
        return "bad records: none"
    kinds = ", ".join(f"{k}: {v}" for k, v in summary["by_field"].items())
    where = Path(out_dir) / REPORT_NAME if out_dir is not None else REPORT_NAME
    return f"bad records: {n} skipped ({kinds}); see {where}"


def exit_code(summary: dict[str, Any] | None, out_dir: str | Path | None, env: Any = None) -> int:
    """Print the summary line on stderr; ``EXIT_SKIPPED`` when anything was skipped.

    Under a launcher (torchrun, also of one process; accelerate launch of several) a rank exits 0 instead:
    the launcher takes any non-zero exit for a crashed rank, stops the others and, with --max-restarts,
    starts the finished job again. bad_records.jsonl lists the skipped records there as anywhere."""
    print(report_line(summary, out_dir), file=sys.stderr)
    if not (summary or {}).get("count"):
        return EXIT_OK
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE") or 1) > 1 or "TORCHELASTIC_RUN_ID" in env:  # torchrun sets it, even for 1 process
        print("(exit code 0, not 3: under a launcher a non-zero exit reads as a failed rank)", file=sys.stderr)
        return EXIT_OK
    return EXIT_SKIPPED
