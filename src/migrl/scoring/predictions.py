"""Prediction files: JSONL lines ``{"id": ..., "text": model output}``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Predictions:
    texts: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # bad lines, named by file and line


def read_predictions(path: str | Path) -> Predictions:
    """First prediction per id wins; broken lines are reported, never fatal."""
    out = Predictions()
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                out.errors.append(f"{where}: not valid JSON ({exc})")
                continue
            if not isinstance(row, dict) or "id" not in row:
                out.errors.append(f"{where}: expected an object with 'id' and 'text'")
                continue
            text = row.get("text")
            if not isinstance(text, str):
                out.errors.append(f"{where} (id {row['id']}): field 'text': expected a string, got {type(text).__name__}")
                text = ""
            rid = str(row["id"])
            if rid in out.texts:
                out.errors.append(f"{where}: duplicate id {rid!r}, the first prediction is kept")
                continue
            out.texts[rid] = text
    return out
