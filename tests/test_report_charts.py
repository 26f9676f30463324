"""The report's charts, rates, run metadata and picked pictures, on eval folders as ``migrl eval`` leaves them
(answers scored by the real records scorer, the identity eval records) beside model folders as ``migrl sft`` /
``migrl grpo`` leave them (``trainer_state.json`` in TRL's log format); and the page in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from migrl.data import scenes
from migrl.data.world import write_split
from migrl.demo import demo_recipe
from migrl.images import TINY_SIZING
from migrl.jsonl import write_json_atomic
from migrl.models.loading import TINY_BASE
from migrl.recipe import record_recipe, stage_config
from migrl.records import Record, data_root, read_records
from migrl.report.build import write_report
from migrl.report.charts import SERIES_COLOURS
from migrl.report.pictures import PREDICTION, TRUTH
from migrl.rewards import format_reward
from migrl.run_identity import check_same_run, generator_identity, input_fingerprint
from migrl.scoring.intervals import intervals
from migrl.stages.grpo import GRPOStageConfig
from migrl.stages.sft import SFTStageConfig
from migrl.tasks import ID_TASKS
from test_report_build import right_answer, write_eval

FORMAT_KEY = f"rewards/{format_reward.__name__}/mean"  # TRL's key for the format reward's mean
SFT_LOSS = [4.4, 2.5, 1.7, 1.2, 0.9]


def sft_log() -> list[dict]:
    """A log_history as TRL's SFTTrainer writes it: per logging step, then the run's summary."""
    steps = [{"loss": v, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": i / 5, "step": 10 * (i + 1)}
             for i, v in enumerate(SFT_LOSS)]
    return steps + [{"train_loss": 2.1, "train_runtime": 3.0, "epoch": 1.0, "step": 50}]


def grpo_log() -> list[dict]:
    steps = [{"loss": 1e-4, "reward": 0.5 + 0.05 * i, "kl": 0.01 * i, FORMAT_KEY: 0.8 + 0.04 * i,
              "rewards/gated_iou_reward/mean": 0.3, "completions/mean_length": 70.0 - i, "step": 5 * (i + 1)}
             for i in range(4)]
    return steps + [{"train_loss": 1e-4, "step": 20}]


def trained_folder(folder: Path, log: list[dict]) -> Path:
    """A model folder as a training stage leaves it: the base's config (marked, so its fingerprint is its own)
    and trainer_state.json."""
    folder.mkdir(parents=True)
    config = json.loads((TINY_BASE / "config.json").read_text())
    write_json_atomic(folder / "config.json", {**config, "_trained_as": folder.name})
    write_json_atomic(folder / "trainer_state.json", {"global_step": log[-1]["step"], "log_history": log})
    return folder


def wrong_answer(record: Record) -> str:
    """Formatted, on another image where the item has several, and far from the object."""
    image = (record.target.image_index + 1) % len(record.images)
    return f'<think>guess</think><answer>{{"image": {image + 1}, "bbox_2d": [0, 0, 2, 2]}}</answer>'


def later_run(records: list[Record], root: Path) -> dict[str, str]:
    """Wrong on each task's first two items, right on its third: a first-items pick shows no hit."""
    seen: dict[str, int] = {}
    out = {}
    for r in records:
        seen[r.task] = seen.get(r.task, 0) + 1
        out[r.id] = right_answer(r, root) if seen[r.task] == 3 else wrong_answer(r)
    return out


def untrained_answers(records: list[Record], root: Path) -> dict[str, str]:
    """No think / answer format; a box on the target image for every other item."""
    return {r.id: (right_answer(r, root).split("<answer>")[1].split("</answer>")[0] if i % 2 else "no idea")
            for i, r in enumerate(records)}


