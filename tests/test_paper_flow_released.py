"""The paper's flow end to end on released-shaped folders (Qwen2.5-VL-7B-Instruct with recipes/paper/, Qwen3-VL-8B-
Instruct with recipes/qwen3vl/) and camera-size pictures: MGrounding-format files -> prepare -> synthesize
(scripted and hf teacher) -> sft -> reject -> grpo (from the SFT output) -> eval -> report. The same commands
for both families: the folder says which family it is, and the answers' space follows.

Only what a 2-core CPU cannot afford is overridden: step counts, batch sizes, GRPO's group size and answer
length, and the answers' length in generation (random weights never stop by themselves). Every image
budget, max_length, LoRA and KL setting is the recipes'. Each stage's output is loaded by the next as
the released folder is, and no good record is dropped on the way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from camera_data import mgrounding_common_object, prepare_recipe, records_file
from migrl.cli import main
from migrl.images import ImageSizing

REPO = Path(__file__).resolve().parent.parent
# family fixture -> its recipes, their image budget (sft.yaml's), the space its answers are in, and whether the
# commands must be told that space (Qwen3.5's documentation states none: --coords, as its recipes say)
FLOWS = {
    "released_folder": (REPO / "recipes" / "paper", ImageSizing(3136, 1003520), "qwen25", False),
    "released_qwen3_vl_folder": (REPO / "recipes" / "qwen3vl", ImageSizing(65536, 1310720, 32), "qwen2", False),
    "released_qwen3_5_folder": (REPO / "recipes" / "qwen3_5", ImageSizing(65536, 1310720, 32), "qwen2", True),
}


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _loads_like_the_release(folder: Path, released: Path, budget: ImageSizing) -> None:
    """A stage's model folder: the released tokenizer and generation settings, the recipe's image budget."""
    from migrl.engines.serving import local_prompt_tokens, probe_request
    from migrl.models.loading import load_model, load_processor

    tok = _json(folder / "tokenizer.json")
    assert tok["truncation"] is None and tok["padding"] is None
    ours, theirs = _json(folder / "generation_config.json"), _json(released / "generation_config.json")
    assert all(ours.get(k) == theirs.get(k) for k in ("repetition_penalty", "temperature", "top_p", "top_k"))
    processor, base = load_processor(folder), load_processor(released, budget)
    assert ImageSizing.from_processor(processor) == budget
    probe = probe_request([(1920, 1080), (1280, 720), (640, 480)])  # a served engine's start-up check
    assert local_prompt_tokens(processor, probe) == local_prompt_tokens(base, probe) > 1024
    load_model(folder)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FLOWS), ids=["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def test_the_paper_flow_on_a_released_shaped_folder(family, request, tmp_path):
    released_folder = request.getfixturevalue(family)
    recipes, budget, coords, told = FLOWS[family]
    told_coords = ["--coords", coords] if told else []
    data = tmp_path / "datasets"
    mgrounding_common_object(data, 12)
    assert main(["prepare", "--config", str(prepare_recipe(tmp_path, data, coldstart=8, rl="all")),
                 "--out", str(tmp_path / "data")]) == 0
    coldstart, pool = tmp_path / "data" / "coldstart.jsonl", tmp_path / "data" / "rl_pool.jsonl"
    assert len(_lines(coldstart)) == 8 and len(_lines(pool)) == 4

    student = ["--model", str(released_folder), "--max-pixels", str(budget.max_pixels)] + \
        (["--student-coords", coords] if told else [])
    syn = tmp_path / "synthesize"
    assert main(["synthesize", "--data", str(coldstart), "--out", str(syn), "--teacher", "scripted", *student]) == 0
    kept = _lines(syn / "sft.jsonl")
    assert kept and _json(syn / "stats.json")["asked"] == 8
    assert all(r["meta"]["response_space"]["coords"] == coords for r in kept)  # the student's space, from its folder
    if coords == "qwen25":  # pixels of the resized image: written for the recipe's budget
        assert all(r["meta"]["response_space"]["max_pixels"] == budget.max_pixels for r in kept)
    hf = tmp_path / "synthesize_hf"  # the released folder as a local teacher (random weights: nothing kept)
    assert main(["synthesize", "--data", str(coldstart), "--out", str(hf), "--teacher", "hf", "--teacher-model",
                 str(released_folder), "--k", "2", "--limit", "2", "--max-new-tokens", "8", *student,
                 *(["--teacher-coords", coords] if told else [])]) == 0
    assert _json(hf / "stats.json")["asked"] == 2 and not _lines(hf / "bad_records.jsonl")

    sft = tmp_path / "sft"
    assert main(["sft", "--config", str(recipes / "sft.yaml"), "--model_name_or_path", str(released_folder),
                 "--data", str(syn / "sft.jsonl"), "--output_dir", str(sft),
                 "--max_steps", "2", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1"]) == 0
    summary = _json(sft / "sft_summary.json")
    assert summary["records"] == len(kept) and summary["bad_records"]["count"] == 0  # nothing dropped for length
    record = yaml.safe_load((sft / "recipe.yaml").read_text())  # what was run, kept beside the model
    assert record["model_name_or_path"] == str(released_folder) and record["max_steps"] == 2
    _loads_like_the_release(sft, released_folder, budget)

    reject = tmp_path / "reject"
    assert main(["reject", "--model", str(sft), "--data", str(pool), "--out", str(reject), "--k", "2",
                 "--max-new-tokens", "8", "--batch-size", "8", *told_coords]) == 0
    stats = _json(reject / "stats.json")
    assert stats["asked"] == 4 and stats["bad_records"]["count"] == 0
    # Random weights answer every item wrong, so rejection keeps none; GRPO then trains on the pool itself
    # (the "without rejection sampling" ablation), from the SFT output as in the paper.
    rl_data = reject / "rl.jsonl" if _lines(reject / "rl.jsonl") else pool

    grpo = tmp_path / "grpo"
    assert main(["grpo", "--config", str(recipes / "grpo.yaml"), "--model_name_or_path", str(sft), "--data", str(rl_data),
                 "--output_dir", str(grpo), "--max_steps", "1", "--per_device_train_batch_size", "2",
                 "--num_generations", "2", "--gradient_accumulation_steps", "1", "--max_completion_length", "16"]) == 0
    g = _json(grpo / "grpo_summary.json")
    assert g["steps"] == 1 and g["records"] == len(_lines(rl_data)) and g["bad_records"]["count"] == 0
    assert (grpo / "recipe.yaml").read_text().startswith(f"# merged from {recipes / 'grpo.yaml'}\n")
    _loads_like_the_release(grpo, released_folder, budget)

    test = records_file(tmp_path / "test", 4)
    ev = tmp_path / "eval"
    assert main(["eval", "--model", str(grpo), "--data", str(test), "--out", str(ev), "--max-new-tokens", "8",
                 *told_coords]) == 0
    scores = _json(ev / "scores.json")
    assert scores["answer_space"]["coords"] == coords
    if coords == "qwen25":  # pixels of the resized image: the budget travels with the space
        assert scores["answer_space"] == {"coords": "qwen25", "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}
    assert len(_lines(ev / "predictions.jsonl")) == 4
    assert main(["report", "--run", f"rl={ev}", "--data", str(test), "--out", str(tmp_path / "report")]) == 0
    assert "common_object" in (tmp_path / "report" / "report.md").read_text()
