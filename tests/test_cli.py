import json
import subprocess
import sys

import pytest

from migrl.benchmarks import BENCHMARKS
from migrl.cli import build_parser


@pytest.mark.parametrize("command", ["eval", "score", "report"])
def test_every_benchmark_of_the_registry_is_a_choice(command):
    choices = next(a for a in build_parser()._subparsers._group_actions[0].choices[command]._actions
                   if a.dest == "benchmark").choices
    assert set(BENCHMARKS) | {"world"} == set(choices)
    assert {"records", "mig-bench", "mc-bench", "lisa", "ref-l4", "revos", "odinw", "blink", "mmiu"} == set(BENCHMARKS)


def test_score_prints_one_json_object(tmp_path):
    from tests.conftest import MIG_DATA

    if not MIG_DATA.exists():
        pytest.skip(f"real MIG-Bench annotations not at {MIG_DATA}")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "0", "text": "no box"}) + "\n")
    out = subprocess.run([sys.executable, "-m", "migrl.cli", "score", "--benchmark", "mig-bench", "--data", str(MIG_DATA),
                          "--predictions", str(preds), "--coords", "qwen2"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["avg"] == 0.0 and len(result["tasks"]) == 10


def test_plan_prints_the_7b_table():
    out = subprocess.run([sys.executable, "-m", "migrl.cli", "plan", "--model", "7b"], capture_output=True, text=True, check=True).stdout
    assert "ZeRO-3" in out and "fits" in out


def test_one_flag_style_works_for_every_command():
    """--out / --model, or TRL's --output_dir / --model_name_or_path as sft and grpo take them."""
    p = build_parser()
    a = p.parse_args(["eval", "--data", "d.jsonl", "--model_name_or_path", "m", "--output_dir", "o"])
    b = p.parse_args(["eval", "--data", "d.jsonl", "--model", "m", "--out", "o"])
    assert (a.model, a.out) == (b.model, b.out) == ("m", "o")
    assert p.parse_args(["reject", "--model_name_or_path", "m", "--data", "d", "--output_dir", "o"]).out == "o"
    assert "(default: 192)" in p._subparsers._group_actions[0].choices["eval"].format_help()  # defaults shown


def test_stage_help_teaches_config_first_and_migrls_fields(capsys):
    from migrl.cli import main

    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("usage: migrl sft --config") and "example: migrl sft --config recipes/paper/sft.yaml" in out
    first_option = next(line for line in lines if line.strip().startswith("--"))
    assert first_option.strip().startswith("--config") and "--length_skip_limit (default: 0.05)" in out
    assert len(lines) < 60  # not TRL's hundreds of fields (those: --help-all)


def test_every_exit_code_is_one_enum_and_documented():
    import re
    from pathlib import Path

    from migrl.bad_records import ExitCode

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("Exit codes of `migrl`:")[1].split("\n\n")[1]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {int(c) for c in ExitCode}


@pytest.mark.parametrize("command, cls, given", [
    ("eval", "EvalConfig", ["--data", "d.jsonl"]),
    ("reject", "RejectConfig", ["--data", "d.jsonl", "--model", "m"]),
    ("synthesize", "SynthesizeConfig", ["--data", "d.jsonl"]),
    ("synthesize", "TeacherConfig", ["--data", "d.jsonl"]),
    ("score", "ScoreConfig", ["--data", "d", "--predictions", "p", "--benchmark", "records"]),
    ("pretrain-base", "PretrainConfig", []),
    ("eval", "RemoteConfig", ["--data", "d.jsonl"]),
])
def test_options_are_the_configs_fields_with_their_defaults(command, cls, given):
    """Each option comes from its config field: parsing nothing but the required ones gives the config's defaults
    (an option restated by hand with another default, or a field without an option, fails here)."""
    import dataclasses

    from migrl import configs
    from migrl.options import from_args

    config = getattr(configs, cls)
    args = build_parser().parse_args([command, *given])
    required = {f.name: getattr(args, f.metadata.get("dest") or f.name) for f in dataclasses.fields(config)
                if f.metadata.get("required")}
    assert from_args(config, args) == config(**required)
    options = {a.dest for a in build_parser()._subparsers._group_actions[0].choices[command]._actions}
    assert {f.metadata.get("dest") or f.name for f in dataclasses.fields(config) if f.metadata.get("cli", True)} <= options


def test_one_timeout_for_every_served_engine():
    parser = build_parser()
    timeouts = {c: parser.parse_args([c, *a]).timeout for c, a in
                (("eval", ["--data", "d"]), ("reject", ["--data", "d", "--model", "m"]), ("synthesize", ["--data", "d"]))}
    assert len(set(timeouts.values())) == 1, timeouts


def test_a_teachers_image_setting_comes_from_its_folders_family(released_qwen3_vl_folder):
    """A Qwen3-VL teacher resizes in 32-px tokens with its own released budget; without a folder, the paper's
    Qwen2.5-VL-72B (28-px tokens, 3136 / 12845056); given pixels win over the family's."""
    from migrl.cli import _teacher_sizing
    from migrl.images import ImageSizing

    def sizing(*extra):
        return _teacher_sizing(build_parser().parse_args(["synthesize", "--data", "d", *extra]))

    assert sizing("--teacher-processor", str(released_qwen3_vl_folder)) == ImageSizing(65536, 16777216, 32)
    assert sizing("--teacher-model", str(released_qwen3_vl_folder), "--teacher-max-pixels", "1310720") == \
        ImageSizing(65536, 1310720, 32)
    assert sizing("--teacher-model", "Qwen/Qwen2.5-VL-72B-Instruct") == ImageSizing(3136, 12845056, 28)
