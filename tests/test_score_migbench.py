import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import MIG_DATA
from migrl.benchmarks import get
from migrl.benchmarks.mig_bench import answer_part, official_extract_bbox, official_iou, target_image

score_migbench = get("mig-bench").score_file


@pytest.mark.parametrize(
    "text, box",
    [
        ("<|box_start|>(100,200),(300,400)<|box_end|>", [0.1, 0.2, 0.3, 0.4]),
        ("[0.1, 0.2, 0.3, 0.4]", [0.1, 0.2, 0.3, 0.4]),
        ("[100, 200, 300, 400]", [0.1, 0.2, 0.3, 0.4]),
        ("(0.1,0.2),(0.3,0.4)", [0.1, 0.2, 0.3, 0.4]),
        ("(0.1, 0.2, 0.3, 0.4)", [0.1, 0.2, 0.3, 0.4]),
        ("<box>100 200 300 400</box>", [0.1, 0.2, 0.3, 0.4]),
        ("(1,2),(500,600)", [0.001, 0.002, 0.5, 0.6]),  # one match: values >= 1 are divided
        ("(1,2),(500,600) and (0,0),(1,1)", [[1.0, 0.002, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]),  # several: > 1
        ("[0.5, 0.5, 1, 1]", []),  # mixed floats and ints match no pattern
        ("[100, 200, 300, 400] then (1,2),(3,4)", [0.001, 0.002, 0.003, 0.004]),  # pattern order, not position
        ("nothing", []),
        ("", []),
    ],
)
def test_official_extract_bbox(text, box):
    got = official_extract_bbox(text)
    if box and isinstance(box[0], list):
        assert len(got) == len(box) and all(g == pytest.approx(b) for g, b in zip(got, box))
    else:
        assert got == pytest.approx(box)


def test_official_iou_rules():
    assert official_iou([0.1, 0.1, 0.5, 0.5], []) == 0.0
    assert official_iou([0.1, 0.1, 0.5, 0.5], [[0.1, 0.1, 0.5, 0.5], [0, 0, 1, 1]]) == pytest.approx(1.0)  # first box
    assert official_iou([0.5, 0.1, 0.1, 0.5], [0.1, 0.1, 0.5, 0.5]) == 0.0  # inverted ground truth
    assert official_iou([0.2, 0.2, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]) == 0.0  # official divides by zero here
    assert official_iou([0.0, 0.0, 0.4, 0.4], [0.2, 0.0, 0.6, 0.4]) == pytest.approx(1 / 3)


def test_answer_part_extension():
    text = "<think>(1,1),(999,999) is the sky</think><answer>(100,200),(300,400)</answer>"
    assert answer_part(text) == "(100,200),(300,400)"
    assert answer_part("(1,1),(2,2)") == "(1,1),(2,2)"
    assert answer_part("<answer>(1,1),(2,2)") == "<answer>(1,1),(2,2)"  # unclosed: whole text


def _write_bench(tmp_path):
    records = [
        {"task": "common_object", "images": ["im/a.png", "im/b.png"], "question": "These images share one object in common. Recognize and locate this object in the 2th image. ", "answer": [0.1, 0.2, 0.5, 0.6], "additional_info": "", "need_format": True},
        {"task": "common_object", "images": ["im/a.png", "im/b.png"], "question": "These images share one object in common. Recognize and locate this object in the 1th image. ", "answer": [0.0, 0.0, 0.5, 0.5], "additional_info": "", "need_format": True},
        {"task": "region", "images": ["im/a.png", "im/b.png"], "question": "You are given a source image followed by its several regions. Please locate the 1th region picture in the source image. ", "answer": [0.5, 0.5, 1.0, 1.0], "additional_info": "", "need_format": True},
        {"task": "group_grounding", "images": ["im/a.png", "im/b.png"], "question": "Please find the bounding box coordinates for the area described by: <|object_ref_start|>a cat<|object_ref_end|>.", "answer": [0.2, 0.2, 0.4, 0.4], "additional_info": "It is in the second image. <|box_start|>(200,200),(400,400)<|box_end|>. ", "need_format": False},
    ]
    (tmp_path / "im").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "im" / "a.png")
    Image.new("RGB", (300, 600)).save(tmp_path / "im" / "b.png")
    data = tmp_path / "MIG_data.json"
    data.write_text(json.dumps(records))
    return data


