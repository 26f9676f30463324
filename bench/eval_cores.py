"""``migrl eval`` on a many-core CPU: one process using every core vs one single-thread shard per core.

A tiny model's matmuls are too small for torch's intra-op threads to keep several cores busy, so one
process per core (``--shard i/n`` jobs, each with one thread, merged by the same command without
``--shard``) may finish sooner. Both runs score the same items with the same model; the answers can
differ only where left-padding differs between the batches (float rounding). Prints each run's seconds
and items/s, how many answers differ and, last, ``ratio=X`` (one process's time over the shards').

    .venv/bin/python bench/eval_cores.py [--model DIR] [--items-per-task 40] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrl.data.world import write_split
from migrl.jsonl import read_jsonl


def eval_argv(model: str | None, data: Path, out: Path, per_task: int, shard: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "migrl.cli", "eval", "--data", str(data), "--out", str(out),
            "--limit-per-task", str(per_task)]
    argv += ["--model", model] if model else []
    return argv + (["--shard", shard] if shard else [])


def answers(out: Path) -> dict[str, str]:
    return {r["id"]: r["text"] for r in read_jsonl(out / "predictions.jsonl")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="default: the shipped tiny base")
    p.add_argument("--items-per-task", type=int, default=40)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_split(root / "world", "test", args.items_per_task)
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        start = time.time()
        subprocess.run(eval_argv(args.model, data, root / "one", args.items_per_task), check=True, **quiet)
        one = time.time() - start

        start = time.time()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        jobs = [subprocess.Popen(eval_argv(args.model, data, root / "shards", args.items_per_task, f"{i}/{args.cores}"),
                                 env=env, **quiet) for i in range(args.cores)]
        if any(job.wait() for job in jobs):
            raise SystemExit("a shard failed")
        subprocess.run(eval_argv(args.model, data, root / "shards", args.items_per_task), check=True, **quiet)  # merge
        shards = time.time() - start

        a, b = answers(root / "one"), answers(root / "shards")
        assert a.keys() == b.keys(), "the two runs answered different items"
        n = len(a)
        print(f"items {n}, model {args.model or 'the shipped tiny base'}, {args.cores} cores")
        print(f"one process, torch's threads : {one:7.1f} s  {n / one:6.1f} items/s")
        print(f"{args.cores} shards x 1 thread + merge: {shards:7.1f} s  {n / shards:6.1f} items/s")
        print(f"answers that differ: {sum(a[k] != b[k] for k in a)} of {n}")
        print(f"ratio={one / shards:.2f}")


if __name__ == "__main__":
    main()
