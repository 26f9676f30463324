"""The ``migrl`` command: one subcommand per stage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from migrl.bad_records import ExitCode, OptionError, exit_code
from migrl.benchmarks import NAMES as BENCHMARK_NAMES
from migrl.configs import (
    COORDS_HELP,
    SPACES,
    STRICT_HELP,
    EvalConfig,
    ImageSetting,
    PretrainConfig,
    RejectConfig,
    RemoteConfig,
    ScoreConfig,
    SynthesizeConfig,
    TeacherConfig,
)
from migrl.models.family import TINY_FAMILIES
from migrl.options import add_options, from_args
from migrl.boxes import Space
from migrl.records import RecordError
from migrl.run_identity import StaleRunError



def _answer_space(args: argparse.Namespace, command: str, coords: str | None = None):
    """The space and image setting of the answers a command reads (one rule: ``migrl.answer_space``);
    ``coords`` where the command's option has another name (synthesize's --student-coords)."""
    from migrl.answer_space import resolve_answer_space

    coords = coords or getattr(args, "coords", None)
    return resolve_answer_space(command, args.model, coords, args.min_pixels, args.max_pixels)


def cmd_world(args: argparse.Namespace) -> int:
    from migrl.answer_space import resolve_coords, resolve_sizing
    from migrl.data.world import TASKS, write_split
    from migrl.models.loading import resolve_model_path

    tasks = tuple(args.tasks.split(",")) if args.tasks else TASKS
    # marked boxes in the questions are written in the student's space, as eval's default model reads them
    model = resolve_model_path(args.model)
    coords = resolve_coords("migrl world", model, args.coords)
    sizing = resolve_sizing("migrl world", model, args.min_pixels, args.max_pixels)
    for split, n in (("train", args.train), ("test", args.test)):
        if n:
            path = write_split(args.out, split, n, seed=args.seed, tasks=tasks, sizing=sizing, coords=coords)
            print(f"wrote {path} ({n} per task x {len(tasks)} tasks)")
    return 0


def cmd_pretrain_base(args: argparse.Namespace) -> int:
    from migrl.stages.pretrain import pretrain

    summary = pretrain(from_args(PretrainConfig, args))
    print(json.dumps(summary["final_skills"], indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from migrl.stages.evaluate import evaluate

    cfg = from_args(EvalConfig, args, remote=remote_config(args))
    scores = evaluate(cfg)
    if "shard" in scores:  # this shard only generated: the merging run scores
        print(json.dumps(scores))
        return 0
    print(json.dumps({k: scores[k] for k in ("tasks", "avg", "id_avg", "ood_avg", "protocol") if k in scores}, indent=2))
    return exit_code(scores["bad_records"], args.out)


def cmd_score(args: argparse.Namespace) -> int:
    from migrl.stages.score import check, protocol_line, score

    cfg = from_args(ScoreConfig, args)
    check(cfg)
    space = _answer_space(args, "migrl score")  # before reading anything: a missing setting is the user's to give
    scored = score(cfg, space)
    if not args.out:
        for line in scored.printable():
            print(line, file=sys.stderr)
    print(protocol_line(args.benchmark, scored.result), file=sys.stderr)
    print(json.dumps(scored.result))
    return exit_code(scored.fixable, args.out)  # 3 for what the user can fix, not for the release's faults


def cmd_prepare(args: argparse.Namespace) -> int:
    from migrl.sources.prepare import prepare

    stats = prepare(args.config, args.out, seed=args.seed, strict=args.strict)
    pools = stats.get("pools", {})
    print(json.dumps({name: {k: pool.get(k) for k in ("written", "short")} for name, pool in pools.items()}, indent=2))
    return exit_code(stats["bad_records"], args.out)


def _labelled_runs(specs: list[str]) -> dict[str, Path]:
    """``--run LABEL=EVAL_FOLDER`` options (report, sweep) as {label: folder}."""
    runs = {}
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"--run expects LABEL=EVAL_FOLDER, got {spec!r}")
        runs[label] = Path(folder)
    return runs


def cmd_report(args: argparse.Namespace) -> int:
    from migrl.report.build import runs_answer_space, write_report

    runs = _labelled_runs(args.run)
    given = args.model or args.coords or args.max_pixels or args.min_pixels
    space = _answer_space(args, "migrl report") if given else runs_answer_space(runs)
    md, html = write_report(runs, Path(args.data), Path(args.out), benchmark=args.benchmark,
                            pictures_per_task=args.pictures_per_task, coords=space.coords, sizing=space.sizing,
                            image_root=Path(args.image_root) if args.image_root else None)
    print(f"wrote {md} and {html}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from migrl.plan import plan_table

    print(plan_table(args.model, gpus=args.gpus, gpu_gb=args.gpu_gb, prompt_tokens=args.prompt_tokens,
                     completion_tokens=args.completion_tokens, lora_r=args.lora_r))
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from migrl.records import require_file
    from migrl.stages.synthesize import synthesize

    require_file(args.data, "--data")
    student = _answer_space(args, "migrl synthesize", args.student_coords)  # checked before the teacher starts
    cfg = from_args(SynthesizeConfig, args)
    teacher_sizing = _teacher_sizing(args)
    if args.teacher == "scripted":
        from migrl.engines.scripted import ScriptedTeacher

        teacher = ScriptedTeacher(seed=args.seed, sizing=teacher_sizing, coords=Space(args.teacher_coords or Space.QWEN25.value))
    elif args.teacher == "openai":
        from migrl.engines.teachers import OpenAITeacher

        teacher = OpenAITeacher.from_args(args, teacher_sizing)
    else:
        from migrl.engines.teachers import HFTeacher

        teacher = HFTeacher.from_args(args)
    stats = synthesize(cfg, teacher, student.coords, student.sizing)
    if "shard" in stats:
        print(json.dumps(stats))
        return 0
    print(json.dumps({k: stats[k] for k in ("asked", "kept", "dropped")}))
    return exit_code(stats["bad_records"], args.out)


def _teacher_sizing(args: argparse.Namespace):
    """How the teacher resizes images: its family's token size (from --teacher-processor or a local
    --teacher-model folder; else Qwen2.5-VL's, the paper's 72B teacher) and budget, --teacher-min/max-pixels
    over the family's released one."""
    from migrl.images import ImageSizing
    from migrl.models.family import DEFAULT_FAMILY, family_of

    folder = next((f for f in (args.teacher_processor, args.teacher_model) if f and Path(f, "config.json").is_file()), None)
    family = (family_of(folder) if folder else None) or DEFAULT_FAMILY
    low, high = family.released_budget
    return ImageSizing(args.teacher_min_pixels or low, args.teacher_max_pixels or high, family.geometry.factor)


