"""What the generating stages (``eval``, ``reject``, ``synthesize``) share: a record's request, the loop that generates into a log, and a generating-only shard's summary.

The loop (`Generation`) takes the records not yet in the log, a chunk at a time. Only a chunk's images are
in memory at once; every finished batch is appended to the log as it comes (a rerun after a crash asks
only for the rest). A record whose image fails to decode is skipped with its reason; a record a server
never answered is not logged (a rerun asks again) and its reason is kept in ``unanswered`` so the stage
can list it in ``bad_records.jsonl`` (field ``server``). ``migrl.shards`` splits the records over ranks or
jobs and calls the loop for each share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm

from migrl.bad_records import BadRecords
from migrl.engines.base import Engine, Request, SamplingParams
from migrl.images import ImageError, load_image, resolve_image_path
from migrl.jsonl import AppendLog
from migrl.prompts import chat_messages
from migrl.records import Record
from migrl.shards import ShardRun

SERVER_FIELD = "server"
Skip = tuple[str, str, str]  # record id, field, reason: what a rank reports to the merging rank


def request_for(record: Record, root: Path, cot: bool = True) -> Request:
    images = [load_image(resolve_image_path(p, root)) for p in record.images]
    return Request(images, chat_messages(record, cot=cot))


def shard_result(run: ShardRun, failed: list[str]) -> dict[str, Any]:
    """What a shard that only generates reports (the merging run writes the stage's outputs)."""
    merge = "rank 0 merged" if run.shard.launched else "run the same command without --shard to merge"
    return {"shard": str(run.shard), "generated": run.generated, "record_errors": failed, "note": merge}


@dataclass
class Generation:
    """A stage's ``generate`` for ``generate_sharded``, and what it skipped: images that do not decode
    (into ``bad`` at once) and items no server answered (``unanswered``; listed after scoring), both
    kept as ``Skip`` reports for the merging rank."""

    engine: Engine  # its optional ``failures``: items no server answered in the last call
    params: SamplingParams
    request: Callable[[Record], Request]
    row: Callable[[Record, list[str]], dict[str, Any]]  # what gets logged for a record's completions
    bad: BadRecords
    chunk: int = 64
    desc: str = "generate"
    unanswered: dict[str, str] = field(default_factory=dict)
    skipped: list[Skip] = field(default_factory=list)

    def __call__(self, records: list[Record], log: AppendLog) -> list[Skip]:
        """Generate for the records not in ``log``; returns this process's skips so far."""
        todo = [r for r in records if r.id not in log]
        bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=self.desc, unit="item")
        for start in range(0, len(todo), self.chunk):
            part, requests = [], []
            for r in todo[start : start + self.chunk]:
                try:
                    requests.append(self.request(r))
                    part.append(r)
                except ImageError as exc:  # decoding fails where the header read well (a truncated file)
                    self.bad.add(r, "images", exc)
                    self.skipped.append((r.id, "images", str(exc)))
                    bar.update(1)

            def save(indices: list[int], outs: list[list[str]]) -> None:
                log.append(self.row(part[i], o) for i, o in zip(indices, outs))
                bar.update(len(indices))

            self.engine.generate(requests, self.params, on_batch=save)
            for i, reason in getattr(self.engine, "failures", {}).items():
                self.unanswered[part[i].id] = reason
                self.skipped.append((part[i].id, SERVER_FIELD, reason))
                bar.update(1)
        bar.close()
        return self.skipped

    def messages(self) -> list[str]:
        """For a shard's own summary (the merging run lists them in bad_records.jsonl)."""
        return [f"record {rid}: {field}: {reason}" for rid, field, reason in self.skipped]

    def take_reports(self, reports: list[Skip]) -> None:
        """On the merging rank: the other ranks' undecodable images into ``bad`` (before scoring, as this
        rank's own), their unanswered items into ``unanswered``."""
        for rid, field_name, reason in reports:
            if field_name == SERVER_FIELD:
                self.unanswered[rid] = reason
            else:
                self.bad.add(rid, field_name, reason, stops=False)

    def list_unanswered(self, records: Iterable[Record]) -> None:
        """The records a server never answered, into ``bad`` once (not the input's fault: --strict goes on)."""
        listed: set[str] = set()
        for r in records:
            if r.id in self.unanswered and r.id not in listed:
                listed.add(r.id)
                reason = f"no answer from the server: {self.unanswered[r.id]}; a rerun asks again"
                self.bad.add(r, SERVER_FIELD, reason, stops=False)