def eval_folder(folder: Path, records: list[Record], data: Path, answers: dict[str, str], model: Path) -> dict:
    scores = write_eval(folder, records, data_root(data), answers)
    scores["answer_space"] = {"coords": "qwen25", "min_pixels": TINY_SIZING.min_pixels, "max_pixels": TINY_SIZING.max_pixels}
    write_json_atomic(folder / "scores.json", scores)
    identity = generator_identity(str(model), max_new_tokens=64, cot=True, benchmark="records", data=input_fingerprint(data))
    check_same_run(folder / "predictions.jsonl", identity)  # predictions.run.json, as eval writes it
    return scores


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's layout: <out>/eval/{base,cot_sft,rl} beside <out>/sft and <out>/grpo; the base is shipped."""
    out = tmp_path_factory.mktemp("demo")
    data = write_split(out / "world", "test", 3, seed=0)
    records = read_records(data)
    root = data_root(data)
    sft, grpo = trained_folder(out / "sft", sft_log()), trained_folder(out / "grpo", grpo_log())
    for stage, folder, config in (("sft", sft, SFTStageConfig), ("grpo", grpo, GRPOStageConfig)):
        record_recipe(stage_config(config, f"migrl {stage}", ["--config", str(demo_recipe(stage)), "--output_dir", str(folder)]))
    answers = {"base": untrained_answers(records, root), "cot_sft": {r.id: right_answer(r, root) for r in records},
               "rl": later_run(records, root)}
    models = {"base": TINY_BASE, "cot_sft": sft, "rl": grpo}
    scores = {s: eval_folder(out / "eval" / s, records, data, answers[s], models[s]) for s in answers}
    runs = {s: out / "eval" / s for s in answers}
    md, page = write_report(runs, data, out / "report")
    return {"out": out, "data": data, "records": records, "runs": runs, "scores": scores, "md": md.read_text(),
            "html": page.read_text(), "page": page, "models": models}


def md_rows(md: str, heading: str) -> dict[str, list[str]]:
    section = md[md.index(f"## {heading}"):]
    section = section[: section.find("\n## ", 3)]
    return {cells[0]: cells[1:] for line in section.splitlines() if line.startswith("| ") and "---" not in line
            for cells in [[c.strip() for c in line.strip("|").split(" | ")]]}


def chart(html: str, title: str) -> str:
    """The SVG whose title is ``title``."""
    return next(s for s in re.findall(r"<svg.*?</svg>", html, flags=re.S) if f'aria-label="{title}"' in s)


def test_accuracy_bars_carry_the_bootstrap_intervals(demo):
    title = "Accuracy per task (Acc@0.5, %) with 95% intervals"
    svg = chart(demo["html"], title)
    rows = md_rows(demo["md"], title)
    groups = sorted({r.task for r in demo["records"]}) + ["ID avg", "OOD avg", "avg"]
    keys = {"ID avg": "id_avg", "OOD avg": "ood_avg", "avg": "avg"}
    for i, stage in enumerate(demo["runs"]):
        expected = intervals(demo["scores"][stage]["per_item"], ID_TASKS, seed=0)
        for group in groups:
            lo, hi = expected[keys.get(group, group)]
            assert rows[group][i].endswith(f"[{lo:.2f}, {hi:.2f}]"), (stage, group, rows[group][i])
    assert svg.count('class="interval"') == len(groups) * len(demo["runs"])  # one whisker per bar
    assert svg.count('class="bar"') == len(groups) * len(demo["runs"])
    # a whisker spans its interval: 3 items a task, the rl run right on one, give wide ones
    whiskers = re.findall(r'class="interval" d="M[\d.]+,([\d.]+)V([\d.]+)', svg)
    assert any(float(lo) - float(hi) > 10 for lo, hi in whiskers)


def test_training_curves_come_from_the_model_folders_logs(demo):
    sft_svg = chart(demo["html"], "SFT loss")
    (points,) = re.findall(r'class="curve" points="([^"]+)"', sft_svg)  # the SFT run only: GRPO's loss is not charted
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert len(ys) == len(SFT_LOSS) and ys == sorted(ys)  # falling loss: lower on the page each step
    assert SERIES_COLOURS[1] in sft_svg  # cot_sft keeps its bar colour
    for title in ("GRPO reward (mean over completions)", "GRPO KL to the reference", "GRPO format reward (mean)",
                  "GRPO completion length (mean)"):
        (grpo,) = re.findall(r'class="curve" points="([^"]+)"', chart(demo["html"], title))
        assert len(grpo.split()) == 4
    assert md_rows(demo["md"], "GRPO format reward (mean)")["rl"] == ["5-20", "0.8", "0.92", "0.8", "0.92"]
    assert md_rows(demo["md"], "SFT loss")["cot_sft"][:3] == ["10-50", "4.4", "0.9"]


