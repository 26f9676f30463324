import json

import pytest

from migrl.demo import Demo, DemoConfig, run_demo
from migrl.data.world import ID_TASKS, TASKS


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(tmp_path, monkeypatch, capsys):
    cfg = DemoConfig(out=str(tmp_path / "demo"), per_task=2, train_per_task=6, rl_per_task=6,
                     sft_max_steps=6, grpo_max_steps=2, batch_size=16)
    reference = tmp_path / "reference.json"  # a README run of these settings: the final table shows it beside its own
    figures = {"tasks": {t: 1.25 for t in TASKS}, "id_avg": 1.25, "ood_avg": 1.25, "avg": 1.25}
    settings = Demo(cfg).settings()
    reference.write_text(json.dumps({cfg.family: {"measured": "then", "settings": settings,
                                                  "stages": {s: figures for s in ("base", "cot_sft", "rl")}}}))
    monkeypatch.setattr("migrl.demo.REFERENCE", reference)
    report = run_demo(cfg)
    table = capsys.readouterr().out
    assert "README: base / cot_sft / rl" in table and "1.25 / 1.25 / 1.25" in table
    on_disk = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert on_disk == report and report["seconds"] > 0
    assert set(report["stages"]) == {"base", "cot_sft", "rl"}
    for stage in report["stages"].values():
        assert set(stage["tasks"]) == set(TASKS) and set(stage) == {"tasks", "id_avg", "ood_avg", "avg"}
        assert all(0 <= v <= 100 for v in stage["tasks"].values())
    for stage, scores in report["stages"].items():  # every figure with its interval, holding the figure
        bounds = report["intervals"][stage]
        assert all(bounds[k][0] <= scores[k] <= bounds[k][1] for k in ("id_avg", "ood_avg", "avg"))
    assert set(report["differences"]) == {"cot_sft-base", "rl-cot_sft"}
    for diff in report["differences"].values():
        assert all(low <= diff["value"][k] <= high for k, (low, high) in diff["interval"].items() if k in diff["value"])
    synthesis = report["synthesis"]
    assert synthesis["asked"] == 6 * (len(ID_TASKS) + 1) and 0 < synthesis["kept"] < synthesis["asked"]
    assert (tmp_path / "demo" / "grpo" / "model.safetensors").exists()
    page = (tmp_path / "demo" / "report" / "report.html").read_text()  # the demo writes its HTML report itself
    assert all(f"<th>{stage}</th>" in page for stage in report["stages"]) and "<img" in page


@pytest.mark.slow  # trains or runs the demo: end to end
def test_a_rerun_with_another_base_answers_again_instead_of_reusing_the_old_answers(tmp_path, tiny_base):
    import shutil

    from safetensors.torch import load_file, save_file

    from migrl.run_identity import model_fingerprint

    other = tmp_path / "other-base"
    shutil.copytree(tiny_base, other)
    weights = load_file(other / "model.safetensors")
    save_file({k: v * 1.01 for k, v in weights.items()}, other / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=str(out), per_task=1, until="base"))
    run_demo(DemoConfig(out=str(out), base=str(other), per_task=1, until="base"))
    meta = json.loads((out / "eval" / "base" / "predictions.run.json").read_text())
    assert meta["model"] == model_fingerprint(other)
    assert len((out / "eval" / "base" / "predictions.jsonl").read_text().splitlines()) == len(TASKS)


def test_a_finished_demo_is_reused_only_with_the_same_recipes(tmp_path):
    """--ablations compares every variant with the demo's run: a demo trained with other recipes (an edited
    recipes/demo/grpo.yaml) is not the reference of the current ones, and is run again."""
    cfg = DemoConfig(out=str(tmp_path / "demo"))
    settings = Demo(cfg).settings()
    (tmp_path / "demo" / "grpo").mkdir(parents=True)
    (tmp_path / "demo" / "grpo" / "config.json").write_text("{}")
    stages = {s: {} for s in ("base", "cot_sft", "rl")}

    def finished(with_settings: dict) -> bool:
        (tmp_path / "demo" / "report.json").write_text(json.dumps({"settings": with_settings, "stages": stages}))
        return Demo(cfg).finished()

    assert finished(settings)
    grpo = settings["recipes"]["grpo"]
    assert not finished({**settings, "recipes": {**settings["recipes"], "grpo": {**grpo, "beta": 0.04}}})
    assert not finished({k: v for k, v in settings.items() if k != "recipes"})  # a run of an older migrl
