"""The ``migrl`` command: one subcommand per stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from migrl.boxes import Space


def _sizing_for(args: argparse.Namespace, default):
    from migrl.images import ImageSizing

    if getattr(args, "model", None):
        from migrl.models.loading import load_processor

        return ImageSizing.from_processor(load_processor(args.model))
    if args.min_pixels or args.max_pixels:
        return ImageSizing(args.min_pixels or default.min_pixels, args.max_pixels or default.max_pixels)
    return default


def cmd_world(args: argparse.Namespace) -> int:
    from migrl.data.world import TASKS, write_split

    tasks = tuple(args.tasks.split(",")) if args.tasks else TASKS
    for split, n in (("train", args.train), ("test", args.test)):
        if n:
            path = write_split(args.out, split, n, seed=args.seed, tasks=tasks)
            print(f"wrote {path} ({n} per task x {len(tasks)} tasks)")
    return 0


def cmd_pretrain_base(args: argparse.Namespace) -> int:
    from migrl.stages.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    summary = pretrain(cfg)
    print(json.dumps(summary["final_skills"], indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from migrl.stages.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        coords=args.coords,
        cot=not args.no_cot,
        limit_per_task=args.limit_per_task,
    )
    scores = evaluate(cfg)
    print(json.dumps({k: scores[k] for k in ("tasks", "avg", "id_avg", "ood_avg")}, indent=2))
    for err in scores["record_errors"]:
        print(f"skipped: {err}", file=sys.stderr)
    return 1 if scores["record_errors"] else 0


def cmd_score(args: argparse.Namespace) -> int:
    from migrl.images import TINY_SIZING, ImageSizing
    from migrl.scoring.predictions import read_predictions

    preds = read_predictions(args.predictions)
    for err in preds.errors:
        print(f"warning: {err}", file=sys.stderr)
    if args.benchmark == "mig-bench":
        from migrl.scoring.migbench import score_migbench

        sizing = _sizing_for(args, ImageSizing())
        result = score_migbench(args.data, preds.texts, args.coords, args.image_root, sizing)
    else:
        from migrl.records import data_root, load_records
        from migrl.scoring.grounding import score_records

        loaded = load_records(args.data)
        for err in loaded.errors:
            print(f"warning: {err}", file=sys.stderr)
        sizing = _sizing_for(args, TINY_SIZING)
        result = score_records(loaded.records, preds.texts, args.image_root or data_root(args.data), args.coords, sizing)
    print(json.dumps(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from migrl.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=args.out, per_task=args.per_task, seed=args.seed, batch_size=args.batch_size))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="migrl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="write the embedded multi-image world (records + images)")
    w.add_argument("--out", default="runs/world")
    w.add_argument("--train", type=int, default=200, help="items per task in the train split")
    w.add_argument("--test", type=int, default=50, help="items per task in the test split")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--tasks", default="", help="comma-separated subset of tasks")
    w.set_defaults(func=cmd_world)

    b = sub.add_parser("pretrain-base", help="pretrain the tiny base model from scratch (~30 min on 2 cores)")
    b.add_argument("--out", default="runs/tiny-base")
    b.add_argument("--steps", type=int, default=1500)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--lr", type=float, default=1.5e-3)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_pretrain_base)

    e = sub.add_parser("eval", help="generate answers for a records file and score Acc@0.5 (resumable)")
    e.add_argument("--model", default=None, help="model folder (default: the shipped tiny base)")
    e.add_argument("--data", required=True, help="records JSONL")
    e.add_argument("--out", default="runs/eval")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--max-new-tokens", type=int, default=192)
    e.add_argument("--coords", default=Space.QWEN25.value, choices=[s.value for s in Space])
    e.add_argument("--no-cot", action="store_true", help="ask for the answer only, without think/answer tags")
    e.add_argument("--limit-per-task", type=int, default=0)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score", help="score a predictions JSONL without a model")
    s.add_argument("--benchmark", required=True, choices=["mig-bench", "world"])
    s.add_argument("--data", required=True, help="MIG_data.json, or a records JSONL for 'world'")
    s.add_argument("--predictions", required=True, help='JSONL of {"id": ..., "text": ...}')
    s.add_argument("--coords", default=Space.QWEN2.value, choices=[s.value for s in Space], help="space of the model's numbers")
    s.add_argument("--image-root", default=None, help="folder the records' image paths are relative to")
    s.add_argument("--model", default=None, help="read min/max pixels from this model folder's processor")
    s.add_argument("--min-pixels", type=int, default=0)
    s.add_argument("--max-pixels", type=int, default=0)
    s.set_defaults(func=cmd_score)

    d = sub.add_parser("demo", help="the whole loop on the embedded world, on a CPU")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--per-task", type=int, default=40, help="test items per task")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--batch-size", type=int, default=32)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
