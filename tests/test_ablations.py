import json

import pytest

from migrl.ablations import ABLATIONS, TABLES, ablation_rows, ablation_table
from migrl.data.world import ID_TASKS, TASKS
from migrl.demo import DemoConfig, run_demo


def _run(right: dict[str, int], items: int = 50) -> dict:
    """Scores as eval writes them: ``right`` items of each task right, of ``items``."""
    per_item = {f"{t}-{i}": [t, int(i < right.get(t, 0))] for t in TASKS for i in range(items)}
    tasks = {t: 100.0 * right.get(t, 0) / items for t in TASKS}
    ood = [t for t in TASKS if t not in ID_TASKS]
    return {"per_item": per_item, "tasks": tasks, "id_avg": sum(tasks[t] for t in ID_TASKS) / len(ID_TASKS),
            "ood_avg": sum(tasks[t] for t in ood) / len(ood), "avg": sum(tasks.values()) / len(tasks)}


def test_a_row_whose_difference_has_the_papers_sign_agrees_and_one_against_it_is_flagged():
    full = _run({t: 20 for t in TASKS})
    scores = {"rl": full, "no_cold_start": _run({t: 5 for t in TASKS}),  # far below the full recipe: as the paper
              "no_kl": _run({t: 40 for t in TASKS}),  # far above: the paper has w/o KL below its full model
              "kl_1e-1": _run({t: 20 for t in TASKS})}  # the same: its interval holds 0
    rows = {r["run"]: r for r in ablation_rows(scores, list(ID_TASKS), seed=0)}
    assert rows["no_cold_start"]["diff"]["signs"] == "as the paper" and rows["no_cold_start"]["diff"]["avg"] == -30.0
    assert rows["no_kl"]["diff"]["signs"] == "differs from the paper" and rows["no_kl"]["paper_diff"] == -3.14
    assert rows["kl_1e-1"]["diff"]["signs"] == "within noise"
    assert "diff" not in rows["rl"] and "value" not in rows["sft_full"]  # the reference; a variant not run
    table = ablation_table(list(rows.values()))
    assert "differs from the paper" in table and "not run" in table and "Table 10" in table


@pytest.mark.parametrize("unfiltered", [False, True])
def test_the_ablations_train_on_what_the_demos_grpo_trained_on(unfiltered, tmp_path):
    from migrl.ablations import ablation_sweep
    from migrl.recipe import override

    demo = tmp_path / "demo"
    sweep = ablation_sweep(demo, tmp_path / "base", 0, demo / "world" / "test.jsonl", 16, "qwen2.5-vl",
                           unfiltered=unfiltered)
    data = {v.name: override(v.steps[0], "data") for v in sweep.variants}
    pool, kept = str(demo / "world_rl" / "train.jsonl"), str(demo / "reject" / "rl.jsonl")
    rejected = pool if unfiltered else kept  # where rejection kept nothing the demo's GRPO took the whole pool
    assert {name: data[name] for name in ("no_cold_start", "no_kl", "kl_1e-2")} == dict.fromkeys(
        ("no_cold_start", "no_kl", "kl_1e-2"), rejected)
    assert data["no_rejection_sampling"] == pool and data["sft_full"] == str(demo / "synthesize" / "sft.jsonl")


@pytest.mark.slow  # trains the demo and every ablation (a few steps each), in subprocesses
def test_demo_ablations_put_every_row_beside_the_paper_with_intervals_and_a_rerun_reuses_them(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), per_task=2, train_per_task=6, rl_per_task=6,
                     sft_max_steps=4, grpo_max_steps=1, batch_size=16, ablations=True)
    report = run_demo(cfg)
    rows = report["ablations"]
    assert [r["run"] for r in rows] == [row.run for _, _, table in TABLES for row in table]
    for r in rows:  # every ablation ran, and every figure has its interval holding it
        assert all(low <= r["value"][k] <= high for k, (low, high) in r["interval"].items()), r
        if r["run"] != "rl":
            low, high = r["diff"]["interval"]
            assert low <= r["diff"]["avg"] <= high, r
    ablations = tmp_path / "demo" / "ablations"
    assert "not run" not in (ablations / "ablations.md").read_text()
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["ablations"] == rows
    weights = sorted(ablations.glob("*/model/model.safetensors")) + [tmp_path / "demo" / "grpo" / "model.safetensors"]
    assert len(weights) == len(ABLATIONS) + 1
    before = {p: p.stat().st_mtime_ns for p in weights}
    again = run_demo(cfg)  # the same settings: the demo and every ablation are reused, nothing retrains
    assert {p: p.stat().st_mtime_ns for p in weights} == before
    assert again["ablations"] == rows
