"""The generating loop that ``eval`` and ``reject`` share: the records not yet in the log, a chunk at a time.

Only a chunk's images are in memory at once; every finished batch is appended to the log as it comes
(a rerun after a crash asks only for the rest). A record whose image fails to decode is skipped with
its reason; a record a server never answered is not logged (a rerun asks again) and its reason is
kept in ``unanswered`` so the stage can list it in ``bad_records.jsonl`` (field ``server``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from tqdm import tqdm

from migrl.bad_records import BadRecords
from migrl.engines.hf import Request, SamplingParams
from migrl.images import ImageError
from migrl.jsonl import AppendLog
from migrl.records import Record

SERVER_FIELD = "server"
Skip = tuple[str, str, str]  # record id, field, reason: what a rank reports to the merging rank


def generate_missing(
    engine: Any,
    records: list[Record],
    log: AppendLog,
    params: SamplingParams,
    request: Callable[[Record], Request],
    row: Callable[[Record, list[str]], dict[str, Any]],
    bad: BadRecords,
    unanswered: dict[str, str],
    chunk: int = 64,
    desc: str = "generate",
) -> list[Skip]:
    """Generate for the records not in ``log``; ``row(record, completions)`` is what gets logged.
    Returns what was skipped here, images that do not decode (already in ``bad``) and items no server
    answered (in ``unanswered``), for the merging rank."""
    skipped: list[Skip] = []
    todo = [r for r in records if r.id not in log]
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=desc, unit="item")
    for start in range(0, len(todo), chunk):
        part, requests = [], []
        for r in todo[start : start + chunk]:
            try:
                requests.append(request(r))
                part.append(r)
            except ImageError as exc:  # decoding fails where the header read well (a truncated file)
                bad.add(r, "images", exc)
                skipped.append((r.id, "images", str(exc)))
                bar.update(1)

        def save(indices: list[int], outs: list[list[str]]) -> None:
            log.append(row(part[i], o) for i, o in zip(indices, outs))
            bar.update(len(indices))

        engine.generate(requests, params, on_batch=save)
        for i, reason in getattr(engine, "failures", {}).items():
            unanswered[part[i].id] = reason
            skipped.append((part[i].id, SERVER_FIELD, reason))
            bar.update(1)
    bar.close()
    return skipped


def messages(skipped: list[Skip]) -> list[str]:
    """For a shard's own summary (the merging run lists them in bad_records.jsonl)."""
    return [f"record {rid}: {field}: {reason}" for rid, field, reason in skipped]


def take_reports(bad: BadRecords, unanswered: dict[str, str], reports: list[Skip]) -> None:
    """On the merging rank: the other ranks' undecodable images into ``bad`` (before scoring, as this
    rank's own), their unanswered items into ``unanswered``."""
    for rid, field, reason in reports:
        if field == SERVER_FIELD:
            unanswered[rid] = reason
        else:
            bad.add(rid, field, reason, stops=False)


def list_unanswered(bad: BadRecords, records: Iterable[Record], unanswered: dict[str, str]) -> None:
    """The records a server never answered, into ``bad`` once (not the input's fault: --strict goes on)."""
    listed: set[str] = set()
    for r in records:
        if r.id in unanswered and r.id not in listed:
            listed.add(r.id)
            bad.add(r, SERVER_FIELD, f"no answer from the server: {unanswered[r.id]}; a rerun asks again", stops=False)
