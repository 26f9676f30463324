"""``migrl demo --ablations``: the paper's ablations (Tables 9 and 10) in miniature, on the demo's world.

Each ablation changes one thing of the demo's recipe (``recipes/demo/ablations/*.yaml``) and starts from what
the demo made: the tiny base, the synthesized chains of thought, the CoT-SFT model, the items rejection
sampling kept, the unfiltered RL pool. They run as a ``migrl sweep`` (one subprocess per stage, scored on the
demo's test items), so a killed run continues where it stopped. The demo's own stages fill the rows they stand
for (base, CoT-SFT with LoRA, the full recipe).

The table puts each row beside the paper's: its figures with their 95% intervals, its difference from the
full recipe with the paired interval on the same items, the paper's difference, and whether the signs agree
(``migrl.scoring.intervals``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrl.recipe import recipe_argv
from migrl.report.paper import TABLE_9, TABLE_10, PaperTable
from migrl.sweep import Sweep, Variant, read_scores, run_sweep, step_ablates

RECIPES = Path(__file__).resolve().parent / "recipes" / "demo" / "ablations"
FIGURES = (("id_avg", "ID"), ("ood_avg", "OOD"), ("avg", "avg"))


@dataclass(frozen=True)
class Ablation:
    name: str  # its folder under <demo out>/ablations, and its recipe's name
    stage: str  # the migrl command that trains it: sft or grpo
    start: str  # the model it starts from: "base" or "sft" (the demo's CoT-SFT model)
    data: str  # what it trains on: "synthesis" (sft.jsonl), "rejected" (rl.jsonl) or "pool" (unfiltered)


@dataclass(frozen=True)
class Row:
    label: str  # as the table prints it
    run: str  # a demo stage (base, cot_sft, rl) or an ablation's name
    paper: str  # the paper's row it stands for


ABLATIONS = (
    Ablation("no_cold_start", "grpo", "base", "rejected"),
    Ablation("sft_full", "sft", "base", "synthesis"),
    Ablation("no_rejection_sampling", "grpo", "sft", "pool"),
    Ablation("no_kl", "grpo", "sft", "rejected"),
    Ablation("kl_1e-1", "grpo", "sft", "rejected"),
    Ablation("kl_1e-2", "grpo", "sft", "rejected"),
    Ablation("kl_1e-4", "grpo", "sft", "rejected"),
    Ablation("kl_1e-5", "grpo", "sft", "rejected"),
)

# The paper's rows in its order; each is compared with "rl" (the demo's full recipe; its beta is the paper's 1e-3).
TABLES: tuple[tuple[PaperTable, str, tuple[Row, ...]], ...] = (
    (TABLE_9, "Ours-Full", (
        Row("base", "base", "Qwen2.5-VL-7B"),
        Row("w/o cold start (RL only)", "no_cold_start", "w/o CS (RL only)"),
        Row("CoT-SFT (full)", "sft_full", "CoT-SFT (Full)"),
        Row("CoT-SFT (LoRA)", "cot_sft", "CoT-SFT (LoRA)"),
        Row("w/o rejection sampling", "no_rejection_sampling", "w/o RS (CS + RL)"),
        Row("full recipe", "rl", "Ours-Full"),
    )),
    (TABLE_10, "beta=1e-3 (Ours)", (
        Row("w/o KL", "no_kl", "w/o KL"),
        Row("beta 1e-1", "kl_1e-1", "beta=1e-1"),
        Row("beta 1e-2", "kl_1e-2", "beta=1e-2"),
        Row("beta 1e-3 (the demo's)", "rl", "beta=1e-3 (Ours)"),
        Row("beta 1e-4", "kl_1e-4", "beta=1e-4"),
        Row("beta 1e-5", "kl_1e-5", "beta=1e-5"),
    )),
)


def family_fields(stage: str, family: str) -> dict[str, Any]:
    """What the family's own demo recipe of ``stage`` changes (``recipes/demo/<family>/``): the ablations, which
    extend the shared recipes, take it too, so that each still differs from the demo's run in one thing only."""
    from migrl.demo import RECIPES as DEMO_RECIPES, demo_recipe
    from migrl.recipe import META_KEYS, load_recipe

    own, shared = demo_recipe(stage, family), DEMO_RECIPES / f"{stage}.yaml"
    if own == shared:
        return {}
    mine, theirs = load_recipe(own), load_recipe(shared)
    return {k: v for k, v in mine.items() if k not in META_KEYS and theirs.get(k) != v}


