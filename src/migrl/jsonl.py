"""Crash-safe files: whole files are written to a temporary name and renamed; long outputs are
appended line by line, keyed by id, so a rerun after ``kill -9`` skips what is done and never
duplicates an item. A torn last line (the process died mid-write) is cut off on reopening."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

# mkstemp makes its file private (0600); the renamed output should get the mode any new file gets.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Complete lines only: a torn last line is ignored."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                rows.append(json.loads(line))
    return rows


class AppendLog:
    """An append-only JSONL output keyed by ``key``; reopening resumes it.

    Each batch is one ``write`` of whole lines followed by fsync, so after a crash the file holds
    whole lines plus at most one torn tail, which ``__init__`` removes.
    """

    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            self._recover()

    def _recover(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # keep whole lines only
        if end != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
        for line in data[:end].decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                self.rows.setdefault(str(row[self.key]), row)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def forget(self, ids: Iterable[object]) -> int:
        """Drop rows (e.g. failed items, to ask again); the file is rewritten atomically."""
        gone = {str(i) for i in ids} & set(self.rows)
        if gone:
            for rid in gone:
                del self.rows[rid]
            write_jsonl_atomic(self.path, list(self.rows.values()))
        return len(gone)

    def append(self, rows: Iterable[dict]) -> int:
        """Append rows whose id is new; returns how many were written."""
        fresh = []
        for row in rows:
            rid = str(row[self.key])
            if rid not in self.rows:
                self.rows[rid] = row
                fresh.append(row)
        if fresh:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fresh))
                f.flush()
                os.fsync(f.fileno())
        return len(fresh)
