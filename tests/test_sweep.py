"""Ablation recipes and ``migrl sweep``: recipes that extend the paper's, a sweep that runs variants once,
resumes, and tables real scores files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trl import TrlParser

from migrl.boxes import format_answer
from migrl.cli import main
from migrl.data.world import write_split
from migrl.recipe import RECORD_NAME, cpu_overrides, expand_config_argv, load_recipe, record_recipe, stage_config
from migrl.records import read_records
from migrl.stages.grpo import GRPOStageConfig
from migrl.stages.sft import SFTStageConfig
from migrl.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent
ABLATIONS = REPO / "recipes" / "paper" / "ablations"


def parse(cls, recipe, tmp_path):
    argv = cpu_overrides(expand_config_argv(["--config", str(recipe)], tmp_path))
    (cfg,) = TrlParser(dataclass_types=[cls]).parse_args_and_config(args=argv)
    return cfg


def test_a_recipe_extends_another_and_changes_a_few_fields(tmp_path):
    (tmp_path / "base.yaml").write_text("beta: 0.001\nlearning_rate: 5.0e-5\nablates: base things\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kl.yaml").write_text("extends: ../base.yaml\nablates: KL\nbeta: 0.1\n")
    assert load_recipe(tmp_path / "sub" / "kl.yaml") == {"beta": 0.1, "learning_rate": 5e-5, "ablates": "KL"}
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ValueError, match="loop"):
        load_recipe(tmp_path / "loop.yaml")


def test_the_merged_recipe_is_what_trl_reads_and_the_values_run_are_recorded_after_the_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    argv = expand_config_argv(["--config", str(ABLATIONS / "kl_1e-1.yaml"), "--output_dir", "out/kl"], tmp_path / "tmp")
    merged = yaml.safe_load(Path(argv[1]).read_text())
    assert Path(argv[1]).parent == tmp_path / "tmp" and not Path("out").exists()  # nothing written before the checks
    assert merged["beta"] == 0.1 and "extends" not in merged and "ablates" not in merged
    plain = str(REPO / "recipes" / "paper" / "grpo.yaml")
    assert expand_config_argv(["--config", plain], tmp_path / "tmp") == ["--config", plain]  # no extends: untouched

    for recipe in (ABLATIONS / "kl_1e-1.yaml", plain):  # merged or plain, a stage records what it runs
        cfg = stage_config(GRPOStageConfig, "migrl grpo", ["--config", str(recipe), "--output_dir", "out/r", "--beta", "0.5",
                           "--dataloader_drop_last", "true"])
        assert not Path("out").exists()  # parsing writes nothing: the stage records once its checks pass
        record_recipe(cfg)
        text = (Path("out/r") / RECORD_NAME).read_text()
        fields = yaml.safe_load(text)
        assert text.startswith(f"# merged from {recipe}\n")
        assert fields["beta"] == 0.5 and fields["output_dir"] == "out/r"  # the command line wins
        assert fields["dataloader_drop_last"] is True  # and a field only the command line names is kept too
        recipe_keys = set(load_recipe(recipe)) - {"extends", "ablates"}
        assert set(fields) == recipe_keys | {"dataloader_drop_last"}  # the recipe's fields and the command line's
        assert fields["learning_rate"] == load_recipe(recipe)["learning_rate"] == cfg.learning_rate
        shutil.rmtree("out")


PAPER = {"loss_type": "grpo", "num_generations": 8, "temperature": 0.7, "learning_rate": 5e-5,
         "use_bias_correction_kl": False, "freeze_vision": True, "rewards": ["iou", "format"]}


@pytest.mark.parametrize("recipe,changed", [
    ("kl_1e-1.yaml", {"beta": 1e-1}), ("kl_1e-2.yaml", {"beta": 1e-2}), ("kl_1e-4.yaml", {"beta": 1e-4}),
    ("kl_1e-5.yaml", {"beta": 1e-5}),
    ("no_cold_start.yaml", {"model_name_or_path": "/path/to/Qwen2.5-VL-7B-Instruct", "max_pixels": 1003520}),  # the base has no budget
    ("no_rejection_sampling.yaml", {"data": "runs/paper/data/rl_pool.jsonl"}),
    ("grpo_after_sft_full.yaml", {"model_name_or_path": "runs/paper/ablations/sft_full",
                                  "data": "runs/paper/ablations/reject_sft_full/rl.jsonl"}),
])
def test_each_grpo_ablation_changes_only_what_it_says(recipe, changed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper, cfg = parse(GRPOStageConfig, REPO / "recipes" / "paper" / "grpo.yaml", tmp_path), parse(GRPOStageConfig, ABLATIONS / recipe, tmp_path)
    assert load_recipe(ABLATIONS / recipe)["ablates"]
    for field, value in {**PAPER, "beta": 1e-3, "data": paper.data, "model_name_or_path": paper.model_name_or_path, **changed}.items():
        assert getattr(cfg, field) == value, field
    assert cfg.output_dir.startswith("runs/paper/ablations/") and cfg.output_dir != paper.output_dir


def test_full_sft_ablation_is_the_cold_start_without_lora(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper, cfg = parse(SFTStageConfig, REPO / "recipes" / "paper" / "sft.yaml", tmp_path), parse(SFTStageConfig, ABLATIONS / "sft_full.yaml", tmp_path)
    assert paper.use_lora and not cfg.use_lora
    assert (cfg.learning_rate, cfg.freeze_vision, cfg.cot, cfg.max_length, cfg.max_pixels) == (paper.learning_rate, True, True, 8192, 1003520)


def test_the_paper_sweep_names_every_ablation(monkeypatch):
    monkeypatch.chdir(REPO)  # the sweep's paths are relative to the repository
    sweep = load_sweep(ABLATIONS / "sweep.yaml")
    by_name = {v.name: v for v in sweep.variants}
    assert {"paper", "no_cold_start", "no_rejection_sampling", "sft_full", "kl_1e-1", "kl_1e-2", "kl_1e-4", "kl_1e-5"} <= set(by_name)
    assert by_name["kl_1e-2"].model == "runs/paper/ablations/kl_1e-2" and by_name["kl_1e-2"].ablates == "KL beta 1e-2"
    assert [s[0] for s in by_name["sft_full"].steps] == ["sft", "reject", "grpo"]
    assert by_name["sft_full"].model == "runs/paper/ablations/sft_full_grpo"
    assert all(v.ablates for v in sweep.variants)


# -- collecting real scores --------------------------------------------------------------------------

def score_run(world: Path, out: Path, right: int) -> dict:
    """Score predictions with ``migrl score``: the first ``right`` items answered with their gold box."""
    records = read_records(world)
    preds = out / "predictions.jsonl"
    out.mkdir(parents=True)
    with open(preds, "w") as f:
        for r in records[:right]:
            box = r.target
            f.write(json.dumps({"id": r.id, "text": f"<answer>{format_answer(box.bbox, box.image_index)}</answer>"}) + "\n")
    assert main(["score", "--benchmark", "world", "--data", str(world), "--predictions", str(preds),
                 "--coords", "pixels", "--out", str(out)]) == 0
    return json.loads((out / "scores.json").read_text())


def test_sweep_tables_the_scores_files_it_finds(tmp_path, capsys):
    world = write_split(tmp_path / "world", "test", 2, seed=1, tasks=("common_object", "region", "multi_view"))
    good = score_run(world, tmp_path / "sweep" / "good" / "eval", right=6)
    half = score_run(world, tmp_path / "sweep" / "half" / "eval", right=3)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"out": str(tmp_path / "sweep"), "variants": [
        {"name": "good", "model": "m1", "ablates": "all right"},
        {"name": "half", "model": "m2", "ablates": "half right"},
        {"name": "never_run", "model": "m3", "ablates": "missing"}]}))
    capsys.readouterr()  # what migrl score printed
    assert main(["sweep", "--config", str(tmp_path / "sweep.yaml"), "--collect-only"]) == 1  # one variant has no scores
    table = capsys.readouterr().out
    lines = table.strip().splitlines()
    assert lines[0] == "| variant | ablates | ID avg | OOD avg | avg | common_object | region | multi_view |"
    assert lines[2] == "| good | all right | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |"
    assert lines[3] == (f"| half | half right | {half['id_avg']:.1f} | {half['ood_avg']:.1f} | {half['avg']:.1f} | "
                        f"{half['tasks']['common_object']:.1f} | {half['tasks']['region']:.1f} | {half['tasks']['multi_view']:.1f} |")
    assert lines[4] == "| never_run | missing (not run) | - | - | - | - | - | - |"
    assert good["avg"] == 100.0 and half["avg"] < 100.0
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in rows] == ["scored", "scored", "not run"] and rows[1]["scores"] == half
    assert (tmp_path / "sweep" / "sweep.md").read_text() == table


def test_sweep_collects_eval_folders_without_a_sweep_file(tmp_path, capsys):
    world = write_split(tmp_path / "world", "test", 1, seed=2, tasks=("diff",))
    score_run(world, tmp_path / "a", right=1)
    capsys.readouterr()
    assert main(["sweep", "--run", f"a={tmp_path / 'a'}", "--out", str(tmp_path / "table")]) == 0
    assert "| a |  | 100.0 |" in capsys.readouterr().out


@pytest.mark.slow  # four migrl processes
def test_sweep_runs_each_step_once_and_a_failing_variant_does_not_stop_the_others(tmp_path):
    # real migrl commands as steps: cheap ones (world), so the bookkeeping is what is tested here;
    # the evaluation is skipped because each variant's scores are already there
    out = tmp_path / "sweep"
    for name in ("ok", "bad"):
        (out / name / "eval").mkdir(parents=True)
        (out / name / "eval" / "scores.json").write_text(json.dumps({"tasks": {"diff": 50.0}, "avg": 50.0, "id_avg": 50.0, "ood_avg": None}))
    spec = {"out": str(out), "variants": [
        {"name": "ok", "model": "unused", "steps": [["world", "--out", "{out}/{name}/world", "--train", "1", "--test", "1"]]},
        {"name": "bad", "model": "unused", "steps": [["score", "--benchmark", "world", "--data", "{out}/missing.jsonl",
                                                      "--predictions", "{out}/missing.jsonl"]]},
    ]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = [sys.executable, "-m", "migrl.cli", "sweep", "--config", str(tmp_path / "sweep.yaml")]
    first = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert (out / "ok" / "world" / "train.jsonl").exists()
    assert json.loads((out / "ok" / "sweep_state.json").read_text()) == {"steps_done": 1}
    assert not (out / "bad" / "sweep_state.json").exists()
    rows = {r["variant"]: r for r in json.loads((out / "sweep.json").read_text())}
    assert rows["ok"]["status"] == "scored" and rows["bad"]["status"].startswith("step 1 (migrl score) exited with")
    (out / "ok" / "world" / "train.jsonl").unlink()
    second = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert "ok: step" not in second.stderr and "bad: step 1/1" in second.stderr  # done steps are not rerun
    assert not (out / "ok" / "world" / "train.jsonl").exists()


@pytest.mark.slow
def test_a_real_two_variant_sweep_trains_evaluates_and_tables(tmp_path, tiny_base):
    """Two GRPO variants of a tiny recipe (KL 0 and 0.04), one step each from the shipped base, each
    evaluated on the world; a rerun trains and evaluates nothing again."""
    train = write_split(tmp_path / "world", "train", 1, seed=4, tasks=("common_object", "region"))
    test = write_split(tmp_path / "world", "test", 1, seed=4, tasks=("common_object", "multi_view"))
    base = {"model_name_or_path": str(tiny_base), "data": str(train), "rewards": ["iou", "format"], "reward_weights": [1.0, 0.5],
            "loss_type": "grpo", "num_generations": 2, "per_device_train_batch_size": 4, "max_steps": 1,
            "max_completion_length": 8, "learning_rate": 1e-3, "use_cpu": True, "bf16": False, "save_strategy": "no",
            "report_to": "none", "rollout_log_every": 0, "seed": 0}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(base))
    for beta in ("0.0", "0.04"):
        (tmp_path / f"kl_{beta}.yaml").write_text(f"extends: tiny.yaml\nablates: KL beta {beta}\nbeta: {beta}\n"
                                                   f"output_dir: {tmp_path / 'sweep' / ('kl_' + beta) / 'model'}\n")
    spec = {"out": str(tmp_path / "sweep"),
            "eval": ["--data", str(test), "--limit-per-task", "1", "--max-new-tokens", "24", "--batch-size", "4"],
            "variants": [{"name": f"kl_{b}", "steps": [["grpo", "--config", str(tmp_path / f"kl_{b}.yaml")]]} for b in ("0.0", "0.04")]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = [sys.executable, "-m", "migrl.cli", "sweep", "--config", str(tmp_path / "sweep.yaml")]
    first = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.strip().splitlines()
    assert lines[0] == "| variant | ablates | ID avg | OOD avg | avg | common_object | multi_view |"
    assert [l.split(" | ")[:2] for l in lines[2:]] == [["| kl_0.0", "KL beta 0.0"], ["| kl_0.04", "KL beta 0.04"]]
    for b in ("0.0", "0.04"):
        folder = tmp_path / "sweep" / f"kl_{b}"
        assert json.loads((folder / "model" / "grpo_summary.json").read_text())["steps"] == 1
        assert yaml.safe_load((folder / "model" / "recipe.yaml").read_text())["beta"] == float(b)
        scores = json.loads((folder / "eval" / "scores.json").read_text())
        assert set(scores["tasks"]) == {"common_object", "multi_view"} and sum(scores["counts"]["common_object"]) >= 1
    second = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert second.returncode == 0 and "[sweep]" not in second.stderr and second.stdout == first.stdout
