"""The tiny Qwen3-VL base: its factory, its answers in [0, 1000] of each image, its pretraining and demo; and
the default family's (tiny Qwen2.5-VL) data, pinned so that adding Qwen3-VL changed none of it."""

import json
import random
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from default_outputs import base_skills_digest, pretrain_batches_digest, world_digest
from migrl.bad_records import OptionError
from migrl.boxes import QWEN2_SCALE, Space, convert, iou, round_box
from migrl.data import base_skills, world
from migrl.data.world import TASKS, TRAINING_SOURCES
from migrl.images import TINY_SIZING, ImageSizing, tiny_sizing
from migrl.models.family import DEFAULT_FAMILY, QWEN25_VL, QWEN3_VL, TINY_FAMILIES, family_of
from migrl.models.loading import TINY_BASE, load_model, load_processor
from migrl.models.tiny import build_tiny_model, interleaved_mrope_counts
from migrl.scoring.judge import first_box
from score_helpers import score_records

QWEN3_SIZING = tiny_sizing(QWEN3_VL)
SCALE = QWEN2_SCALE  # Qwen3-VL's relative coordinates: [0, 1000] of each image

# Computed by tests/default_outputs.py on the code before the Qwen3-VL tiny base existed (commit 54ac470).
DEFAULT_WORLD = "6831483cfc4dafa4"
DEFAULT_BASE_SKILLS = "ed2cb76c4d1dd1ff"
DEFAULT_PRETRAIN_BATCHES = "f4a2b1946a8f9985"


@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), "test", seed=1, family=QWEN3_VL)


def _pixels(box, size):
    """A [0, 1000] box back in pixels of an image of ``size``, as integers (the world's boxes are)."""
    return round_box(convert(box, Space.QWEN2, Space.PIXELS, size))


# --------------------------------------------------------------------------- the factory


