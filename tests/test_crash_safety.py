"""kill -9 at several points of real `migrl` subprocesses: each rerun finishes the job, the output is
byte for byte what an uninterrupted run writes, no item is lost or doubled, and no output file is
ever half-written. Training resumes from its last *complete* checkpoint."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image
from safetensors.torch import load_file

from asks import command, read_asks
from fake_openai_server import FakeOpenAIServer
from migrl.data.world import ID_TASKS, write_split
from migrl.jsonl import read_jsonl, write_json_atomic
from migrl.training.checkpoints import last_complete_checkpoint

MIGRL = [sys.executable, "-m", "migrl.cli"]


def kill_when(cmd: list[str], ready: Callable[[], bool] | None = None, cpu: float | None = None, timeout: float = 300) -> bool:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds or it has used ``cpu`` seconds of CPU
    (a point in its work that does not move with the load of a shared machine, as wall time does);
    True when it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (ready is not None and ready()) or (cpu is not None and cpu_seconds(proc.pid) >= cpu):
            break
        time.sleep(0.005)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def ids(path: Path) -> list[str]:
    return [row["id"] for row in read_jsonl(path)] if path.exists() else []


def outputs(folder: Path) -> dict[str, bytes]:
    """The files a user sees (temporary files are hidden dot-files)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


# --- prepare ------------------------------------------------------------------------------------

PREPARE_FILES = ("coldstart.jsonl", "rl_pool.jsonl", "bad_records.jsonl", "prepare_stats.json")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """An MGrounding source of 4,000 items over 20 pictures, 5 of them naming a missing image."""
    root = tmp_path_factory.mktemp("prep") / "data"
    folder = root / "MGrounding-630k" / "Common_Object"
    (folder / "COCO").mkdir(parents=True)
    for k in range(20):
        Image.new("RGB", (64, 48), (10 * k, 30, 200)).save(folder / "COCO" / f"{k}.png")
    items = []
    for i in range(4000):
        images = [f"./MGrounding-630k/Common_Object/COCO/{(i + j) % 20}.png" for j in range(2)]
        if i % 997 == 5:
            images[1] = "./MGrounding-630k/Common_Object/COCO/missing.png"
        question = "<image>\n<image>\nThese images share one object in common. Locate it in the 2th image."
        items.append({"id": str(i), "images": images, "type": "common_train", "conversations": [
            {"from": "human", "value": question},
            {"from": "gpt", "value": f"<|box_start|>({i % 400},0),({i % 400 + 50},500)<|box_end|>"}]})
    (folder / "common.json").write_text(json.dumps(items))
    path = root / "recipe.yaml"
    path.write_text(f"seed: 0\nroot: {root}\nsources:\n  mg: {{kind: mgrounding, path: MGrounding-630k/Common_Object/common.json, "
                    "image_root: .}\ncoldstart: {mg: 1500}\nrl_pool: {mg: all}\n")
    return path


@pytest.mark.slow
def test_prepare_killed_at_several_points_reruns_to_the_same_bytes(recipe, tmp_path):
    def cmd(out: Path, *extra: str) -> list[str]:
        return [*MIGRL, "prepare", "--config", str(recipe), "--out", str(out), *extra]

    before = children_cpu()
    assert subprocess.run(cmd(tmp_path / "ref"), capture_output=True).returncode == 3  # the bad records
    cpu = children_cpu() - before
    ref = outputs(tmp_path / "ref")
    assert set(ref) == set(PREPARE_FILES) and len(read_jsonl(tmp_path / "ref" / "bad_records.jsonl")) == 5

    out = tmp_path / "killed"
    before = children_cpu()
    subprocess.run(cmd(out, "--seed", "1"), check=False, capture_output=True)  # an earlier run's files
    # The kill points are fractions of a whole run's CPU time: the faster of the two runs, since the first
    # one pays for cold file caches (imports) that the killed runs, which come after, no longer pay.
    cpu = min(cpu, children_cpu() - before)
    old = outputs(out)
    assert old["coldstart.jsonl"] != ref["coldstart.jsonl"]
    # First, right after the new cold-start file replaces the old one: the other files are still old.
    inode = (out / "coldstart.jsonl").stat().st_ino
    assert kill_when(cmd(out), lambda: os.stat(out / "coldstart.jsonl").st_ino != inode)
    assert outputs(out)["coldstart.jsonl"] == ref["coldstart.jsonl"]
    landed = 0
    # Fractions of the CPU time (loading, reading sources, drawing, writing; the kill above is in the writing):
    # /proc counts CPU in 10 ms ticks and a whole run is ~0.6 CPU s, so a point closer to the end than a few
    # ticks lands after it on a loaded machine.
    for fraction in (0.4, 0.6, 0.75, 0.9):
        alive = kill_when(cmd(out), cpu=fraction * cpu)
        print(f"kill at {fraction:.0%} of {cpu:.1f} CPU s: {'mid-run' if alive else 'after the end'}")
        landed += alive
        for name, data in outputs(out).items():  # whole files only: the old one or the new one
            assert data in (old[name], ref[name]), name
    assert landed >= 3, "most kills must land mid-run"
    assert subprocess.run(cmd(out), capture_output=True).returncode == 3
    assert outputs(out) == ref


