"""Data-parallel generation: shards as real processes (explicit --shard, torchrun ranks), killed and resumed,
merged into one output equal to a one-process run; synthesize and reject shard the same way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asks import command, counting_asks, counting_teacher, read_asks
from migrl.images import TINY_SIZING
from migrl.jsonl import AppendLog, read_jsonl
from migrl.shards import Shard, generate_sharded, merge_shard_logs, shard_logs
from migrl.stages.reject import RejectConfig, reject
from migrl.stages.synthesize import SynthesizeConfig, synthesize

REPO = Path(__file__).resolve().parent.parent
# One thread per process: the shards run side by side on two cores, and every run (reference
# included) computes with the same thread count, so greedy answers are the same numbers.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def eval_cmd(data: Path, out: Path, *extra: str, asked: Path | None = None) -> list[str]:
    """``asked``: the ids the run asks its model for are noted there (tests/asks.py)."""
    # Batch size 1: each answer is computed alone, whatever else a shard holds.
    migrl = command(asked) if asked is not None else [sys.executable, "-m", "migrl.cli"]
    return [*migrl, "eval", "--data", str(data), "--out", str(out), "--batch-size", "1", "--max-new-tokens", "12", *extra]


def eval_args(data: Path, out: Path) -> list[str]:
    """What follows the program in ``eval_cmd``, for a launcher."""
    return eval_cmd(data, out)[3:]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def ids(path: Path) -> list[str]:
    return [row["id"] for row in read_jsonl(path)]


@pytest.fixture(scope="module")
def reference(world_test, tmp_path_factory):
    """The one-process run every sharded run must reproduce."""
    out = tmp_path_factory.mktemp("eval-one")
    run(eval_cmd(world_test, out))
    return {r["id"]: r["text"] for r in read_jsonl(out / "predictions.jsonl")}, json.loads((out / "scores.json").read_text())


def test_shard_parsing_and_round_robin():
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard.parse(" 0 / 2 ")) == "0/2"
    for bad in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="INDEX/COUNT"):
            Shard.parse(bad)
    assert Shard.from_env({"RANK": "2", "WORLD_SIZE": "4"}) == Shard(2, 4, launched=True)
    assert Shard.from_env({"WORLD_SIZE": "1"}) == Shard()
    assert Shard.resolve("0/2", {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(0, 2)  # the option wins
    items = list(range(10))
    parts = [Shard(i, 3).take(items) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items and parts[1] == [1, 4, 7]
    assert Shard(1, 3).log_path(Path("o/predictions.jsonl")) == Path("o/predictions.shard-1-of-3.jsonl")


def test_merge_keeps_one_row_per_id_and_skips_torn_tails(tmp_path):
    main = tmp_path / "p.jsonl"
    AppendLog(Shard(0, 2).log_path(main)).append([{"id": "a", "v": 1}, {"id": "c", "v": 1}])
    second = Shard(1, 2).log_path(main)
    AppendLog(second).append([{"id": "b", "v": 1}, {"id": "a", "v": 2}])  # "a" again, e.g. from another shard count
    with open(second, "a") as f:
        f.write('{"id": "d", "v"')  # a shard killed mid-line
    AppendLog(main).append([{"id": "c", "v": 0}])
    log = AppendLog(main)
    assert merge_shard_logs(log) == 2
    assert {k: r["v"] for k, r in log.rows.items()} == {"c": 0, "a": 1, "b": 1}
    assert ids(main) == ["c", "a", "b"]
    assert second.read_text().endswith('"v"')  # merging only reads: a running shard's file is left alone
    assert shard_logs(main) == [Shard(0, 2).log_path(main), second]


def test_a_shard_skips_items_an_earlier_unsharded_run_answered(tmp_path):
    main = tmp_path / "p.jsonl"
    AppendLog(main).append([{"id": "0"}, {"id": "2"}])
    asked = []

    def generate(todo, log):
        asked.extend(todo)
        log.append({"id": t} for t in todo)

    run_ = generate_sharded(Shard(0, 2), main, [str(i) for i in range(6)], generate, key=str)
    assert run_.log is None and asked == ["4"]


@pytest.mark.slow
def test_two_shard_processes_merged_equal_one_process_and_a_killed_shard_resumes(world_test, reference, tmp_path):
    predictions, scores = reference
    out = tmp_path / "eval"
    items = ids(world_test)
    share = [Shard(i, 2).take(items) for i in range(2)]
    asked = {name: tmp_path / f"asked-{name}.txt" for name in ("first", "second", "resumed", "merged")}
    first = subprocess.Popen(eval_cmd(world_test, out, "--shard", "0/2", asked=asked["first"]), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shard0 = Shard(0, 2).log_path(out / "predictions.jsonl")
    deadline = time.monotonic() + 300
    while not (shard0.exists() and len(read_jsonl(shard0)) >= 2):
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "shard 0 wrote nothing in 300 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = ids(shard0)
    assert 2 <= len(before) < len(predictions) / 2  # killed midway
    assert read_asks(asked["first"]) == share[0]  # a shard asks for its own share only
    second = subprocess.Popen(eval_cmd(world_test, out, "--shard", "1/2", asked=asked["second"]), env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resumed = run(eval_cmd(world_test, out, "--shard", "0/2", asked=asked["resumed"]))  # the same command again, beside shard 1
    assert second.wait(timeout=600) == 0, second.stderr.read()[-2000:]
    assert read_asks(asked["second"]) == share[1]
    # The resumed shard asked once for each item its killed run had not logged, and for no other.
    assert read_asks(asked["resumed"]) == [i for i in share[0] if i not in before]
    assert json.loads(resumed.stdout)["generated"] == len(ids(shard0)) - len(before)
    assert ids(shard0)[: len(before)] == before  # what it had answered was kept
    assert not (out / "scores.json").exists()  # shards only generate

    merged = run(eval_cmd(world_test, out, asked=asked["merged"]))  # without --shard: merges, nothing left to generate
    assert read_asks(asked["merged"]) == []
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == len({r["id"] for r in rows}) == len(predictions)  # none lost, none twice
    assert {r["id"]: r["text"] for r in rows} == predictions
    assert json.loads((out / "scores.json").read_text())["tasks"] == scores["tasks"]
    assert json.loads(merged.stdout)["tasks"] == scores["tasks"]


@pytest.mark.slow
def test_torchrun_ranks_share_the_items_and_rank_0_merges(world_test, reference, tmp_path):
    predictions, scores = reference
    out = tmp_path / "eval"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "migrl.cli"]
    run(launcher + eval_args(world_test, out))
    items = ids(world_test)
    for rank in (0, 1):  # each rank answered its own share (round robin), each item once
        part = ids(Shard(rank, 2).log_path(out / "predictions.jsonl"))
        assert sorted(part) == sorted(items[rank::2]) and len(part) == len(set(part))
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == len(predictions) and {r["id"]: r["text"] for r in rows} == predictions
    assert json.loads((out / "scores.json").read_text())["tasks"] == scores["tasks"]


@pytest.mark.slow
def test_torchrun_rank_1s_undecodable_image_is_listed_by_rank_0_and_the_run_exits_0(world_test, tmp_path):
    """A picture whose header reads but whose data is cut off fails on the rank that decodes it (rank 1
    here); rank 0 lists it in bad_records.jsonl and leaves it out of the scores as a one-process run
    would, and the launcher sees exit 0 (exit 3 reads as a crashed rank to torchrun)."""
    data_dir = tmp_path / "world"
    shutil.copytree(world_test.parent, data_dir)
    data = data_dir / world_test.name
    rows = read_jsonl(data)[:6]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    victim = rows[1]  # rank 1 of 2 takes the items 1, 3, 5
    picture = data_dir / victim["images"][0]
    picture.write_bytes(picture.read_bytes()[: picture.stat().st_size // 2])
    out = tmp_path / "eval"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "migrl.cli"]
    run(launcher + eval_args(data, out))
    (row,) = read_jsonl(out / "bad_records.jsonl")
    assert row["record"] == victim["id"] and row["field"] == "images" and "cannot be decoded" in row["reason"]
    assert victim["id"] not in ids(Shard(1, 2).log_path(out / "predictions.jsonl"))
    scores = json.loads((out / "scores.json").read_text())
    assert sum(total for _, total in scores["counts"].values()) == len(rows) - 1


def test_synthesize_shards_merge_to_the_unsharded_result(world_test, tmp_path):
    teacher = counting_teacher(seed=0)
    one = synthesize(SynthesizeConfig(data=str(world_test), out=str(tmp_path / "one")), teacher, student_sizing=TINY_SIZING)
    items = ids(world_test)
    assert teacher.asked == items
    for i in range(3):
        teacher.asked.clear()
        part = synthesize(SynthesizeConfig(data=str(world_test), out=str(tmp_path / "sharded"), shard=f"{i}/3"), teacher, student_sizing=TINY_SIZING)
        assert part["shard"] == f"{i}/3" and part["generated"] == len(Shard(i, 3).take(range(one["asked"])))
        assert teacher.asked == Shard(i, 3).take(items)  # its own share, each item once
    teacher.asked.clear()
    merged = synthesize(SynthesizeConfig(data=str(world_test), out=str(tmp_path / "sharded")), teacher, student_sizing=TINY_SIZING)
    assert teacher.asked == []  # merging found every item answered by a shard
    assert {k: merged[k] for k in ("asked", "kept", "dropped", "tasks")} == {k: one[k] for k in ("asked", "kept", "dropped", "tasks")}
    assert read_jsonl(tmp_path / "sharded" / "sft.jsonl") == read_jsonl(tmp_path / "one" / "sft.jsonl")
    answers = ids(tmp_path / "sharded" / "answers.jsonl")
    assert len(answers) == len(set(answers)) == one["asked"]


def test_reject_shards_merge_to_the_unsharded_result(world_test, base_model, tmp_path):
    model, processor = base_model
    subset = world_test.with_name("reject-subset.jsonl")  # beside the images its paths are relative to
    subset.write_text("".join(world_test.read_text().splitlines(keepends=True)[::4]))
    common = dict(data=str(subset), k=2, temperature=0.0, max_new_tokens=8, batch_size=2)
    one = reject(RejectConfig(out=str(tmp_path / "one"), **common), model, processor)
    items = ids(subset)
    for i in range(2):
        with counting_asks() as asked:
            reject(RejectConfig(out=str(tmp_path / "sharded"), shard=f"{i}/2", **common), model, processor)
        assert asked == Shard(i, 2).take(items)  # its own share, each item once
    with counting_asks() as asked:
        merged = reject(RejectConfig(out=str(tmp_path / "sharded"), **common), model, processor)
    assert asked == []  # merging found every item sampled by a shard
    assert {k: merged[k] for k in ("asked", "kept", "all_right", "all_wrong", "tasks")} == {k: one[k] for k in ("asked", "kept", "all_right", "all_wrong", "tasks")}
    assert read_jsonl(tmp_path / "sharded" / "rl.jsonl") == read_jsonl(tmp_path / "one" / "rl.jsonl")
    one_samples = {r["id"]: r["samples"] for r in read_jsonl(tmp_path / "one" / "samples.jsonl")}
    assert {r["id"]: r["samples"] for r in read_jsonl(tmp_path / "sharded" / "samples.jsonl")} == one_samples
