"""The README's demo figures are the reference runs' (``recipes/demo/reference.json``), and the demo's final table
shows them beside a run of the same settings."""

import json
import re
from pathlib import Path

import pytest

from migrl.demo import REFERENCE, Demo, DemoConfig, readme_reference
from migrl.report.tables import stage_table

README = Path(__file__).resolve().parents[1] / "README.md"
AVERAGES = {"ID avg": "id_avg", "OOD avg": "ood_avg", "avg": "avg"}


def readme_table(after: str) -> dict[str, dict]:
    """The first printed stage table after the heading or sentence ``after``: stage -> tasks and averages."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index(after):]
    block = block[block.index("```\ntask") + 4:]
    lines = block[:block.index("```")].splitlines()
    stages = {name: {"tasks": {}} for name in lines[0].split()[1:]}
    for line in lines[2:]:
        figures = [float(v) for v in re.findall(r"(-?\d+\.\d+) \[", line)]
        task = re.match(r"(\w+) \((?:ID|OOD)\)", line)
        label = next((lab for lab in AVERAGES if line.startswith(lab + " ")), None)
        for stage, value in zip(stages, figures):
            if task:
                stages[stage]["tasks"][task.group(1)] = value
            elif label:
                stages[stage][AVERAGES[label]] = value
    return stages


@pytest.mark.parametrize("family, after", [("qwen2.5-vl", "What the demo prints at the end"),
                                           ("qwen3-vl", "### The demo on Qwen3-VL")])
def test_the_readme_prints_the_reference_runs_figures(family, after):
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))[family]["stages"]
    printed = readme_table(after)
    assert printed == reference, f"README's {family} demo table differs from {REFERENCE.name}"


def test_the_default_demo_is_the_reference_runs_settings():
    settings = Demo(DemoConfig()).settings()
    assert readme_reference(settings) is not None
    assert readme_reference({**settings, "until": "cot_sft"}) is not None  # a shorter run shows its stages
    grpo = settings["recipes"]["grpo"]
    other_recipe = {"recipes": {**settings["recipes"], "grpo": {**grpo, "beta": grpo["beta"] * 2}}}
    for changed in ({"per_task": 20}, {"seed": 1}, {"base": "runs/other-base"}, {"family": "qwen3.5"}, other_recipe):
        assert readme_reference({**settings, **changed}) is None, changed
    assert readme_reference({**settings, "family": "qwen3-vl"}) is not None


def test_the_final_table_shows_the_reference_beside_its_own_figures():
    stages = {"base": {"tasks": {"diff": 0.0, "reasoning": 1.0}, "id_avg": 0.0, "ood_avg": 1.0, "avg": 0.5},
              "cot_sft": {"tasks": {"diff": 4.0, "reasoning": 2.0}, "id_avg": 4.0, "ood_avg": 2.0, "avg": 3.0}}
    reference = {"base": {"tasks": {"diff": 0.5, "reasoning": 1.5}, "id_avg": 0.5, "ood_avg": 1.5, "avg": 1.0},
                 "cot_sft": {"tasks": {"diff": 6.0, "reasoning": 3.0}, "id_avg": 6.0, "ood_avg": 3.0, "avg": 4.5},
                 "rl": {"tasks": {"diff": 9.0}, "id_avg": 9.0, "ood_avg": 9.0, "avg": 9.0}}
    lines = stage_table(stages, reference=reference).splitlines()
    assert lines[0].split()[-4:] == ["README:", "base", "/", "cot_sft"]  # only the stages this run has
    rows = {line.split()[0]: line for line in lines[2:] if line[:1] != "-"}
    assert rows["diff"].endswith("0.50 / 6.00") and rows["reasoning"].endswith("1.50 / 3.00")
    assert next(line for line in lines if line.startswith("ID avg")).endswith("0.50 / 6.00")
    assert "README" not in stage_table(stages)