def ablation_sweep(demo_out: Path, base: Path, seed: int, test: Path, batch_size: int, family: str,
                   extra: dict[str, Any] | None = None, max_steps: dict[str, int] | None = None,
                   unfiltered: bool = False) -> Sweep:
    """The ablations as a sweep in ``<demo_out>/ablations``: each variant's one training step, from the demo's
    files, then ``migrl eval`` on the demo's test items. ``extra``: fields every step gets (report_to);
    ``max_steps``: a stage's steps where the demo overrides its recipe's; ``unfiltered``: the demo's GRPO trained on
    the unfiltered pool (rejection kept no item), and so do the ablations that stand for its data."""
    out = demo_out / "ablations"
    starts = {"base": base, "sft": demo_out / "sft"}
    data = {"synthesis": demo_out / "synthesize" / "sft.jsonl", "rejected": demo_out / "reject" / "rl.jsonl",
            "pool": demo_out / "world_rl" / "train.jsonl"}
    if unfiltered:
        data["rejected"] = data["pool"]
    variants = []
    for a in ABLATIONS:
        model = out / a.name / "model"
        steps = {"max_steps": max_steps[a.stage]} if (max_steps or {}).get(a.stage) else {}
        fields = {**family_fields(a.stage, family), "model_name_or_path": starts[a.start], "data": data[a.data],
                  "output_dir": model, "seed": seed, **(extra or {}), **steps}
        step = [a.stage, *recipe_argv(RECIPES / f"{a.name}.yaml", **fields)]
        variants.append(Variant(a.name, [step], str(model), step_ablates(step)))
    return Sweep(out, ["--data", str(test), "--batch-size", str(batch_size)], variants)


def run_ablations(sweep: Sweep) -> dict[str, dict[str, Any] | None]:
    """Run what is left of the sweep; every ablation's scores (None where it failed or did not run)."""
    rows = run_sweep(sweep)
    return {r["variant"]: r["scores"] for r in rows}


def _signs(ours: float, bounds: list[float], paper: float) -> str:
    if bounds[0] <= 0 <= bounds[1]:
        return "within noise"
    if abs(paper) < 1e-9:
        return "-"
    return "as the paper" if (ours > 0) == (paper > 0) else "differs from the paper"


def ablation_rows(scores: dict[str, dict[str, Any] | None], id_tasks: list[str], seed: int) -> list[dict[str, Any]]:
    """Every row of both tables: our figures, intervals, the paired difference from the full recipe, the paper's."""
    from migrl.scoring.intervals import intervals, point

    full = scores.get("rl")
    out = []
    for table, paper_full, rows in TABLES:
        for row in rows:
            mine = scores.get(row.run)
            paper_avg, paper_full_avg = table.row(row.paper)["avg"], table.row(paper_full)["avg"]
            entry: dict[str, Any] = {"table": table.name, "row": row.label, "run": row.run, "paper_row": row.paper,
                                     "paper_avg": paper_avg, "paper_diff": round(paper_avg - paper_full_avg, 2)}
            if mine is not None:
                entry["value"] = {k: mine[k] for k, _ in FIGURES}
                entry["interval"] = {k: v for k, v in intervals(mine["per_item"], id_tasks, seed=seed).items()
                                     if k in entry["value"]}
                if full is not None and row.run != "rl":
                    diff = point(full["per_item"], id_tasks, mine["per_item"])["avg"]
                    bounds = intervals(full["per_item"], id_tasks, mine["per_item"], seed=seed)["avg"]
                    entry["diff"] = {"avg": diff, "interval": bounds, "signs": _signs(diff, bounds, entry["paper_diff"])}
            out.append(entry)
    return out


def _figure(entry: dict[str, Any], key: str) -> str:
    if "value" not in entry:
        return "not run"
    low, high = entry["interval"][key]
    return f"{entry['value'][key]:.2f} [{low:.2f}, {high:.2f}]"


def _difference(entry: dict[str, Any]) -> str:
    if "diff" not in entry:
        return "(the reference)" if entry["run"] == "rl" else "-"
    d = entry["diff"]
    return f"{d['avg']:+.2f} [{d['interval'][0]:+.2f}, {d['interval'][1]:+.2f}]"


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one table per paper table, each row beside the paper's."""
    head = ["row", "ID", "OOD", "avg", "avg - full recipe", "paper avg", "paper - its full", "signs"]
    lines: list[str] = []
    for name in dict.fromkeys(r["table"] for r in rows):
        lines += [f"{name} in miniature (Acc@0.5 %, 95% intervals; differences paired on the same items)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in (r for r in rows if r["table"] == name):
            cells = [r["row"], *(_figure(r, k) for k, _ in FIGURES), _difference(r), f"{r['paper_avg']:.2f}",
                     f"{r['paper_diff']:+.2f}", r.get("diff", {}).get("signs", "-")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def read_demo_scores(demo_out: Path, stages: tuple[str, ...]) -> dict[str, dict[str, Any] | None]:
    """The demo's own stages' scores.json (per_item included), as the ablation rows read them."""
    return {stage: read_scores(demo_out / "eval" / stage) for stage in stages}