# --- synthesize (append log) --------------------------------------------------------------------

def teacher_asks(server: FakeOpenAIServer, pool: Path) -> Callable[[int], list[str]]:
    """``asks(start)``: the items the server was asked for (first attempts, by their first image) since
    call ``start``, once every request that reached it is in (a killed client's last ones included)."""
    from migrl.engines.openai_compat import image_data_url
    from migrl.images import load_image
    from migrl.records import read_records

    by_image = {image_data_url(load_image(pool.parent / r.images[0])): r.id for r in read_records(pool)}
    assert len(by_image) == len(read_records(pool))  # every item knowable by its first image

    def item(call) -> str | None:  # None: migrl's start-up probe, whose images are not the pool's
        if "messages" not in call.body:  # a request torn by the kill: the server could not read it, nor answer
            return None
        url = next(p["image_url"]["url"] for p in call.body["messages"][-1]["content"] if p["type"] == "image_url")
        return by_image.get(url)

    def asks(start: int) -> list[str]:
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 0.5:
            if len(server.calls) != seen or any(not c.finished for c in server.calls):  # one still in flight
                seen, quiet_since = len(server.calls), time.monotonic()
            time.sleep(0.02)
        return [i for i in (item(c) for c in server.calls[start:] if c.attempt == 0) if i is not None]

    return asks


@pytest.mark.slow
def test_synthesize_killed_at_several_points(tmp_path):
    """Kills early, midway, late and while the derived files are written; one rerun after each. Each
    run asks the teacher only for items its log lacks, none twice."""
    from test_synthesize import _scripted_server_answer

    pool = write_split(tmp_path / "world", "train", 12, seed=3, tasks=ID_TASKS)
    answers_path = tmp_path / "killed" / "answers.jsonl"
    items = [r["id"] for r in read_jsonl(pool)]
    with FakeOpenAIServer(latency=0.05, answer=_scripted_server_answer(pool)) as server:
        def cmd(out: Path) -> list[str]:
            return [*MIGRL, "synthesize", "--data", str(pool), "--out", str(out), "--teacher", "openai", "--base-url",
                    server.base_url, "--teacher-model", "t", "--concurrency", "2", "--max-new-tokens", "256",
                    "--allow-image-token-mismatch", "--model", "tiny-base"]

        asks = teacher_asks(server, pool)
        subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True)
        assert sorted(asks(0)) == sorted(items)  # each item once
        for at in (1, 12, 30, 47, 48):
            before, start = set(ids(answers_path)), len(server.calls)
            kill_when(cmd(tmp_path / "killed"), lambda: lines(answers_path) >= at)
            asked = asks(start)
            assert len(asked) == len(set(asked)) and not set(asked) & before  # none twice, none it had
            rows = read_jsonl(answers_path)
            assert len(rows) == len({r["id"] for r in rows}) >= len(before)  # nothing lost, nothing doubled
        start = len(server.calls)
        subprocess.run(cmd(tmp_path / "killed"), check=True, capture_output=True)
        assert asks(start) == []  # the last kill came once every answer was in: nothing left to ask
    rows = read_jsonl(answers_path)
    assert len(rows) == len({r["id"] for r in rows}) == 48
    assert outputs(tmp_path / "killed").keys() >= {"sft.jsonl", "stats.json", "bad_records.jsonl"}
    for name in ("sft.jsonl", "stats.json", "bad_records.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


# --- eval (append log) --------------------------------------------------------------------------

@pytest.mark.slow
def test_eval_killed_at_several_points(world_test, tmp_path):
    """Each rerun asks the model once for every item its log lacks, and for no other (tests/asks.py)."""
    args = ["eval", "--data", str(world_test), "--batch-size", "1", "--max-new-tokens", "24"]
    subprocess.run([*MIGRL, *args, "--out", str(tmp_path / "full")], check=True, capture_output=True)
    killed = ["--out", str(tmp_path / "killed")]
    preds = tmp_path / "killed" / "predictions.jsonl"
    items = ids(world_test)
    for n, at in enumerate((2, 11, 23)):
        before, asked = ids(preds), tmp_path / f"asked-{n}.txt"
        assert kill_when([*command(asked), *args, *killed], lambda: lines(preds) >= at)
        rows = read_jsonl(preds)
        assert at <= len(rows) == len({r["id"] for r in rows}) < 30
        assert ids(preds)[: len(before)] == before
        # A chunk's items are asked for together: the missing ones, or nothing if killed before asking.
        missing = [i for i in items if i not in before]
        assert read_asks(asked) == missing or (read_asks(asked) == [] and len(rows) == len(before))
    before, asked = ids(preds), tmp_path / "asked-last.txt"
    subprocess.run([*command(asked), *args, *killed], check=True, capture_output=True)
    assert read_asks(asked) == [i for i in items if i not in before] != []
    rows = read_jsonl(preds)
    assert len(rows) == len({r["id"] for r in rows}) == 30
    assert {r["id"]: r["text"] for r in rows} == {r["id"]: r["text"] for r in read_jsonl(tmp_path / "full" / "predictions.jsonl")}
    assert (tmp_path / "killed" / "scores.json").read_bytes() == (tmp_path / "full" / "scores.json").read_bytes()
    asked = tmp_path / "asked-finished.txt"
    subprocess.run([*command(asked), *args, *killed], check=True, capture_output=True)
    assert read_asks(asked) == []  # a finished run: nothing to ask
    assert (tmp_path / "killed" / "scores.json").read_bytes() == (tmp_path / "full" / "scores.json").read_bytes()


# --- training -----------------------------------------------------------------------------------

def _state(step: int) -> dict:
    return {"global_step": step, "log_history": []}


def test_last_complete_checkpoint_passes_over_torn_ones(tmp_path):
    for step in (1, 2, 5, 10, 11):
        (tmp_path / f"checkpoint-{step}").mkdir()
    write_json_atomic(tmp_path / "checkpoint-1" / "trainer_state.json", _state(1))
    write_json_atomic(tmp_path / "checkpoint-2" / "trainer_state.json", _state(2))
    write_json_atomic(tmp_path / "checkpoint-5" / "trainer_state.json", _state(4))  # not its own step
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10, "log_hi')  # torn
    (tmp_path / "checkpoint-11" / "model.safetensors").write_bytes(b"")  # killed before the state
    (tmp_path / "checkpoint-3.tmp").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path / "nowhere") is None


