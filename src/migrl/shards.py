"""Data-parallel generation: the items of ``eval``, ``reject`` and ``synthesize`` split over ranks or jobs,
each shard its own resumable log, merged once into the stage's log with no item lost or duplicated.

Shard i of n takes items i, i+n, i+2n, ... (round robin: a file sorted by task spreads every task over
every shard) and appends to its own log beside the stage's, ``predictions.jsonl`` ->
``predictions.shard-1-of-4.jsonl``: shards never write one file together, and a killed shard resumes
from its log like an unsharded run.

Merging copies every shard log into the stage's log (``AppendLog`` keeps the first row of an id, so an
item is never there twice) and the stage builds its outputs (scores, kept records, stats) from it:

- under a launcher (``torchrun``, ``accelerate launch``: RANK / WORLD_SIZE in the environment) the ranks
  meet in a gloo process group when each finished its shard; rank 0 then merges and writes the
  outputs, the other ranks only generate;
- with ``--shard i/n`` (separate jobs, e.g. on nodes sharing a file system) each job generates its
  shard; the same command without ``--shard`` then merges, and generates whatever is still missing.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from migrl.jsonl import AppendLog, read_jsonl
from migrl.run_identity import check_same_run

log = logging.getLogger(__name__)

T = TypeVar("T")
_SHARD_RE = re.compile(r"\.shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    launched: bool = False  # started by a launcher: rank 0 waits for the others and merges

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: expected INDEX/COUNT with 0 <= INDEX < COUNT")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"``: the i-th of n shards, counted from 0."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise ValueError(f"--shard expects INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4; got {text!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def from_env(cls, env: Any = None) -> Shard:
        """The rank and world size a launcher set (torchrun and accelerate set RANK and WORLD_SIZE)."""
        env = os.environ if env is None else env
        world = int(env.get("WORLD_SIZE") or 1)
        if world <= 1:
            return cls()
        return cls(int(env.get("RANK") or 0), world, launched=True)

    @classmethod
    def resolve(cls, option: str | None, env: Any = None) -> Shard:
        """An explicit ``--shard i/n`` wins over the launcher's environment."""
        return cls.parse(option) if option else cls.from_env(env)

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.index :: self.count])

    def log_path(self, path: Path) -> Path:
        return path.with_name(f"{path.stem}.shard-{self.index}-of-{self.count}{path.suffix}")


@dataclass
class ShardRun:
    """What a stage does next: with ``log`` it writes its outputs from it; without, this shard is done."""

    shard: Shard
    log: AppendLog | None
    generated: int = 0  # rows this process added to its log
    merged: int = 0  # rows copied from shard logs into the stage's log
    errors: list[Any] = field(default_factory=list)  # what the other ranks' generate returned (rank 0 of a launch)


def shard_logs(path: Path) -> list[Path]:
    """The shard logs beside ``path``, of any shard count, in (count, index) order."""
    found = []
    for p in path.parent.glob(f"{path.stem}.shard-*-of-*{path.suffix}"):
        match = _SHARD_RE.search(p.name[: -len(path.suffix)] if path.suffix else p.name)
        if match:
            found.append((int(match[2]), int(match[1]), p))
    return [p for _, _, p in sorted(found)]


def merge_shard_logs(log: AppendLog) -> int:
    """Copy every shard log's complete lines into ``log``; ids already there keep their row."""
    added = 0
    for path in shard_logs(log.path):
        added += log.append(read_jsonl(path))  # read-only: a shard still writing keeps its torn tail
    return added


def generate_sharded(
    shard: Shard,
    path: Path,
    items: Sequence[Any],
    generate: Callable[[list[Any], AppendLog], Any],
    key: Callable[[Any], str] = lambda item: str(item.id),
    identity: dict[str, Any] | None = None,
) -> ShardRun:
    """Run ``generate(items_to_do, log)`` for this shard and merge where this process should.

    ``generate`` skips items already in the log it is given (as every stage's generation does) and may
    return a list of reports on items that could not run (any picklable values; under a launcher rank 0
    gets the other ranks' in ``ShardRun.errors``). With ``identity`` (the model and
    settings that write the log) a log written by another run is refused, not resumed.
    """
    if identity is not None:
        check_same_run(path, identity)
    if shard.count == 1:
        main = AppendLog(path)
        merged = merge_shard_logs(main)
        if merged:
            log.info("merged %d rows from shard logs into %s", merged, path)
        before = len(main)
        generate(list(items), main)
        return ShardRun(shard, main, generated=len(main) - before, merged=merged)

    # Items an earlier unsharded run already answered are not asked again.
    done_before = {str(r["id"]) for r in read_jsonl(path)} if path.exists() else set()
    own = AppendLog(shard.log_path(path))
    before = len(own)
    errors = generate([it for it in shard.take(items) if key(it) not in done_before], own) or []
    run = ShardRun(shard, None, generated=len(own) - before)
    if shard.launched:
        reported = gather_when_all_done(list(errors))
        if shard.index == 0:
            run.errors = [e for rank_errors in reported[1:] for e in rank_errors]
            run.log = AppendLog(path)
            run.merged = merge_shard_logs(run.log)
    return run


# Shards finish far apart when items differ in cost; the wait is for the slowest, not a sign of a hang.
# A rank that dies makes the launcher stop the others, so the wait does not outlive a failed run.
SHARD_WAIT = timedelta(days=2)


def gather_when_all_done(errors: list[Any]) -> list[list[Any]]:
    """Every rank's reports (picklable), once every rank got here (a gloo process group: no GPU needed)."""
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", timeout=SHARD_WAIT)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, errors)
    if owned:
        dist.destroy_process_group()
    return gathered


def rank_device() -> str | None:
    """The GPU of this rank (LOCAL_RANK) when there are GPUs; None (the CPU) otherwise."""
    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK') or 0) % torch.cuda.device_count()}"
