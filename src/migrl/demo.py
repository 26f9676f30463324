"""``migrl demo``: the loop on the embedded default -- the world, the shipped tiny base, scores.

Writes ``<out>/report.json``: ``{"seconds": total, "stages": {"base": {"tasks", "id_avg",
"ood_avg", "avg"}}}`` (percent) and prints a table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrl.jsonl import write_json_atomic
from migrl.report.tables import stage_table

REPORT_KEYS = ("tasks", "id_avg", "ood_avg", "avg")


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    per_task: int = 40  # test items per task
    seed: int = 0
    batch_size: int = 32


def _stage_scores(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores[k] for k in REPORT_KEYS}


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from migrl.data.world import write_split
    from migrl.stages.evaluate import EvalConfig, evaluate

    start = time.time()
    out = Path(cfg.out)
    print(f"[demo] writing the world's test split to {out / 'world'}")
    test = write_split(out / "world", "test", cfg.per_task, seed=cfg.seed)
    report: dict[str, Any] = {"seconds": 0.0, "stages": {}}
    print("[demo] evaluating the shipped tiny base")
    base = evaluate(EvalConfig(model=None, data=str(test), out=str(out / "eval" / "base"), batch_size=cfg.batch_size))
    report["stages"]["base"] = _stage_scores(base)
    report["seconds"] = round(time.time() - start, 1)
    write_json_atomic(out / "report.json", report)
    print()
    print(stage_table(report["stages"]))
    print(f"\n[demo] {report['seconds']:.0f} s; report: {out / 'report.json'}")
    return report