def cmd_reject(args: argparse.Namespace) -> int:
    from migrl.stages.reject import reject

    cfg = from_args(RejectConfig, args, remote=remote_config(args))
    stats = reject(cfg)
    if "shard" in stats:
        print(json.dumps(stats))
        return 0
    print(json.dumps({k: stats[k] for k in ("asked", "kept", "all_right", "all_wrong")}))
    return exit_code(stats["bad_records"], args.out)


def cmd_revos_from_masks(args: argparse.Namespace) -> int:
    from migrl.benchmarks.revos_masks import build

    summary = build(args.expressions, args.masks, args.frames, args.out)
    print(json.dumps({"items": summary["items"], "out": summary["out"]}))
    return exit_code(summary["bad_records"], Path(args.out).parent)


def cmd_serve_flags(args: argparse.Namespace) -> int:
    from migrl.engines.serving import vllm_serve_command
    from migrl.images import ImageSizing

    from migrl.models.family import family_of

    family = family_of(args.model) if Path(args.model, "config.json").is_file() else None
    if args.min_pixels or args.max_pixels:  # a model whose folder is not here (a teacher): its setting by hand
        sizing = ImageSizing(args.min_pixels or ImageSizing.min_pixels, args.max_pixels or ImageSizing.max_pixels)
    else:
        from migrl.answer_space import resolve_sizing

        sizing = resolve_sizing("migrl serve-flags", args.model)
    print(vllm_serve_command(args.model, sizing, args.max_images, family))
    return 0


