"""A non-editable install carries what the demo needs: the recipes ship inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_the_demo_with_its_own_recipes(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("migrl-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}  # this copy, not the editable checkout
    run = tmp_path / "run"  # away from the repository: no recipes/ folder beside it
    run.mkdir()
    where = subprocess.run([sys.executable, "-c", "import migrl.demo as d; print(d.__file__); print(d.RECIPES)"],
                           cwd=run, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(target)) and where[1].startswith(str(target))
    from pathlib import Path

    assert {p.name for p in Path(where[1]).glob("*.yaml")} >= {"sft.yaml", "grpo.yaml"}
    subprocess.run([sys.executable, "-m", "migrl.cli", "demo", "--until", "base", "--per-task", "1", "--out", "demo"],
                   cwd=run, env=env, capture_output=True, text=True, check=True)
    assert json.loads((run / "demo" / "report.json").read_text())["stages"]["base"]["avg"] is not None
