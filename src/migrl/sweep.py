"""``migrl sweep``: run a list of recipe variants (the paper's ablations) and put their scores in one table.

A sweep file (YAML) names an output folder, the arguments of ``migrl eval`` every variant is scored with,
and the variants; a variant is a list of migrl command lines (its steps) and the model folder they end
in, or only an existing model folder::

    out: runs/paper/ablations
    eval: [--benchmark, mig-bench, --data, MIG_data.json, --image-root, /data]
    variants:
      - name: paper
        model: runs/paper/grpo                     # already trained: only evaluated
      - name: kl_1e-1
        steps: [[grpo, --config, recipes/paper/ablations/kl_1e-1.yaml]]   # model: the recipe's output_dir

``{out}`` and ``{name}`` in a step or a model are replaced by the sweep's folder and the variant's name.
Each variant is scored into ``{out}/{name}/eval`` (``scores.json``, as ``migrl eval`` writes it). A rerun
skips the steps already done (``{out}/{name}/sweep_state.json``) and the evaluations already scored, and
the stages resume from their own checkpoints, so a killed sweep continues where it stopped. A failing
step stops its variant only; the table says which failed.

Recipes may ``extends:`` another recipe (a path relative to the file) and change a few fields; ``ablates:``
says in words what a recipe changes. ``migrl sft`` / ``migrl grpo`` read such recipes directly, and each
records the recipe it ran, with the values run, in ``<output_dir>/recipe.yaml`` (``migrl.recipe``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrl.jsonl import write_json_atomic, write_text_atomic
from migrl.recipe import config_index, load_recipe, override

SCORE_KEYS = (("id_avg", "ID avg"), ("ood_avg", "OOD avg"), ("avg", "avg"))
PYTHON_MIGRL = [sys.executable, "-m", "migrl.cli"]


# -- the sweep file --------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    steps: list[list[str]] = field(default_factory=list)
    model: str | None = None
    ablates: str = ""


@dataclass
class Sweep:
    out: Path
    eval_args: list[str]
    variants: list[Variant]

    def folder(self, v: Variant) -> Path:
        return self.out / v.name


def _fill(text: str, out: Path, name: str) -> str:
    return text.replace("{out}", str(out)).replace("{name}", name)


def step_output(step: list[str]) -> str | None:
    """The folder a step writes its model to: ``--output_dir`` / the recipe's (sft, grpo), ``--out`` (reject)."""
    if step and step[0] in ("sft", "grpo"):
        i = config_index(step)
        return override(step, "output_dir") or (load_recipe(step[i]).get("output_dir") if i is not None else None)
    return override(step, "out")


def step_ablates(step: list[str]) -> str:
    i = config_index(step)
    return str(load_recipe(step[i]).get("ablates", "")) if i is not None and step[0] in ("sft", "grpo") else ""


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    where = f"{path}"
    if not isinstance(spec.get("variants"), list) or not spec["variants"]:
        raise ValueError(f"{where}: 'variants' must be a non-empty list")
    out = Path(spec.get("out", "runs/sweep"))
    variants, names = [], set()
    for n, raw in enumerate(spec["variants"]):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not name or not isinstance(name, str) or "/" in name:
            raise ValueError(f"{where}: variant {n}: needs a 'name' (a folder name)")
        if name in names:
            raise ValueError(f"{where}: variant {name!r} appears twice")
        names.add(name)
        steps = [[_fill(str(a), out, name) for a in step] for step in raw.get("steps", [])]
        try:
            model = _fill(str(raw["model"]), out, name) if raw.get("model") else (step_output(steps[-1]) if steps else None)
            ablates = raw.get("ablates") or (step_ablates(steps[-1]) if steps else "")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: variant {name!r}: {exc}") from exc
        if not model:
            raise ValueError(f"{where}: variant {name!r}: no 'model' and no step that names its output")
        variants.append(Variant(name, steps, model, str(ablates)))
    return Sweep(out, [str(a) for a in spec.get("eval", [])], variants)


# -- running ---------------------------------------------------------------------------------------

def _state(folder: Path) -> dict[str, Any]:
    import json

    f = folder / "sweep_state.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {"steps_done": 0}