def _run_score(*args, code=0):
    out = subprocess.run([sys.executable, "-m", "migrl.cli", "score", *map(str, args)], capture_output=True, text=True)
    assert out.returncode == code, out.stderr  # 3: something was skipped (a broken prediction line)
    return json.loads(out.stdout)


def test_score_cli_qwen2(tmp_path):
    data = _write_bench(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "\n".join(
            json.dumps(p)
            for p in [
                {"id": "0", "text": "<think>(0,0),(50,50)</think><answer><|box_start|>(100,200),(500,600)<|box_end|></answer>"},
                {"id": 1, "text": "I cannot tell."},
                {"id": "3", "text": "[0.2, 0.2, 0.4, 0.41]"},
                # record 2 has no prediction: wrong, and still counted
            ]
        )
        + "\n{not json\n"
    )
    result = _run_score("--benchmark", "mig-bench", "--data", data, "--predictions", preds, "--coords", "qwen2", code=3)
    assert result["bad_records"]["count"] == 1
    assert result["tasks"] == {"common_object": 50.0, "group_grounding": 100.0, "region": 0.0}
    assert result["id_avg"] == 25.0 and result["ood_avg"] == 100.0 and result["avg"] == 50.0
    assert result["missing_predictions"] == 1


def test_score_cli_qwen25_converts_per_image(tmp_path):
    data = _write_bench(tmp_path)
    from migrl.images import ImageSizing

    sizing = ImageSizing()
    (wa, ha), (wb, hb) = sizing.resized(200, 100), sizing.resized(300, 600)
    assert (wa, ha) != (wb, hb)
    preds = tmp_path / "p.jsonl"
    rows = [
        # record 0: target on image 2 (300x600 -> resized); the box in that image's resized pixels
        {"id": "0", "text": f'{{"bbox_2d": [{0.1 * wb}, {0.2 * hb}, {0.5 * wb}, {0.6 * hb}]}}'},
        # record 1: target on image 1; the same numbers but computed on image 2's size: wrong
        {"id": "1", "text": f'{{"bbox_2d": [0, 0, {0.5 * wb}, {0.5 * hb}]}}'},
        {"id": "2", "text": f'{{"bbox_2d": [{0.5 * wa}, {0.5 * ha}, {wa}, {ha}]}}'},
        # record 3: says image 1 although the object is in image 2
        {"id": "3", "text": f'{{"image": 1, "bbox_2d": [{0.2 * wa}, {0.2 * ha}, {0.4 * wa}, {0.4 * ha}]}}'},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _run_score("--benchmark", "mig-bench", "--data", data, "--predictions", preds, "--coords", "qwen25", "--image-root", tmp_path,
                        "--max-pixels", 12845056)
    assert result["tasks"] == {"common_object": 50.0, "group_grounding": 0.0, "region": 100.0}


def test_target_image_rules():
    assert target_image({"task": "region", "question": "locate the 3th region picture in the source image"}) == 0
    assert target_image({"task": "common_object", "question": "locate this object in the 3th image. "}) == 2
    assert target_image({"task": "refer_grounding", "question": "object in image-1 locate in the image-2."}) == 1
    assert target_image({"task": "group_grounding", "question": "q", "additional_info": "It is in the fourth image."}) == 3
    q = "marked with red bounding box(<|box_start|>(451,265),(519,388)<|box_end|>). Recognize and locate this object in the 2th image."
    assert target_image({"task": "multi_view", "question": q}) == 1


@pytest.mark.skipif(not MIG_DATA.exists(), reason=f"real MIG-Bench annotations not at {MIG_DATA}")
def test_real_migbench_file(tmp_path):
    records = json.loads(MIG_DATA.read_text())
    assert len(records) == 4295
    preds = {}
    for i, r in enumerate(records):
        x1, y1, x2, y2 = (round(v * 1000) for v in r["answer"])
        preds[str(i)] = f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    with pytest.warns(UserWarning, match="inverted"):
        result = score_migbench(MIG_DATA, preds, "qwen2")
    assert len(result["tasks"]) == 10
    # Perfect answers score 100 except the official rule's failures: inverted ground truths (5 in
    # common_object), and ground truths with a coordinate of 0.0005 or less that round to 0 are fine.
    assert result["tasks"]["common_object"] < 100.0
    assert all(v == 100.0 for t, v in result["tasks"].items() if t != "common_object")
    assert result["counts"]["common_object"][1] - result["counts"]["common_object"][0] == 5
    empty = score_migbench(MIG_DATA, {}, "qwen2")
    assert empty["avg"] == 0.0 and empty["missing_predictions"] == 4295


# Ground truths of real MIG_data.json records (by index in the file).
R0 = [0.321, 0.096, 0.999, 0.724]  # 0, common_object
R933 = [0.0, 0.0, 0.998, 0.486]  # 933, diff
R1461 = [0.241, 0.378, 0.447, 0.621]  # 1461, group_grounding
R1960 = [0.443, 0.247, 0.522, 0.395]  # 1960, multi_view
R3545 = [0.26, 0.473, 0.428, 0.93]  # 3545, refer_grounding

# (ground truth, model text, official box, official IoU). The last two columns are literals printed by the
# official Migician code (github.com/thunlp/Migician, eval/utils.py `extract_bbox` then `calculate_iou`, at
# commit 7b868a2), run outside this repository on these texts; for think/answer texts the official rule was
# applied to the <answer> part (migrl's documented extension). The same comparison on all 4,295 records of
# the real file, 9 styles x 4,295 texts, agreed item by item (100%). Keep these values: they are the
# official code's, not migrl's.
OFFICIAL_TABLE = [
    (R0, '<|box_start|>(321,96),(999,724)<|box_end|>', [0.321, 0.096, 0.999, 0.724], 1.0),
    (R0, '<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(400,150),(950,700)<|box_start|>', [0.4, 0.15, 0.95, 0.7], 0.7104541269751797),
    (R0, '(321, 96), (999, 724)', [0.321, 0.096, 0.999, 0.724], 1.0),
    (R1960, '<|box_start|>(443,247),(560,420)<|box_end|>', [0.443, 0.247, 0.56, 0.42], 0.5776394446914679),
    (R1960, '<|box_start|>(443,247),(600,450)<|box_end|>', [0.443, 0.247, 0.6, 0.45], 0.36685387970255107),
    (R1461, '[241, 378, 447, 621]', [0.241, 0.378, 0.447, 0.621], 1.0),
    (R1461, '[[250,390,460,600]]', [0.25, 0.39, 0.46, 0.6], 0.7837008411002501),
    (R1461, '<box>241 378 447 621</box>', [0.241, 0.378, 0.447, 0.621], 1.0),
    (R1461, '[0.241, 0.378, 0.447, 0.621]', [0.241, 0.378, 0.447, 0.621], 1.0),
    (R1461, '(0.24,0.38),(0.45,0.62)', [0.24, 0.38, 0.45, 0.62], 0.9690697400917324),
    (R1461, '(0.241, 0.378, 0.447, 0.621)', [0.241, 0.378, 0.447, 0.621], 1.0),
    (R933, '[0.0, 0.0, 1.0, 0.5]', [0.0, 0.0, 0.001, 0.5], 0.0010019750866935235),  # one match: 1.0 >= 1 is /1000
    (R933, '[0, 0, 998, 486]', [0.0, 0.0, 0.998, 0.486], 1.0),
    (R3545, '{"bbox_2d": [260, 473, 428, 930], "label": "cup"}', [0.26, 0.473, 0.428, 0.93], 1.0),
    (R3545, '```json\n[\n  {"bbox_2d": [0.26, 0.47, 0.43, 0.93]}\n]\n```', [0.26, 0.47, 0.43, 0.93], 0.9817902813299235),
    (R3545, '{"image": 2, "bbox_2d": [335, 440, 551, 866]}', [0.335, 0.44, 0.551, 0.866], 0.27637757764116044),
    (R3545, '<think>Image 1 shows (0,0),(999,999) the table.</think><answer><|box_start|>(260,473),(428,930)<|box_end|></answer>', [0.26, 0.473, 0.428, 0.93], 1.0),
    (R3545, '<think>[260, 473, 428, 930] looks right</think><answer>I cannot find it.</answer>', [], 0.0),
    (R3545, '<think>x</think>\n<answer>\n{"bbox_2d": [270, 480, 420, 920]}\n</answer>', [0.27, 0.48, 0.42, 0.92], 0.8596436386370737),
    (R3545, "I'm sorry, but I can't determine the location of that object.", [], 0.0),
    (R3545, 'The object does not appear in image 2.', [], 0.0),
    (R3545, '', [], 0.0),
    (R1960, '<|box_start|>(1,1),(522,395)<|box_end|> and <|box_start|>(443,247),(522,395)<|box_end|>', [[1.0, 1.0, 0.522, 0.395], [0.443, 0.247, 0.522, 0.395]], 0.0),  # several: 1 stays 1.0
    (R1960, '[443, 247, 522, 395]; [0, 0, 1, 1]', [[0.443, 0.247, 0.522, 0.395], [0.0, 0.0, 1.0, 1.0]], 1.0),
    (R1960, '[0, 0, 10, 10] then (443,247),(522,395)', [0.443, 0.247, 0.522, 0.395], 1.0),  # pattern order wins
    (R1960, '(443a,247),(522,395)', [], 0.0),
    (R1960, '[443, 247, 522]', [], 0.0),
    (R1960, '[-443, 247, 522, 395]', [], 0.0),
    (R1960, '[.443, .247, .522, .395]', [], 0.0),
    (R1960, '(443,247),(522,395', [], 0.0),
    (R1960, '( 443, 247 ), ( 522, 395 )', [], 0.0),
    (R1960, '(٤٤٣,٢٤٧),(٥٢٢,٣٩٥)', [0.443, 0.247, 0.522, 0.395], 1.0),  # \d and float() accept Arabic-Indic digits
    (R1960, '(522,395),(443,247)', [0.522, 0.395, 0.443, 0.247], 0.0),
    (R1960, '(1.0,0.5),(1.0,0.6)', [0.001, 0.5, 0.001, 0.6], 0.0),
]


@pytest.mark.parametrize("gt, text, box, iou", OFFICIAL_TABLE)
def test_equals_official_code(gt, text, box, iou):
    from migrl.boxes import Space
    from migrl.images import ImageSizing
    from migrl.benchmarks.mig_bench import predicted_box

    got_box = official_extract_bbox(answer_part(text))
    assert got_box == pytest.approx(box, abs=1e-12) if box and not isinstance(box[0], list) else got_box == box
    record = {"task": "common_object", "images": ["a.png", "b.png"], "question": "locate it in the 2th image.", "answer": gt}
    assert official_iou(gt, predicted_box(text, record, Space.QWEN2, None, ImageSizing())) == pytest.approx(iou, abs=1e-12)


def test_official_table_through_cli(tmp_path):
    data = tmp_path / "MIG_data.json"
    data.write_text(json.dumps([
        {"task": "common_object", "images": ["a.png", "b.png"], "question": "locate it in the 2th image.", "answer": gt,
         "additional_info": "", "need_format": True}
        for gt, *_ in OFFICIAL_TABLE
    ]))
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, (_, t, *_) in enumerate(OFFICIAL_TABLE)))
    result = _run_score("--benchmark", "mig-bench", "--data", data, "--predictions", preds, "--coords", "qwen2")
    hits = sum(iou >= 0.5 for *_, iou in OFFICIAL_TABLE)
    assert result["counts"]["common_object"] == [hits, len(OFFICIAL_TABLE)]
