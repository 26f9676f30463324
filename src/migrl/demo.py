"""``migrl demo``: the loop on the embedded default, on a CPU.

world -> evaluate the shipped tiny base -> synthesize (scripted teacher, k=4, consistency filter)
-> sft (LoRA, merge) -> evaluate -> reject -> grpo -> evaluate. Each stage runs the same code as its
own command, configured by the recipes in ``recipes/demo/``. Writes ``<out>/report.json``::

    {"seconds": total, "synthesis": {"asked": N, "kept": M},
     "stages": {"base": {"tasks", "id_avg", "ood_avg", "avg"}, "cot_sft": {...}, "rl": {...}},
     "intervals": {"base": {figure: [low, high]}, ...},
     "differences": {"cot_sft-base": {"value": {figure: d}, "interval": {figure: [low, high]}}, "rl-cot_sft": ...}}

(percent; intervals: 95% bootstrap over the test items, a difference's paired, ``migrl.scoring.intervals``).
Each stage's ID / OOD / avg is printed as soon as its evaluation ends, the table at the end. ``--until``
stops after a stage.

``--ablations`` then runs the paper's ablations (Tables 9 and 10) in miniature from the demo's files
(``migrl.ablations``) and writes ``<out>/ablations/ablations.md``; a rerun with the same settings reuses the
finished demo and continues the ablations where they stopped.

``--family qwen3-vl`` runs it on a tiny Qwen3-VL base (``--base FOLDER``, else the shipped
``assets/tiny-base-qwen3-vl``): the world's marked boxes and the synthesized targets are then written in the
base's own space and image setting ([0, 1000] of each image; 32-px image tokens), read from its folder as
every stage reads them.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from migrl.bad_records import OptionError
from migrl.jsonl import write_json_atomic
from migrl.models.family import DEFAULT_TINY_FAMILY
from migrl.report.tables import difference_line, stage_line, stage_table
from migrl.run_identity import StaleRunError

T = TypeVar("T")

REPORT_KEYS = ("tasks", "id_avg", "ood_avg", "avg")
RECIPES = Path(__file__).resolve().parent / "recipes" / "demo"  # shipped in the package: a wheel has them too
STAGES = ("base", "cot_sft", "rl")
# The reference run of each family's demo, whose figures the README prints: the final table shows them beside a
# run of the same settings (tests/test_demo_reference.py holds the README to this file).
REFERENCE = RECIPES / "reference.json"


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    base: str | None = None  # the base model folder; None = the shipped tiny base
    per_task: int = 200  # test items per task: one item is 0.5 points of a task (RL moves the average by tenths)
    train_per_task: int = 150  # training items per in-domain task (the synthesis pool)
    rl_per_task: int = 150  # RL pool items per in-domain task (before rejection sampling; ~1 in 5 is kept)
    sft_max_steps: int = 0  # 0 = the demo recipe's
    grpo_max_steps: int = 0
    seed: int = 0
    batch_size: int = 64
    until: str = "rl"  # the last stage to run: base, cot_sft or rl
    report_to: str = ""  # the trainers' loggers (tensorboard, wandb, ...); "" = the demo recipes' (none)
    family: str = DEFAULT_TINY_FAMILY  # the tiny base's family (migrl.models.family.TINY_FAMILIES): which shipped base
    ablations: bool = False  # then the paper's ablations in miniature (migrl.ablations), resumable


def _shown(folder: Path) -> str:
    """A folder as the user would type it: relative to the working directory when inside it."""
    rel = os.path.relpath(folder)
    return folder.as_posix() if rel.startswith("..") else Path(rel).as_posix()


def resolve_base(cfg: DemoConfig) -> str | None:
    """The base folder the stages run on: ``base``, which must be of ``family`` where it is a tiny family's; else
    the family's shipped base (None for the default family: every stage's own default, the shipped tiny base)."""
    from migrl.models.family import TINY_FAMILIES, family_of
    from migrl.models.loading import resolve_model_path, shipped_base

    family = TINY_FAMILIES[cfg.family]
    if cfg.base:
        found = family_of(resolve_model_path(cfg.base))
        names = {f: n for n, f in TINY_FAMILIES.items()}
        if found in names and found is not family:
            raise OptionError(f"--base {cfg.base} is a {found.name} model, not {family.name}: pass --family {names[found]}")
        return cfg.base
    if cfg.family == DEFAULT_TINY_FAMILY:
        return None
    folder = shipped_base(cfg.family)
    if not (folder / "config.json").is_file():
        raise OptionError(f"no {family.name} tiny base is shipped at {_shown(folder)}: run `migrl pretrain-base --family "
                          f"{cfg.family} --out {_shown(folder)}` first, or pass --base FOLDER")
    return str(folder)


def readme_reference(settings: dict[str, Any]) -> dict[str, Any] | None:
    """The README's reference run of these demo settings (its ``measured``, ``stages``), or None: another family,
    item count, seed or base has no reference to compare with."""
    import json

    run = json.loads(REFERENCE.read_text(encoding="utf-8")).get(settings.get("family", ""))
    def same(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if k != "until"}  # a shorter run shows the stages it has
    return run if run and same(run["settings"]) == same(settings) else None


def _stage_scores(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores[k] for k in REPORT_KEYS}


def demo_recipe(name: str, family: str = DEFAULT_TINY_FAMILY) -> Path:
    """The demo's recipe of a stage: the family's own (``recipes/demo/<family>/``, where its tiny base needs
    another setting; it ``extends`` the shared one) or the shared one."""
    own = RECIPES / family / f"{name}.yaml"
    return own if own.is_file() else RECIPES / f"{name}.yaml"


def _recipe(name: str, family: str, **overrides: Any) -> list[str]:
    """Command-line arguments for a TRL-configured stage: the demo recipe plus overrides."""
    from migrl.recipe import recipe_argv

    return recipe_argv(demo_recipe(name, family), **overrides)


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        if cfg.ablations and cfg.until != "rl":
            raise OptionError("--ablations needs the whole demo (--until rl): they start from its models and data")
        self.base = resolve_base(cfg)  # before anything is written: a missing base stops the demo here
        self.out = Path(cfg.out)
        self.start = time.time()
        self.report: dict[str, Any] = {"seconds": 0.0, "stages": {}}
        self.outcomes: dict[str, dict[str, Any]] = {}  # per stage: item -> [task, right], for the paired intervals

    def reporting(self) -> dict[str, str]:
        return {"report_to": self.cfg.report_to} if self.cfg.report_to else {}

    def say(self, message: str) -> None:
        print(f"[demo {time.time() - self.start:5.0f} s] {message}", flush=True)

    def save(self) -> None:
        self.report["seconds"] = round(time.time() - self.start, 1)
        write_json_atomic(self.out / "report.json", self.report)

    def resumed(self, out: Path, run: Callable[[], T]) -> T:
        """Run a generating stage; its log is resumed only when the same model wrote it (a rerun of the
        demo retrains, and a retrained or other base model must not inherit the old answers)."""
        try:
            return run()
        except StaleRunError:
            self.say(f"{out} holds another model's answers; that stage starts again")
            shutil.rmtree(out)
            return run()

    def evaluate(self, stage: str, model: str | None, test: Path) -> None:
        from migrl.stages.evaluate import EvalConfig, evaluate

        from migrl.data.world import ID_TASKS
        from migrl.scoring.intervals import intervals

        self.say(f"evaluating {stage}")
        cfg = EvalConfig(model=model, data=str(test), out=str(self.out / "eval" / stage), batch_size=self.cfg.batch_size)
        scores = self.resumed(Path(cfg.out), lambda: evaluate(cfg))
        self.outcomes[stage] = scores["per_item"]
        self.report["stages"][stage] = _stage_scores(scores)
        self.report.setdefault("intervals", {})[stage] = intervals(scores["per_item"], ID_TASKS, seed=self.cfg.seed)
        self.say(stage_line(stage, self.report["stages"][stage], self.report["intervals"][stage]))
        self.save()

    def write_html(self, test: Path) -> Path:
        """``migrl report`` on the stages' evaluations: tables, the paper beside them, box pictures."""
        from migrl.report.build import write_report

        runs = {stage: self.out / "eval" / stage for stage in STAGES if stage in self.report["stages"]}
        _, page = write_report(runs, test, self.out / "report")
        return page

    def compare(self) -> None:
        """Each stage against the one before it, on the same items: the difference and its paired interval."""
        from migrl.data.world import ID_TASKS
        from migrl.scoring.intervals import intervals, point

        done = [s for s in STAGES if s in self.outcomes]
        for before, after in zip(done, done[1:]):
            a, b = self.outcomes[before], self.outcomes[after]
            self.report.setdefault("differences", {})[f"{after}-{before}"] = {
                "value": point(a, ID_TASKS, b), "interval": intervals(a, ID_TASKS, b, seed=self.cfg.seed)}

    def student_space(self) -> Any:
        """The space and image setting the base answers in, as its folder says (family, processor): the world's
        marked boxes and the synthesized targets are written in it."""
        from migrl.answer_space import AnswerSpace, family_coords, resolve_sizing
        from migrl.models.loading import resolve_model_path

        folder = resolve_model_path(self.base)
        return AnswerSpace(family_coords(folder), resolve_sizing("migrl demo", folder))

    def run(self) -> dict[str, Any]:
        from functools import partial

        from migrl.data.world import ID_TASKS, TRAINING_SOURCES, write_split

        cfg = self.cfg
        test = self.out / "world" / "test.jsonl"
        if cfg.ablations and self.finished():
            self.say(f"{self.out} holds a finished demo of these settings; on to the ablations")
            return self.ablate(test)
        self.report["settings"] = self.settings()
        self.space = self.student_space()
        world = partial(write_split, sizing=self.space.sizing, coords=self.space.coords)
        self.say(f"writing the world to {self.out / 'world'}")
        test = world(self.out / "world", "test", cfg.per_task, seed=cfg.seed)
        self.evaluate("base", self.base, test)
        if cfg.until != "base":
            train = world(self.out / "world", "train", cfg.train_per_task, seed=cfg.seed, tasks=ID_TASKS + TRAINING_SOURCES)
            sft_model = self.cold_start(train)
            self.evaluate("cot_sft", str(sft_model), test)
            if cfg.until == "rl":
                pool = world(self.out / "world_rl", "train", cfg.rl_per_task, seed=cfg.seed + 1, tasks=ID_TASKS)
                rl_model = self.reinforce(sft_model, pool)
                self.evaluate("rl", str(rl_model), test)
        self.compare()
        self.save()
        page = self.write_html(test)
        print()
        reference = readme_reference(self.settings())
        print(stage_table(self.report["stages"], self.report.get("intervals", {}),
                          reference=reference["stages"] if reference else None))
        if reference:
            print(f"(README column: the README's run of these settings, {reference['measured']}; figures may differ "
                  "a little on another machine's CPU)")
        for name, diff in self.report.get("differences", {}).items():
            print(difference_line(name, diff))
        print(f"\n[demo] {self.report['seconds']:.0f} s; report: {page} (figures: {self.out / 'report.json'})")
        return self.ablate(test) if cfg.ablations else self.report

    def settings(self) -> dict[str, Any]:
        """What makes a demo run what it is: its options and the training recipes it runs, merged (a finished run
        is reused by --ablations, and the README's figures shown beside it, only when these match)."""
        from dataclasses import asdict

        from migrl.recipe import load_recipe

        own = {k: v for k, v in asdict(self.cfg).items() if k not in ("ablations", "out", "report_to")}
        return {**own, "recipes": {name: load_recipe(demo_recipe(name, self.cfg.family)) for name in ("sft", "grpo")}}

    def finished(self) -> bool:
        """A complete demo of these settings is in ``out``: its report, every stage scored, the RL model saved."""
        import json

        path = self.out / "report.json"
        if not path.is_file():
            return False
        report = json.loads(path.read_text(encoding="utf-8"))
        done = report.get("settings") == self.settings() and all(s in report.get("stages", {}) for s in STAGES)
        if done and (self.out / "grpo" / "config.json").is_file():
            self.report = report
            return True
        return False

    def ablate(self, test: Path) -> dict[str, Any]:
        """The paper's ablations in miniature from this demo's files; their table in ``<out>/ablations``."""
        from migrl.ablations import ablation_rows, ablation_sweep, ablation_table, read_demo_scores, run_ablations
        from migrl.jsonl import write_text_atomic
        from migrl.models.loading import resolve_model_path, shipped_base
        from migrl.tasks import ID_TASKS

        base = resolve_model_path(self.base) if self.base else shipped_base(self.cfg.family)
        steps = {"sft": self.cfg.sft_max_steps, "grpo": self.cfg.grpo_max_steps}
        unfiltered = bool(self.report.get("rejection", {}).get("fallback"))  # reinforce() says so where it fell back
        sweep = ablation_sweep(self.out, base, self.cfg.seed, test, self.cfg.batch_size, self.cfg.family,
                               self.reporting(), steps, unfiltered)
        self.say(f"ablations: {len(sweep.variants)} variants in {sweep.out} (each trains, then is scored)")
        scores = {**read_demo_scores(self.out, STAGES), **run_ablations(sweep)}
        rows = ablation_rows(scores, list(ID_TASKS), self.cfg.seed)
        table = ablation_table(rows)
        write_text_atomic(sweep.out / "ablations.md", table)
        self.report["ablations"] = rows
        self.save()
        print("\n" + table)
        print(f"[demo] {self.report['seconds']:.0f} s; ablations: {sweep.out / 'ablations.md'}")
        return self.report

    def cold_start(self, train: Path) -> Path:
        from migrl.engines.scripted import ScriptedTeacher
        from migrl.recipe import stage_config
        from migrl.stages.sft import SFTStageConfig, train_sft
        from migrl.stages.synthesize import SynthesizeConfig, synthesize

        self.say("synthesizing chains of thought with the scripted teacher (k=4, keep items right 4/4)")
        synth_cfg = SynthesizeConfig(data=str(train), out=str(self.out / "synthesize"))
        teacher, space = ScriptedTeacher(seed=self.cfg.seed), self.space  # targets in the base folder's space
        stats = self.resumed(Path(synth_cfg.out), lambda: synthesize(synth_cfg, teacher, space.coords, space.sizing))
        self.report["synthesis"] = {"asked": stats["asked"], "kept": stats["kept"]}
        self.save()
        self.say(f"kept {stats['kept']} of {stats['asked']}; LoRA cold start")
        out = self.out / "sft"
        steps = {"max_steps": self.cfg.sft_max_steps} if self.cfg.sft_max_steps else {}
        base = {"model_name_or_path": self.base} if self.base else {}
        args = _recipe("sft", self.cfg.family, data=self.out / "synthesize" / "sft.jsonl", output_dir=out, seed=self.cfg.seed, **steps, **base,
                       **self.reporting())
        sft_cfg = stage_config(SFTStageConfig, "migrl demo (sft)", args)
        train_sft(sft_cfg)
        return out

    def reinforce(self, sft_model: Path, pool: Path) -> Path:
        from migrl.stages.grpo import GRPOStageConfig, train_grpo
        from migrl.recipe import stage_config
        from migrl.stages.reject import RejectConfig, reject

        grpo_cfg = stage_config(GRPOStageConfig, "migrl demo (grpo)", _recipe(
            "grpo", self.cfg.family, model_name_or_path=sft_model, data=self.out / "reject" / "rl.jsonl", output_dir=self.out / "grpo",
            seed=self.cfg.seed, **({"max_steps": self.cfg.grpo_max_steps} if self.cfg.grpo_max_steps else {}),
            **self.reporting()))
        self.say("rejection sampling: the SFT model answers each RL item 4 times; mixed items are kept")
        reject_cfg = RejectConfig(
            model=str(sft_model), data=str(pool), out=str(self.out / "reject"), k=4,
            temperature=grpo_cfg.temperature, max_new_tokens=grpo_cfg.max_completion_length, batch_size=64,
        )
        stats = self.resumed(Path(reject_cfg.out), lambda: reject(reject_cfg))
        self.report["rejection"] = {k: stats[k] for k in ("asked", "kept", "all_right", "all_wrong")}
        if not stats["kept"]:
            # Nothing mixed: GRPO would see only zero-variance groups. Train on the whole pool instead
            # (the paper's "no rejection sampling" ablation) and say so in the report.
            self.say("rejection sampling kept no item; GRPO on the unfiltered pool")
            self.report["rejection"]["fallback"] = "unfiltered pool"
            grpo_cfg.data = str(pool)
        self.save()
        self.say(f"kept {stats['kept']} of {stats['asked']}; GRPO")
        train_grpo(grpo_cfg)
        return self.out / "grpo"


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    return Demo(cfg).run()
