import json

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from migrl.images import TINY_SIZING, ImageSizing
from migrl.models.tiny import SPECIAL_TOKENS, build_tiny_model


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), "test", seed=1)


def test_folder_loads_with_plain_from_pretrained(tiny_folder):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_folder)
    processor = AutoProcessor.from_pretrained(tiny_folder)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert (tiny_folder / "model.safetensors").exists()
    tok = processor.tokenizer
    for t in SPECIAL_TOKENS:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.padding_side == "left"
    assert ImageSizing.from_processor(processor) == TINY_SIZING


def test_chat_template_renders_qwen_format(tiny_folder):
    processor = AutoProcessor.from_pretrained(tiny_folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        "Where?<|im_end|>\n<|im_start|>assistant\nHere.<|im_end|>\n"
    )
    prompt = processor.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_image_tokens_follow_each_images_size(tiny_folder):
    processor = AutoProcessor.from_pretrained(tiny_folder)
    sizes = [(120, 100), (140, 105), (96, 128)]
    images = [Image.new("RGB", s) for s in sizes]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "q"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=images, return_tensors="pt")
    n_tokens = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert n_tokens == sum(TINY_SIZING.image_tokens(w, h) for w, h in sizes) == 16 + 12 + 15
    grid = batch["image_grid_thw"].tolist()
    assert [(g[2] * 14, g[1] * 14) for g in grid] == [TINY_SIZING.resized(w, h) for w, h in sizes]


def test_assistant_mask_covers_only_the_answer(tiny_folder):
    processor = AutoProcessor.from_pretrained(tiny_folder)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (112, 112))}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Right here."}]},
    ]
    out = processor.apply_chat_template([messages], tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt")
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    assert processor.tokenizer.decode(ids[mask]) == "Right here.<|im_end|>"


def test_generation_runs_on_a_multi_image_batch(tiny_folder):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_folder).eval()
    processor = AutoProcessor.from_pretrained(tiny_folder)
    convs = [[{"type": "image"}, {"type": "text", "text": "a"}], [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "bb"}]]
    texts = [processor.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False) for c in convs]
    images = [Image.new("RGB", (112, 112)), Image.new("RGB", (120, 100)), Image.new("RGB", (140, 105))]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 5


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_shipped_base_is_small_and_plain(family):
    from migrl.models.family import TINY_FAMILIES, family_of
    from migrl.models.loading import shipped_base

    base = shipped_base(family)
    size = (base / "model.safetensors").stat().st_size
    assert size < 20 * 1024 * 1024
    assert not list(base.glob("*.bin")) and not list(base.glob("*.pt"))  # no leftover resumable checkpoint
    assert family_of(base) is TINY_FAMILIES[family]
    log = json.loads((base / "pretrain_log.json").read_text())
    assert log["final_skills"]  # measured skills ship with the weights
    assert log["config"].get("family", "qwen2.5-vl") == family  # the Qwen2.5 log predates the field


def test_a_run_can_start_late_in_the_curriculum():
    from migrl.data.base_skills import STAGES
    from migrl.models.loading import TINY_BASE, load_processor
    from migrl.stages.pretrain import _Batches

    processor = load_processor(TINY_BASE)
    fresh = _Batches(processor, 2, 0, steps=100, vision_steps=10)
    assert fresh.stage(0) is STAGES[-1]  # the vision-only steps see the richest pictures
    assert fresh.stage(10) is STAGES[0] and fresh.stage(99) is STAGES[-1]
    late = _Batches(processor, 2, 0, steps=100, vision_steps=0, curriculum_start=0.7)
    assert {late.stage(step) for step in range(100)} == {STAGES[-1]}  # only the multi-image stage


def test_pretraining_a_folder_of_another_shape_is_refused_before_anything_is_written(tiny_folder, capsys):
    from migrl.bad_records import ExitCode
    from migrl.cli import main

    before = {p.name: p.stat().st_mtime_ns for p in tiny_folder.iterdir()}
    assert main(["pretrain-base", "--out", str(tiny_folder), "--steps", "1"]) == ExitCode.USAGE  # --shape base
    err = capsys.readouterr().err
    assert "shape test, not base" in err and "--shape test" in err
    assert {p.name: p.stat().st_mtime_ns for p in tiny_folder.iterdir()} == before


@pytest.mark.slow  # two 2-step runs of a test-shape model, each with its final skill check: ~25 s
def test_a_second_phase_starts_from_the_finished_base_and_keeps_its_log(tmp_path):
    from safetensors.torch import load_file

    from migrl.cli import main

    out = tmp_path / "base"
    common = ["pretrain-base", "--shape", "test", "--steps", "2", "--batch-size", "2", "--warmup-steps", "1",
              "--eval-every", "1", "--eval-items", "2", "--out", str(out)]
    assert main(common + ["--vision-steps", "1"]) == 0
    first = json.loads((out / "pretrain_log.json").read_text())
    weights = load_file(out / "model.safetensors")
    # lr 0: a second phase that starts from the finished weights leaves them as they were
    assert main(common + ["--vision-steps", "0", "--curriculum-start", "0.7", "--lr", "0", "--seed", "1"]) == 0
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    log = json.loads((out / "pretrain_log.json").read_text())
    assert log["config"]["curriculum_start"] == 0.7 and log["earlier_phases"] == [first]
    assert not (out / "checkpoint.pt").exists()
