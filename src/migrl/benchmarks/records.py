"""migrl's own records (the embedded world, a prepared pool, any benchmark converted to records): Acc@0.5.

The answer's box is judged by ``migrl.scoring.judge`` (on the image it lies on, converted to pixels there, a
box on the wrong image scores 0). A record that cannot run is left out of these scores (there is no official
denominator to keep), listed in ``bad_records.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrl.benchmarks.base import protocol, score_records_with
from migrl.boxes import Space
from migrl.images import ImageSizes, ImageSizing
from migrl.records import LoadReport, load_records
from migrl.scoring.judge import is_hit, record_iou


def load(data_path: str | Path, image_root: str | Path | None = None) -> LoadReport:
    """A migrl records JSONL; a bad line is an error of the report, the others load."""
    return load_records(data_path)


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """Acc@0.5 per task in percent, with ID / OOD / overall means over tasks; missing predictions are wrong."""
    sizes = ImageSizes(root)
    records = loaded.records
    result = score_records_with(records, predictions, lambda r, text: is_hit(record_iou(text, r, coords, sizes, sizing)),
                                {r.task for r in records if r.domain == "id"})
    result["protocol"] = protocol("migrl", "migrl records: Acc@0.5 (IoU >= 0.5 on the right image) per task, mean of tasks",
                                  len(records), len(result.get("errors", [])))
    return result
