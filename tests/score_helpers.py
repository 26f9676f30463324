"""Scoring a list of migrl records in tests, through the registry's records entry (as eval does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from migrl.benchmarks import get
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.records import LoadReport, Record


def score_records(records: Iterable[Record], predictions: dict[str, str], root: str | Path,
                  coords: Space | str = Space.QWEN25, sizing: ImageSizing | None = None) -> dict[str, Any]:
    return get("records").score_loaded(LoadReport(records=list(records)), predictions, coords, root, sizing)