def add_served_options(p: argparse.ArgumentParser) -> None:
    """--engine openai: generate with served copies of --model (vllm serve ...; `migrl serve-flags`)."""
    p.add_argument("--engine", default="hf", choices=["hf", "openai"],
                   help="hf: the model folder, here; openai: the same model behind OpenAI-compatible servers (--base-url)")
    add_options(p, RemoteConfig)


def remote_config(args: argparse.Namespace):
    if args.engine != "openai":
        return None
    if not args.base_urls:
        raise SystemExit("--engine openai needs --base-url (one per server)")
    return from_args(RemoteConfig, args, model=args.served_model or str(args.model))


def cmd_demo(args: argparse.Namespace) -> int:
    from migrl.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=args.out, base=args.base, per_task=args.per_task, train_per_task=args.train_per_task, seed=args.seed,
                        batch_size=args.batch_size, until=args.until, rl_per_task=args.rl_per_task,
                        sft_max_steps=args.sft_max_steps, grpo_max_steps=args.grpo_max_steps, report_to=args.report_to,
                        family=args.family, ablations=args.ablations))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from migrl.sweep import collect, collect_folders, load_sweep, parse_launcher, run_sweep, sweep_table, write_sweep

    if args.config:
        sweep = load_sweep(args.config)
        rows = collect(sweep) if args.collect_only else run_sweep(sweep, parse_launcher(args.launcher), args.only)
        out = Path(args.out) if args.out else sweep.out
    elif args.run:
        rows, out = collect_folders(_labelled_runs(args.run)), Path(args.out or "runs/sweep")
    else:
        raise SystemExit("migrl sweep needs --config SWEEP.yaml or --run LABEL=EVAL_FOLDER ...")
    md, js = write_sweep(rows, out)
    print(sweep_table(rows), end="")
    print(f"wrote {md} and {js}", file=sys.stderr)
    return ExitCode.OK if all(r["status"] == "scored" for r in rows) else ExitCode.FAILED