def test_rates_and_metadata_per_run(demo):
    rates = md_rows(demo["md"], "Answers with the trained format / the box on the right image (%)")
    n = len(demo["records"])
    rl = later_run(demo["records"], data_root(demo["data"]))
    off_target = sum(len(r.images) > 1 and rl[r.id] == wrong_answer(r) for r in demo["records"])
    assert rates["base"] == ["0.00", f"{100 * (n // 2) / n:.2f}", str(n)]  # every other box, none formatted
    assert rates["cot_sft"] == ["100.00", "100.00", str(n)]
    assert rates["rl"] == ["100.00", f"{100 * (n - off_target) / n:.2f}", str(n)]  # wrong image on multi-image misses
    meta = md_rows(demo["md"], "Runs")
    for stage, model in demo["models"].items():
        assert meta[stage][1] == str(model) and meta[stage][2] == "Qwen2.5-VL"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", meta[stage][4])
    assert meta["base"][3] == "migrl pretrain-base (pretrain_log.json)"
    assert meta["cot_sft"][3] == str(demo_recipe("sft")) and meta["rl"][3] == str(demo_recipe("grpo"))
    assert "no trainer_state.json" in meta["base"][6] and meta["rl"][6] == "trainer_state.json"
    assert "Report written by migrl 0." in demo["md"]


def test_pictures_show_a_hit_and_a_miss_of_the_last_run(demo):
    per_item = demo["scores"]["rl"]["per_item"]
    pictured = re.findall(r'<img src="pictures/\d+-([^"]+)\.png"', demo["html"])
    for task in {r.task for r in demo["records"]}:
        outcomes = [per_item[rid][1] for rid in pictured if per_item[rid][0] == task]
        assert sorted(outcomes) == [0, 1], (task, outcomes)
    assert "dashed magenta" in demo["html"] and "not a prediction" in demo["html"]


def marker_colours() -> set[tuple[int, int, int]]:
    """Every colour the world's marker frame takes once rendered (light and shade included)."""
    scene = scenes.Scene(140, 105, (), background=3)
    box = (10, 10, 130, 95)
    plain = np.asarray(scenes.render(scene)).reshape(-1, 3)
    marked = np.asarray(scenes.render(scene, marked=box)).reshape(-1, 3)
    changed = (plain != marked).any(axis=1)
    assert changed.sum() > 300  # the frame was found
    return {tuple(int(v) for v in c) for c in marked[changed]}


def test_the_prediction_colour_is_no_marker_object_or_truth_colour():
    def far(a, b) -> bool:
        return float(np.linalg.norm(np.subtract(a, b, dtype=float))) > 100
    assert all(far(PREDICTION, c) for c in marker_colours())
    assert all(far(PREDICTION, c) for c in scenes.COLOURS.values())
    assert far(PREDICTION, TRUTH)


def test_a_run_without_identity_or_answers_still_reports(demo, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(demo["runs"]["rl"], bare)
    (bare / "predictions.run.json").unlink()
    (bare / "predictions.jsonl").unlink()
    scores = json.loads((bare / "scores.json").read_text())
    del scores["per_item"]
    write_json_atomic(bare / "scores.json", scores)
    md, _ = write_report({"bare": bare, "rl": demo["runs"]["rl"]}, demo["data"], tmp_path / "report")
    text = md.read_text()
    assert "does not say which model answered" in md_rows(text, "Runs")["bare"][1]
    assert "no interval for bare: its scores.json keeps no per_item" in text
    assert "bare" not in md_rows(text, "Answers with the trained format / the box on the right image (%)")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_the_page_renders_its_charts_and_pictures_in_a_browser(demo, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium)")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1"]
    url = demo["page"].resolve().as_uri()
    start = time.time()
    dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") >= 7 and 'class="interval"' in dom and 'class="curve"' in dom
    assert dom.count('<img src="pictures/') == len(list((demo["out"] / "report" / "pictures").glob("*.png")))
    shot = tmp_path / "page.png"
    subprocess.run(args + ["--window-size=1100,6000", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    with Image.open(shot) as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 24)}
    bar = tuple(int(SERIES_COLOURS[0][i:i + 2], 16) for i in (1, 3, 5))
    assert bar in colours  # the SVG bars were painted
    assert PREDICTION in colours and TRUTH in colours  # the box pictures were loaded and painted
    print(f"chromium: {time.time() - start:.1f} s")