def test_folder_loads_as_qwen3_vl_with_deepstack(qwen3_folder):
    model, processor = load_model(qwen3_folder, dtype=torch.float32), load_processor(qwen3_folder)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and type(processor).__name__ == "Qwen3VLProcessor"
    assert family_of(qwen3_folder) is QWEN3_VL and TINY_FAMILIES["qwen3-vl"] is QWEN3_VL
    vision, text = model.config.vision_config, model.config.text_config
    assert vision.deepstack_visual_indexes and len(model.model.visual.deepstack_merger_list) == len(vision.deepstack_visual_indexes)
    assert (vision.patch_size, vision.spatial_merge_size) == (QWEN3_VL.geometry.patch, QWEN3_VL.geometry.merge)
    rope = text.rope_parameters
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == text.head_dim // 2
    # The section is what interleaving really gives each axis (transformers interleaves every Qwen3-VL).
    assert interleaved_mrope_counts(text.head_dim // 2, tuple(rope["mrope_section"])) == tuple(rope["mrope_section"])
    assert ImageSizing.from_processor(processor) == QWEN3_SIZING and QWEN3_SIZING.factor == QWEN3_VL.geometry.factor


def test_it_keeps_the_tiny_bases_tokenizer(qwen3_folder):
    ours = load_processor(qwen3_folder).tokenizer
    shipped = load_processor(TINY_BASE).tokenizer
    assert ours.get_vocab() == shipped.get_vocab() and ours.padding_side == "left"


def test_chat_template_renders_qwen3_vls_released_text(qwen3_folder):
    from migrl.models.released import released_chat_template

    processor = load_processor(qwen3_folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    released = processor.apply_chat_template(messages, tokenize=False, chat_template=released_chat_template("qwen3_vl"))
    assert text == released and not text.startswith("<|im_start|>system")  # Qwen3-VL adds no default system turn
    batch = processor.apply_chat_template([[{**messages[0], "content": [{"type": "image", "image": Image.new("RGB", (112, 112))},
                                                                        {"type": "text", "text": "Where?"}]}, messages[1]]],
                                          tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt")
    answer = batch["input_ids"][0][batch["assistant_masks"][0].bool()]
    assert processor.tokenizer.decode(answer).startswith("Here.<|im_end|>")


def test_world_pictures_get_about_the_qwen25_bases_image_tokens(qwen3_folder):
    processor = load_processor(qwen3_folder)
    sizes = [(112, 112), (140, 105), (96, 128), (56, 56)]
    content = [{"type": "image"} for _ in sizes] + [{"type": "text", "text": "q"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", s) for s in sizes], return_tensors="pt")
    n_tokens = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert n_tokens == sum(QWEN3_SIZING.image_tokens(*s) for s in sizes) == 16 + 12 + 12 + 4
    assert sum(TINY_SIZING.image_tokens(*s) for s in sizes) == 16 + 12 + 15 + 4  # the Qwen2.5-VL base's
    patch = QWEN3_VL.geometry.patch
    assert [(g[2] * patch, g[1] * patch) for g in batch["image_grid_thw"].tolist()] == [QWEN3_SIZING.resized(*s) for s in sizes]


def test_a_forward_pass_adds_deepstack_features(qwen3_folder):
    model, processor = load_model(qwen3_folder, dtype=torch.float32), load_processor(qwen3_folder)
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (120, 100))}, {"type": "text", "text": "a"}]}]
    batch = processor.apply_chat_template([messages], tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        vision = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        logits = model(**batch).logits
    assert len(vision.deepstack_features) == len(model.config.vision_config.deepstack_visual_indexes)
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


# --------------------------------------------------------------------------- answers in [0, 1000]


def _numbers(text):
    return [int(v) for v in re.findall(r"-?\d+", text)]


def test_base_skill_answers_are_relative_and_convert_back_to_the_pixel_box():
    from migrl.stages.pretrain import _turn_correct

    sizes, rng_qwen3, rng_default = set(), random.Random(3), random.Random(3)
    for _ in range(60):
        ex = base_skills.make_example(rng_qwen3, sizing=QWEN3_SIZING, coords=QWEN3_VL.coords)
        same = base_skills.make_example(rng_default)  # the same draws: pictures and skills are the default family's
        assert [im.tobytes() for im in ex.images] == [im.tobytes() for im in same.images]
        assert [t.skill for t in ex.turns] == [t.skill for t in same.turns]
        for turn in ex.turns:
            if turn.box is None:
                continue
            size = ex.images[turn.image_index].size
            sizes.add(size)
            box = first_box(turn.answer).bbox
            assert all(0 <= v <= SCALE for v in box) and _pixels(box, size) == list(turn.box)
            single = base_skills.Example(ex.images, [turn])
            assert _turn_correct(single, turn.answer, QWEN3_SIZING, QWEN3_VL.coords)  # pretraining's check agrees
    assert len(sizes) > 3  # pictures of many sizes


def test_marked_boxes_in_skill_questions_are_relative():
    rng = random.Random(5)
    for _ in range(20):
        ex = base_skills.make_example(rng, 1, 1, "name_marked", QWEN3_SIZING, coords=QWEN3_VL.coords)
        box = _numbers(ex.turns[0].question)[:4]
        assert _pixels(box, ex.images[0].size) in [list(o.box) for o in ex.scenes[0].objects]


@pytest.mark.parametrize("task", TASKS + TRAINING_SOURCES)
def test_world_gold_answers_and_marked_boxes_are_relative(task):
    for i in range(4):
        item = world.generate(task, 0, "test", i, QWEN3_SIZING, QWEN3_VL.coords)
        default = world.generate(task, 0, "test", i)
        assert [im.tobytes() for im in item.images] == [im.tobytes() for im in default.images]
        assert item.cot == default.cot and item.target_box == default.target_box
        found = first_box(world.gold_response(item, QWEN3_SIZING, QWEN3_VL.coords))
        size = item.images[item.target_image].size
        assert found.image_index == item.target_image and all(0 <= v <= SCALE for v in found.bbox)
        assert _pixels(found.bbox, size) == list(item.target_box)
        if "red box" in item.question:  # the marked object of image 1
            box = _numbers(item.question.split("red box", 1)[1])[:4]
            assert _pixels(box, item.images[0].size) in [o["bbox"] for o in item.objects[0]]
        else:
            assert item.question == default.question


def test_a_qwen3_world_split_scores_its_gold_answers_100(tmp_path):
    path = world.write_split(tmp_path, "test", 2, seed=4, sizing=QWEN3_SIZING, coords=QWEN3_VL.coords)
    from migrl.records import load_records

    records = load_records(path).records
    preds = {r.id: world.gold_response(world.generate(r.task, 4, "test", int(r.id.rsplit("-", 1)[1]), QWEN3_SIZING,
                                                      QWEN3_VL.coords), QWEN3_SIZING, QWEN3_VL.coords) for r in records}
    assert score_records(records, preds, tmp_path, QWEN3_VL.coords.value, QWEN3_SIZING)["avg"] == 100.0
    assert score_records(records, preds, tmp_path, QWEN25_VL.coords.value, TINY_SIZING)["avg"] < 20  # read as pixels: wrong


# --------------------------------------------------------------------------- the default family is unchanged


def test_default_world_is_unchanged(tmp_path):
    assert DEFAULT_FAMILY is QWEN25_VL and TINY_SIZING == ImageSizing(3136, 112 * 112)
    assert world_digest(tmp_path) == DEFAULT_WORLD


def test_default_base_skills_are_unchanged():
    assert base_skills_digest() == DEFAULT_BASE_SKILLS


def test_default_pretraining_batches_are_unchanged():
    assert pretrain_batches_digest() == DEFAULT_PRETRAIN_BATCHES


# --------------------------------------------------------------------------- pretraining and the demo


def test_pretraining_refuses_a_folder_of_another_family(qwen3_folder):
    from migrl.configs import PretrainConfig
    from migrl.stages.pretrain import pretrain

    with pytest.raises(OptionError, match="Qwen3-VL.*--family qwen2.5-vl"):
        pretrain(PretrainConfig(out=str(qwen3_folder), family="qwen2.5-vl"))


def test_demo_without_a_shipped_qwen3_base_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    import migrl.models.loading as loading
    from migrl.cli import main

    monkeypatch.setattr(loading, "shipped_base", lambda name: tmp_path / f"tiny-base-{name}")
    assert main(["demo", "--family", "qwen3-vl", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "migrl pretrain-base --family qwen3-vl --out" in err
    assert not (tmp_path / "demo").exists()  # stopped before writing anything


def test_demo_base_must_be_of_its_family(qwen3_folder, tmp_path):
    from migrl.demo import Demo, DemoConfig, resolve_base

    with pytest.raises(OptionError, match="--family qwen3-vl"):
        resolve_base(DemoConfig(out=str(tmp_path), base=str(qwen3_folder)))
    assert resolve_base(DemoConfig(out=str(tmp_path))) is None  # the default: every stage's own default base
    space = Demo(DemoConfig(out=str(tmp_path), base=str(qwen3_folder), family="qwen3-vl")).student_space()
    assert space.coords is Space.QWEN2 and space.sizing == QWEN3_SIZING
    default = Demo(DemoConfig(out=str(tmp_path))).student_space()
    assert default.coords is Space.QWEN25 and default.sizing == TINY_SIZING


@pytest.mark.slow  # trains (2 steps) and runs the final skill check (1,200 generations of a random model): ~11 s
def test_pretrain_base_qwen3_smoke_writes_a_loadable_folder(tmp_path):
    from migrl.cli import main

    out = tmp_path / "base"
    argv = ["pretrain-base", "--family", "qwen3-vl", "--shape", "test", "--steps", "2", "--batch-size", "2",
            "--vision-steps", "1", "--warmup-steps", "1", "--eval-every", "1", "--eval-items", "2", "--out", str(out)]
    assert main(argv) == 0
    assert family_of(out) is QWEN3_VL and not (out / "checkpoint.pt").exists()
    model, processor = load_model(out), load_processor(out)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and ImageSizing.from_processor(processor) == QWEN3_SIZING
    log = json.loads((out / "pretrain_log.json").read_text())
    assert log["config"]["family"] == "qwen3-vl" and log["final_skills"] and log["log"][-1]["step"] == 2


@pytest.mark.slow  # every stage of the demo, on a random-init tiny Qwen3-VL: ~8 s
def test_demo_runs_on_a_qwen3_base_in_its_conventions(qwen3_folder, tmp_path):
    from migrl.demo import DemoConfig, run_demo
    from migrl.records import load_records

    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=str(out), base=str(qwen3_folder), family="qwen3-vl", per_task=1, train_per_task=3,
                                 rl_per_task=2, sft_max_steps=2, grpo_max_steps=1, batch_size=8))
    assert set(report["stages"]) == {"base", "cot_sft", "rl"}
    for stage in report["stages"]:
        assert json.loads((out / "eval" / stage / "scores.json").read_text())["answer_space"] == {"coords": "qwen2"}
    kept = load_records(out / "synthesize" / "sft.jsonl").records
    assert kept
    for record in kept:  # the targets are in [0, 1000] and convert back onto the ground truth (the filter's IoU)
        box = first_box(record.response).bbox
        size = Image.open(record.images[record.target.image_index]).size
        assert all(0 <= v <= SCALE for v in box)
        assert iou(convert(box, Space.QWEN2, Space.PIXELS, size), record.target.bbox) >= 0.5
    marked = [r for r in load_records(out / "world" / "test.jsonl").records if "red box" in r.question]
    for record in marked:  # the world was written in the base's space: the marked box is relative too
        box = _numbers(record.question.split("red box", 1)[1])[:4]
        size = Image.open(out / "world" / record.images[0]).size
        assert _pixels(box, size) in [o["bbox"] for o in record.meta["objects"][0]]
    assert marked


def test_the_qwen3_demo_starts_from_the_shipped_base_with_the_shared_recipes(tmp_path):
    from migrl.demo import RECIPES, Demo, DemoConfig, demo_recipe
    from migrl.models.loading import shipped_base

    demo = Demo(DemoConfig(out=str(tmp_path / "demo"), family="qwen3-vl"))
    assert Path(demo.base) == shipped_base("qwen3-vl") and family_of(demo.base) is QWEN3_VL
    assert demo.student_space().coords is Space.QWEN2
    assert demo_recipe("sft", "qwen3-vl") == demo_recipe("sft") == RECIPES / "sft.yaml"
    assert demo_recipe("grpo", "qwen3-vl") == demo_recipe("grpo") == RECIPES / "grpo.yaml"