def _call(argv: list[str]) -> int:
    # the steps' own output goes to stderr: stdout is the sweep's table
    return subprocess.call(argv, stdout=sys.stderr.fileno())


def run_variant(sweep: Sweep, v: Variant, launcher: list[str]) -> str | None:
    """Run what is left of a variant and score it; the reason it failed, or None."""
    folder = sweep.folder(v)
    state = _state(folder)
    for k, step in enumerate(v.steps):
        if k < state["steps_done"]:
            continue
        print(f"[sweep] {v.name}: step {k + 1}/{len(v.steps)}: migrl {shlex.join(step)}", file=sys.stderr, flush=True)
        code = _call([*launcher, *step])
        if code != 0:
            return f"step {k + 1} (migrl {step[0]}) exited with {code}"
        state["steps_done"] = k + 1
        write_json_atomic(folder / "sweep_state.json", state)
    if not (folder / "eval" / "scores.json").exists():
        argv = ["eval", "--model", str(v.model), "--out", str(folder / "eval"), *sweep.eval_args]
        print(f"[sweep] {v.name}: migrl {shlex.join(argv)}", file=sys.stderr, flush=True)
        code = _call([*PYTHON_MIGRL, *argv])
        if code not in (0, 3):  # 3: scored, with bad records reported and skipped
            return f"eval exited with {code}"
    return None


def run_sweep(sweep: Sweep, launcher: list[str] | None = None, only: list[str] | None = None) -> list[dict[str, Any]]:
    failures = {}
    for v in sweep.variants:
        if only and v.name not in only:
            continue
        failures[v.name] = run_variant(sweep, v, launcher or PYTHON_MIGRL)
    return collect(sweep, failures)


# -- collecting --------------------------------------------------------------------------------------

def read_scores(folder: Path) -> dict[str, Any] | None:
    """``scores.json`` of an eval folder (or of a variant folder's ``eval/``), or None."""
    import json

    for f in (folder / "scores.json", folder / "eval" / "scores.json"):
        if f.exists():
            scores = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(scores, dict) or not isinstance(scores.get("tasks"), dict):
                raise ValueError(f"{f}: not a migrl scores file (no 'tasks' mapping)")
            return scores
    return None


def collect(sweep: Sweep, failures: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    rows = []
    for v in sweep.variants:
        scores = read_scores(sweep.folder(v))
        failed = (failures or {}).get(v.name)
        rows.append({"variant": v.name, "ablates": v.ablates, "model": v.model, "scores": scores,
                     "status": failed or ("scored" if scores else "not run")})
    return rows


def collect_folders(runs: dict[str, Path]) -> list[dict[str, Any]]:
    rows = []
    for label, folder in runs.items():
        scores = read_scores(folder)
        rows.append({"variant": label, "ablates": "", "model": None, "scores": scores,
                     "status": "scored" if scores else f"no scores.json in {folder}"})
    return rows


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table: a row per variant, the averages, then every task."""
    from migrl.data.world import TASKS  # MIG-Bench's ten, in-domain first: the paper's column order

    found: list[str] = []
    for r in rows:
        found += [t for t in (r["scores"] or {}).get("tasks", {}) if t not in found]
    tasks = [t for t in TASKS if t in found] + [t for t in found if t not in TASKS]
    head = ["variant", "ablates", *(label for _, label in SCORE_KEYS), *tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["scores"] or {}
        cells = [r["variant"], r["ablates"] if r["status"] == "scored" else f"{r['ablates']} ({r['status']})".strip()]
        cells += [_cell(s.get(k)) for k, _ in SCORE_KEYS] + [_cell(s.get("tasks", {}).get(t)) for t in tasks]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    md, js = out / "sweep.md", out / "sweep.json"
    write_text_atomic(md, sweep_table(rows))
    write_json_atomic(js, rows)
    return md, js


def parse_launcher(text: str | None) -> list[str]:
    """``--launcher "accelerate launch --config_file launch/zero3.yaml -m migrl.cli"`` -> argv prefix."""
    return shlex.split(text) if text else PYTHON_MIGRL
