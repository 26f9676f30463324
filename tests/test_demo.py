import json

import pytest

from migrl.demo import DemoConfig, run_demo
from migrl.data.world import ID_TASKS, TASKS


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), per_task=2, train_per_task=6, rl_per_task=6,
                     sft_max_steps=6, grpo_max_steps=2, batch_size=16)
    report = run_demo(cfg)
    on_disk = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert on_disk == report and report["seconds"] > 0
    assert set(report["stages"]) == {"base", "cot_sft", "rl"}
    for stage in report["stages"].values():
        assert set(stage["tasks"]) == set(TASKS) and set(stage) == {"tasks", "id_avg", "ood_avg", "avg"}
        assert all(0 <= v <= 100 for v in stage["tasks"].values())
    synthesis = report["synthesis"]
    assert synthesis["asked"] == 6 * (len(ID_TASKS) + 1) and 0 < synthesis["kept"] < synthesis["asked"]
    assert (tmp_path / "demo" / "grpo" / "model.safetensors").exists()
