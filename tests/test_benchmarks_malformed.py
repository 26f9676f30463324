"""A broken line of a JSONL export is that item's error, named by file, item and line; the other
items load with their positional ids unchanged (shared by the list-based benchmark loaders)."""

import json

import pytest
from PIL import Image

from migrl.benchmarks import BENCHMARKS
from migrl.benchmarks.base import read_json


def _rows(name, tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    if name == "revos":
        (tmp_path / "v").mkdir()
        for n in range(6):
            Image.new("RGB", (40, 30)).save(tmp_path / "v" / f"{n}.jpg")
    return {
        "lisa": lambda i: {"image_path": "a.jpg", "instruction": f"x{i}", "boxes": [[1, 2, 30, 20]]},
        "ref-l4": lambda i: {"id": f"{i:06d}", "caption": "c", "bbox": [1, 1, 5, 5], "file_name": "a.jpg"},
        "blink": lambda i: {"idx": f"val_Counting_{i}", "question": "q", "choices": ["1", "2"], "answer": "(A)", "image_1": "a.jpg"},
        "mmiu": lambda i: {"task": "t", "options": "A: x\nB: y", "question": "q", "output": "A",
                           "input_image_path": ["./Low-level-semantic/t/a.jpg"]},
        "revos": lambda i: {"video_id": "v", "frames": [0, 1, 2, 3, 4, 5], "question": "q", "bbox_list": [[1, 1, 9, 9]] * 6},
    }[name]


@pytest.mark.parametrize("name", ["lisa", "ref-l4", "blink", "mmiu", "revos"])
def test_broken_jsonl_line(name, tmp_path):
    row = _rows(name, tmp_path)
    path = tmp_path / f"{name}_val.jsonl"
    path.write_text(json.dumps(row(0)) + "\n{\"truncated\": \n" + json.dumps(row(2)) + "\n")
    report = BENCHMARKS[name].load(path, tmp_path)
    assert len(report.records) == 2
    if name in ("lisa", "mmiu", "revos"):  # ids are positions: the broken line keeps its place
        assert [r.id for r in report.records] == ["0", "2"]
    assert len(report.errors) == 1
    err = report.errors[0]
    assert str(path) in err and ("item 1" in err or "annotation 1" in err) and "line 2" in err and "not valid JSON" in err


def test_broken_document_is_one_clear_error(tmp_path):
    path = tmp_path / "lisa_val.json"
    path.write_text('[\n  {"image_path": "a.jpg"},\n  {"image_path": "b.jpg"}\n')  # a JSON list cut short
    with pytest.raises(ValueError, match="lisa_val.json: not valid JSON or JSONL"):
        read_json(path)