def _sft_args(data: Path, out: Path, steps: int) -> list[str]:
    return ["--data", str(data), "--output_dir", str(out), "--max_steps", str(steps), "--save_strategy", "steps",
            "--save_steps", "1", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1",
            "--report_to", "none", "--seed", "0", "--lora_dropout", "0"]


@pytest.mark.slow  # trains or runs the demo: end to end
def test_sft_resumes_past_a_checkpoint_torn_by_a_kill(sft_data, tmp_path):
    """What a kill -9 during a save leaves (a checkpoint folder without its trainer state) must not
    stop the rerun: it resumes from the checkpoint before and trains the step again."""
    from migrl.cli import main

    out = tmp_path / "sft"
    assert main(["sft", *_sft_args(sft_data, out, 3)]) == 0
    (out / "checkpoint-3" / "trainer_state.json").unlink()
    (out / "checkpoint-3" / "optimizer.pt").write_bytes(b"torn")
    assert main(["sft", *_sft_args(sft_data, out, 3)]) == 0
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]


@pytest.mark.slow
def test_sft_killed_at_several_points_ends_where_an_uninterrupted_run_does(sft_data, tmp_path):
    import torch

    def cmd(out: Path) -> list[str]:
        return [*MIGRL, "sft", *_sft_args(sft_data, out, 6)]

    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True)
    out = tmp_path / "killed"
    for step in (2, 4):
        state = out / f"checkpoint-{step}" / "trainer_state.json"
        assert kill_when(cmd(out), state.exists)
    subprocess.run(cmd(out), check=True, capture_output=True)
    full, resumed = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert full.keys() == resumed.keys()
    assert all(torch.allclose(full[k].float(), resumed[k].float(), atol=1e-6) for k in full)

    def losses(folder: Path) -> list[float]:
        state = json.loads((folder / "checkpoint-6" / "trainer_state.json").read_text())
        return [h["loss"] for h in state["log_history"] if "loss" in h]

    assert losses(out) == pytest.approx(losses(tmp_path / "full"), abs=1e-6) and len(losses(out)) == 6


def test_atomic_files_get_the_usual_mode(tmp_path):
    """mkstemp's private 0600 must not leak into outputs other users of a cluster need to read."""
    umask = os.umask(0o022)
    os.umask(umask)
    write_json_atomic(tmp_path / "stats.json", {"a": 1})
    assert (tmp_path / "stats.json").stat().st_mode & 0o777 == 0o666 & ~umask
