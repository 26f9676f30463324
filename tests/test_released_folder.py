"""Released-shaped folders (real tokenizer, template, configs; tiny weights) and camera-size pictures:
the folder is what a user downloads, and each stage reads boxes, lengths and image settings from it as
it would from the real one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from camera_data import SIZES, records_file
from migrl.bad_records import OptionError
from migrl.boxes import format_answer
from migrl.cli import main
from migrl.images import ImageSizing

REPO = Path(__file__).resolve().parent.parent
PAPER_SFT = REPO / "recipes" / "paper" / "sft.yaml"

# QWEN2_BOX [200, 300, 600, 800] in Qwen2.5-VL's space under the released budget, by hand:
# smart_resize rounds each side to a multiple of 28 (all three sizes are under max_pixels 12845056):
# 640x480 -> 644x476, 1280x720 -> 1288x728, 1920x1080 -> 1932x1092; then x * W / 1000, y * H / 1000.
RELEASED_QWEN25 = {
    (640, 480): [129, 143, 386, 381],  # 128.8, 142.8, 386.4, 380.8
    (1280, 720): [258, 218, 773, 582],  # 257.6, 218.4, 772.8, 582.4
    (1920, 1080): [386, 328, 1159, 874],  # 386.4, 327.6, 1159.2, 873.6
}


def test_the_folder_has_the_released_layout_and_contents(released_folder):
    from migrl.models.loading import load_model, load_processor

    names = sorted(p.name for p in released_folder.iterdir())
    assert names == ["chat_template.json", "config.json", "generation_config.json", "merges.txt",
                     "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json",
                     "tokenizer_config.json", "vocab.json"]
    config = json.loads((released_folder / "config.json").read_text())
    assert "text_config" not in config and config["vocab_size"] == 152064 and config["image_token_id"] == 151655
    assert config["rope_scaling"]["type"] == "mrope"
    index = json.loads((released_folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" in index and any(k.startswith("model.layers.") for k in index)
    assert any(k.startswith("visual.blocks.") for k in index) and not any("language_model" in k for k in index)
    processor = load_processor(released_folder)
    tok = processor.tokenizer
    assert len(tok) == 151665 and tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert tok.convert_tokens_to_ids("<|file_sep|>") == 151664 and "<think>" not in tok.get_vocab()
    rendered = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], tokenize=False)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert "{% generation %}" not in processor.chat_template and "You are a helpful assistant." in processor.chat_template
    assert ImageSizing.from_processor(processor) == ImageSizing(3136, 12845056)
    gen = json.loads((released_folder / "generation_config.json").read_text())
    assert gen["repetition_penalty"] == 1.05 and gen["eos_token_id"] == [151645, 151643]
    model = load_model(released_folder)  # every released key is renamed into place: no random tensor left
    with safe_open(str(released_folder / index["model.layers.1.mlp.up_proj.weight"]), "pt") as f:
        assert (f.get_tensor("model.layers.1.mlp.up_proj.weight").float()
                == model.model.language_model.layers[1].mlp.up_proj.weight.float()).all()


def _perfect_predictions(records: Path, out: Path) -> Path:
    rows = []
    for line in records.read_text().splitlines():
        r = json.loads(line)
        from PIL import Image

        index = r["boxes"][0]["image_index"]
        with Image.open(r["images"][index]) as im:
            size = im.size
        rows.append({"id": r["id"], "text": f"<think>.</think><answer>{format_answer(RELEASED_QWEN25[size], index)}</answer>"})
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def test_score_reads_qwen25_boxes_with_the_model_folders_setting_or_refuses(released_folder, tmp_path, capsys):
    records = records_file(tmp_path, 6)
    preds = _perfect_predictions(records, tmp_path / "preds.jsonl")
    base = ["score", "--benchmark", "world", "--data", str(records), "--predictions", str(preds)]
    assert main(base + ["--coords", "qwen25"]) == 2  # no setting: refused, never the tiny model's
    assert "--model FOLDER" in capsys.readouterr().err
    assert main(base) == 2  # no space either
    assert main(base + ["--model", str(released_folder)]) == 0  # the folder decides: qwen2_5_vl -> qwen25
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tasks"]["common_object"] == 100.0
    assert result["answer_space"] == {"coords": "qwen25", "min_pixels": 3136, "max_pixels": 12845056}
    assert main(base + ["--coords", "qwen25", "--max-pixels", "12845056"]) == 0  # or the user says it
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tasks"]["common_object"] == 100.0


def test_synthesize_writes_targets_in_the_students_space_or_refuses(released_folder, tmp_path, capsys):
    records = records_file(tmp_path, 6, split="train")
    base = ["synthesize", "--data", str(records), "--teacher", "scripted", "--k", "2"]
    assert main(base + ["--out", str(tmp_path / "none")]) == 2
    assert "--model FOLDER" in capsys.readouterr().err and not (tmp_path / "none" / "answers.jsonl").exists()
    assert main(base + ["--out", str(tmp_path / "syn"), "--model", str(released_folder)]) == 0
    kept = [json.loads(line) for line in (tmp_path / "syn" / "sft.jsonl").read_text().splitlines()]
    assert kept, "the scripted teacher answers records without the world's facts too"
    from PIL import Image

    from migrl.boxes import iou, parse_answer

    for r in kept:
        box = parse_answer(r["response"]).first_box
        with Image.open(r["images"][box.image_index]) as im:
            size = im.size
        assert box.image_index == r["boxes"][0]["image_index"]
        assert iou(box.bbox, RELEASED_QWEN25[size]) >= 0.5  # the teacher's jitter, in the student's space
        assert r["meta"]["response_space"] == {"coords": "qwen25", "min_pixels": 3136, "max_pixels": 12845056}


def test_report_draws_runs_in_the_space_eval_stored_or_refuses(released_folder, tmp_path, capsys):
    records = records_file(tmp_path, 3)
    run = tmp_path / "eval"
    run.mkdir()
    _perfect_predictions(records, run / "predictions.jsonl")
    scores = {"tasks": {"common_object": 100.0}, "avg": 100.0, "id_avg": 100.0, "ood_avg": None}
    (run / "scores.json").write_text(json.dumps(scores))
    cmd = ["report", "--run", f"r={run}", "--data", str(records), "--out", str(tmp_path / "rep")]
    assert main(cmd) == 2  # an old scores.json says nothing about its space: refused
    assert "--model FOLDER" in capsys.readouterr().err
    scores["answer_space"] = {"coords": "qwen25", "min_pixels": 3136, "max_pixels": 12845056}
    (run / "scores.json").write_text(json.dumps(scores))
    assert main(cmd) == 0
    assert "miss" not in (tmp_path / "rep" / "report.md").read_text().lower()


def test_the_paper_sft_recipe_fits_camera_size_records(released_folder, tmp_path):
    from migrl.models.loading import load_processor
    from migrl.records import data_root, read_records
    from migrl.stages.sft import fit_records

    recipe = yaml.safe_load(PAPER_SFT.read_text())
    sizing = ImageSizing(recipe["min_pixels"], recipe["max_pixels"])
    processor = load_processor(released_folder, sizing)
    path = records_file(tmp_path, 9, split="train")
    think = "<think>" + " ".join(["The object is the yellow block near the middle."] * 60) + "</think>"
    records = [r.with_response(think + "<answer>" + format_answer([1, 2, 3, 4], 0) + "</answer>") for r in read_records(path)]
    assert max(len(r.images) for r in records) == 4 and {s for s in SIZES}  # up to 4 mixed camera sizes
    kept, errors = fit_records(records, data_root(path), processor, recipe["max_length"], True, {})
    assert len(kept) == len(records), errors
    kept, errors = fit_records(records, data_root(path), processor, 1024, True, {})  # the old recipe's length
    assert not kept and all("over max_length 1024" in e and "length" in e for e in errors)


def test_sft_stops_before_training_when_many_records_are_too_long(sft_data, tmp_path):
    from migrl.stages.sft import SFTStageConfig, train_sft

    cfg = SFTStageConfig(output_dir=str(tmp_path / "out"), data=str(sft_data), max_length=60, max_steps=1,
                         report_to="none", use_cpu=True, bf16=False)
    with pytest.raises(OptionError, match=r"too long .* Raise max_length \(now 60\)"):
        train_sft(cfg)
    assert not list((tmp_path / "out").glob("checkpoint-*")) and not (tmp_path / "out" / "model.safetensors").exists()
    bad = [json.loads(line) for line in (tmp_path / "out" / "bad_records.jsonl").read_text().splitlines()]
    assert bad and {b["field"] for b in bad} == {"length"}  # a length problem, not an image problem


def test_grpo_reports_too_long_prompts_as_length_and_stops(world_test, tmp_path):
    from migrl.stages.grpo import GRPOStageConfig, train_grpo

    cfg = GRPOStageConfig(output_dir=str(tmp_path / "g"), data=str(world_test), max_prompt_length=30, max_steps=1,
                          num_generations=2, per_device_train_batch_size=2, report_to="none", use_cpu=True, bf16=False)
    with pytest.raises(OptionError, match=r"max_prompt_length \(now 30\)"):
        train_grpo(cfg)
    bad = [json.loads(line) for line in (tmp_path / "g" / "bad_records.jsonl").read_text().splitlines()]
    assert bad and {b["field"] for b in bad} == {"length"}


def test_sft_refuses_responses_written_for_another_image_setting(tmp_path):
    from migrl.bad_records import BadRecords
    from migrl.records import read_records
    from migrl.stages.sft import responses_fit

    (r,) = read_records(records_file(tmp_path, 1, split="train"))
    written = r.with_meta("response_space", {"coords": "qwen25", "min_pixels": 3136, "max_pixels": 12845056})
    bad = BadRecords()
    assert responses_fit(written, ImageSizing(3136, 12845056), bad) and not bad.items
    assert not responses_fit(written, ImageSizing(3136, 1003520), bad)
    assert "12845056" in bad.items[0].reason and "1003520" in bad.items[0].reason


# Modules that may name the tiny model's image setting: its own builder, pretraining and world (the demo's
# data), and images.py where it is defined. Everything else takes the setting from a folder or the user.
TINY_SETTING_ALLOWED = {"images.py", "models/tiny.py", "stages/pretrain.py", "data/world.py", "data/base_skills.py"}


def test_no_command_defaults_to_the_tiny_models_image_setting():
    src = REPO / "src" / "migrl"
    users = {str(p.relative_to(src)) for p in src.rglob("*.py") if re.search(r"TINY_SIZING|112 \* 112", p.read_text())}
    assert users <= TINY_SETTING_ALLOWED, f"the tiny model's image setting used outside the demo's own modules: {users - TINY_SETTING_ALLOWED}"
    defaults = {str(p.relative_to(src)) for p in src.rglob("*.py") if re.search(r"sizing or ImageSizing\(\)", p.read_text())}
    assert not defaults, f"a silent image-setting fallback: {defaults}"


def test_the_sft_folder_loads_like_the_folder_it_started_from(sft_data, tiny_base, tmp_path):
    """TRL's collator turns the processor's tokenizer to truncation at max_length; saved as it was, the
    next stage's prompts (GRPO, a served engine's probe) were cut through their image tokens."""
    from migrl.models.loading import load_processor
    from migrl.stages.sft import SFTStageConfig, train_sft

    out = tmp_path / "out"
    train_sft(SFTStageConfig(output_dir=str(out), data=str(sft_data), max_length=512, max_steps=1, save_strategy="no",
                             per_device_train_batch_size=2, report_to="none", use_cpu=True, bf16=False))
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    before, after = load_processor(tiny_base), load_processor(out)
    long_text = "red circle " * 400
    assert len(after.tokenizer(long_text)["input_ids"]) == len(before.tokenizer(long_text)["input_ids"]) > 512
    assert ImageSizing.from_processor(after) == ImageSizing.from_processor(before)
    assert json.loads((out / "tokenizer_config.json").read_text()).get("padding_side") == \
        json.loads((tiny_base / "tokenizer_config.json").read_text()).get("padding_side")