def _demo_default(field: str) -> object:
    from migrl.demo import DemoConfig  # light: no torch

    return getattr(DemoConfig, field)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless there is none to show or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        flag = action.nargs == 0  # --strict, --no-cot: the flag's presence is the value, no default to show
        if flag or action.default in (None, "", ()) or action.default == argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching: ``--limit 10`` must not be taken as ``--limit-per-task 10``; help
    that shows each default; ``--out`` / ``--model`` also spelled as TRL's ``--output_dir`` /
    ``--model_name_or_path`` (what sft and grpo take), so one spelling works for every command.
    Subcommand parsers are made of this class too (argparse uses the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)  # every option shows its default
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if "help" not in kwargs and kwargs.get("default") is not None and kwargs.get("action") not in ("store_true", "store_false"):
            kwargs["help"] = "(default: %(default)s)"  # argparse shows no default for an option without help
        return super().add_argument(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="migrl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("sft", help="cold-start SFT (LoRA, frozen vision, merge): migrl sft --config recipes/demo/sft.yaml [--field value ...]")
    sub.add_parser("grpo", help="GRPO with IoU + format rewards: migrl grpo --config recipes/demo/grpo.yaml [--field value ...]")

    w = sub.add_parser("world", help="write the embedded multi-image world (records + images)")
    w.add_argument("--out", "--output_dir", default="runs/world")
    w.add_argument("--train", type=int, default=200, help="items per task in the train split")
    w.add_argument("--test", type=int, default=50, help="items per task in the test split")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--tasks", default="", help="comma-separated subset of tasks")
    w.add_argument("--model", "--model_name_or_path", default=None,
                   help="the student: the marked boxes in questions are written in its space and image setting "
                        "(default: the shipped tiny base, as for migrl eval)")
    w.add_argument("--coords", default=None, choices=SPACES, help=COORDS_HELP)
    add_options(w, ImageSetting)
    w.set_defaults(func=cmd_world)

    b = sub.add_parser("pretrain-base", help="pretrain the tiny base model from scratch (~30 min on 2 cores; resumable)")
    add_options(b, PretrainConfig)
    b.set_defaults(func=cmd_pretrain_base)

    e = sub.add_parser("eval", help="generate answers for a records file or a benchmark and score them (resumable)")
    add_options(e, EvalConfig)
    add_served_options(e)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score", help="score a predictions JSONL without a model")
    add_options(s, ScoreConfig)
    s.add_argument("--model", "--model_name_or_path", default=None,
                   help="the folder of the model that wrote the predictions: its family and image setting")
    s.add_argument("--coords", default=None, choices=SPACES, help=COORDS_HELP)
    add_options(s, ImageSetting)
    s.set_defaults(func=cmd_score)

    rp = sub.add_parser("report", help="Markdown + HTML report: per-task tables, the paper beside ours, box pictures")
    rp.add_argument("--run", action="append", required=True, help="LABEL=EVAL_FOLDER (scores.json + predictions.jsonl); repeat")
    rp.add_argument("--data", required=True, help="what the runs were evaluated on: records JSONL or the benchmark's annotation file")
    rp.add_argument("--image-root", default=None, help="folder the data's image paths are relative to (as for eval)")
    rp.add_argument("--out", "--output_dir", default="runs/report")
    rp.add_argument("--benchmark", default="world", choices=BENCHMARK_NAMES, help="which paper table to put beside ours")
    rp.add_argument("--pictures-per-task", type=int, default=2)
    rp.add_argument("--coords", default=None, choices=SPACES, help=COORDS_HELP + "; default: what eval stored in the runs")
    rp.add_argument("--model", "--model_name_or_path", default=None, help="the model folder the runs come from (default: the setting eval stored in each run's scores.json)")
    add_options(rp, ImageSetting)
    rp.set_defaults(func=cmd_report)

    pl = sub.add_parser("plan", help="per-GPU memory plan of the paper's SFT and GRPO for a Qwen2.5-VL or Qwen3-VL size")
    from migrl.plan import SHAPES  # light: dataclasses only

    pl.add_argument("--model", default="7b", choices=list(SHAPES),
                    help="3b/7b/32b/72b: Qwen2.5-VL; qwen3-vl-8b, qwen3-vl-30b-a3b (the MoE): Qwen3-VL")
    pl.add_argument("--gpus", type=int, default=8)
    pl.add_argument("--gpu-gb", type=float, default=80.0)
    pl.add_argument("--prompt-tokens", type=int, default=1500, help="prompt length with its image tokens")
    pl.add_argument("--completion-tokens", type=int, default=1024)
    pl.add_argument("--lora-r", type=int, default=64)
    pl.set_defaults(func=cmd_plan)

    pr = sub.add_parser("prepare", help="build the cold-start mix and the RL pool from local training sources (YAML recipe)")
    pr.add_argument("--config", required=True, help="e.g. recipes/paper/prepare.yaml")
    pr.add_argument("--out", "--output_dir", required=True)
    pr.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    pr.add_argument("--strict", action="store_true", help=STRICT_HELP)
    pr.set_defaults(func=cmd_prepare)

    y = sub.add_parser("synthesize", help="teacher CoT answers, k per item, kept when all k are right (resumable)")
    add_options(y, SynthesizeConfig)
    add_options(y, TeacherConfig)
    y.add_argument("--student-coords", default=None, choices=SPACES, help="space of the student's targets (default: --model's family)")
    y.add_argument("--model", "--model_name_or_path", default=None, help="the student model folder: its family and image setting decide the targets' space")
    add_options(y, ImageSetting)
    add_options(y, RemoteConfig, skip=("model",), base_urls="an OpenAI-compatible server of the teacher (teacher openai; "
                "default http://127.0.0.1:8000/v1); repeat for several")
    y.set_defaults(func=cmd_synthesize)

    r = sub.add_parser("reject", help="rejection sampling: keep items the SFT model answers sometimes right (resumable)")
    add_options(r, RejectConfig)
    add_served_options(r)
    r.set_defaults(func=cmd_reject)

    sf = sub.add_parser("serve-flags", help="the `vllm serve` line that resizes images as the model was trained")
    sf.add_argument("--model", "--model_name_or_path", required=True, help="model folder (its min/max pixels), or a served name with --min/--max-pixels")
    sf.add_argument("--max-images", type=int, default=8, help="images per prompt (--limit-mm-per-prompt)")
    add_options(sf, ImageSetting)
    sf.set_defaults(func=cmd_serve_flags)

    rv = sub.add_parser("revos-from-masks", help="ReVOS-grounding items from the ReVOS masks (six frames, the third grounded)")
    rv.add_argument("--expressions", required=True, help="meta_expressions_valid_.json")
    rv.add_argument("--masks", required=True, help="mask_dict.json")
    rv.add_argument("--frames", required=True, help="folder of the video frame folders")
    rv.add_argument("--out", "--output_dir", required=True, help="the items JSON to write (then: migrl eval/score --benchmark revos); "
                    "bad_records.jsonl goes beside it, so give it a folder of its own")
    rv.set_defaults(func=cmd_revos_from_masks)

    d = sub.add_parser("demo", help="the whole loop on the embedded world, on a CPU")
    d.add_argument("--out", "--output_dir", default="runs/demo")
    d.add_argument("--base", default=None, help="base model folder (default: the shipped tiny base of --family)")
    d.add_argument("--family", default=_demo_default("family"), choices=list(TINY_FAMILIES),
                   help="the tiny base's family: which shipped base, and what --base must be where it is a tiny one")
    d.add_argument("--per-task", type=int, default=_demo_default("per_task"), help="test items per task (default %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--train-per-task", type=int, default=_demo_default("train_per_task"), help="training items per in-domain task")
    d.add_argument("--batch-size", type=int, default=_demo_default("batch_size"))
    d.add_argument("--until", default="rl", choices=["base", "cot_sft", "rl"], help="the last stage to run")
    d.add_argument("--rl-per-task", type=int, default=_demo_default("rl_per_task"),
                   help="RL pool items per in-domain task (before rejection sampling)")
    d.add_argument("--sft-max-steps", type=int, default=0, help="SFT steps (0: the demo recipe's)")
    d.add_argument("--grpo-max-steps", type=int, default=0, help="GRPO steps (0: the demo recipe's)")
    d.add_argument("--report-to", default="", help="the trainers' loggers, e.g. tensorboard (default: the recipes' none)")
    d.add_argument("--ablations", action="store_true",
                   help="then the paper's ablations (Tables 9, 10) in miniature: runs/demo/ablations/ablations.md (resumable)")
    d.set_defaults(func=cmd_demo)

    sw = sub.add_parser("sweep", help="run recipe variants (the paper's ablations) and table their scores (resumable)")
    sw.add_argument("--config", default=None, help="a sweep YAML (recipes/paper/ablations/sweep.yaml)")
    sw.add_argument("--collect-only", action="store_true", help="run nothing: table the scores already there")
    sw.add_argument("--only", nargs="+", default=None, help="run only these variants")
    sw.add_argument("--launcher", default=None,
                    help='how steps are started, e.g. "accelerate launch --config_file launch/zero3.yaml -m migrl.cli"')
    sw.add_argument("--run", action="append", default=None, help="without --config: LABEL=EVAL_FOLDER to table; repeat")
    sw.add_argument("--out", "--output_dir", default=None, help="where sweep.md / sweep.json go (default: the sweep's out)")
    sw.set_defaults(func=cmd_sweep)
    return p


TRL_STAGES = {"sft", "grpo"}  # configured by a YAML recipe + command-line overrides through TRL's parser


STAGE_EXAMPLES = {
    "sft": "migrl sft --config recipes/paper/sft.yaml --model_name_or_path /models/Qwen2.5-VL-7B-Instruct --max_steps 100",
    "grpo": "migrl grpo --config recipes/paper/grpo.yaml --learning_rate 2e-5",
}


def stage_help(stage: str, config_class: type, trl_class: type) -> str:
    """``migrl sft|grpo --help``: the purpose, an example, --config first, then the fields migrl adds to
    TRL's config; ``--help-all`` gives TRL's full list (hundreds of fields)."""
    own = [f for f in dataclasses.fields(config_class) if f.name not in {g.name for g in dataclasses.fields(trl_class)}]
    lines = [f"usage: migrl {stage} --config RECIPE.yaml [--field value ...]", "",
             (config_class.__doc__ or "").strip(), "", f"example: {STAGE_EXAMPLES[stage]}", "",
             "  --config RECIPE.yaml   a recipe (recipes/paper/, recipes/demo/); every field below, or any field of "
             f"TRL's {trl_class.__name__}, can also be given on the command line and wins over the recipe", ""]
    for f in own:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  --{f.name} (default: {default})  {f.metadata.get('help', '')}".rstrip())
    lines += ["", f"`migrl {stage} --help-all`: every field of TRL's {trl_class.__name__} as well."]
    return "\n".join(lines)


def run_trl_stage(stage: str, argv: list[str]) -> int:
    from migrl.recipe import stage_config

    if stage == "sft":
        from trl import SFTConfig as trl_class

        from migrl.stages.sft import SFTStageConfig as config_class, train_sft as train
    else:
        from trl import GRPOConfig as trl_class

        from migrl.stages.grpo import GRPOStageConfig as config_class, train_grpo as train
    if "--help-all" in argv:
        argv = ["--help"]
    elif "--help" in argv or "-h" in argv:
        print(stage_help(stage, config_class, trl_class))
        return 0
    cfg = stage_config(config_class, f"migrl {stage}", argv)
    summary = train(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"}))
    return exit_code(summary["bad_records"], cfg.output_dir)


# The resumable logs of the generating commands, in their --out (eval, reject, synthesize).
RESUMABLE_LOGS = ("predictions.jsonl", "samples.jsonl", "answers.jsonl")


def interrupted_message(argv: list[str], args: argparse.Namespace | None) -> str:
    """What Ctrl-C leaves behind, and that a rerun of the same command resumes."""
    out = getattr(args, "out", None)
    if argv and argv[0] in TRL_STAGES:
        return ("migrl: interrupted. Training resumes from the last checkpoint in --output_dir "
                "(save_steps) when the same command runs again.")
    logs = [Path(out) / name for name in RESUMABLE_LOGS] if out else []
    logs += [p for log in logs for p in log.parent.glob(log.stem + ".shard-*.jsonl")]
    saved = sum(sum(1 for line in p.open(encoding="utf-8") if line.strip()) for p in logs if p.is_file())
    if not out:
        return "migrl: interrupted."
    return (f"migrl: interrupted; {saved} item(s) are saved in {out}. The same command resumes from there "
            "without asking for them again.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        if argv and argv[0] in TRL_STAGES:
            return run_trl_stage(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except RecordError as exc:  # --strict, or a file migrl wrote itself that is broken
        print(f"migrl: stopped at a bad record: {exc}", file=sys.stderr)
        return ExitCode.STRICT
    except (StaleRunError, OptionError, FileNotFoundError) as exc:  # the user's to fix: one line, no traceback
        print(f"migrl: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print(interrupted_message(argv, args), file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
