import json

import pytest

from migrl.records import RecordError, load_records, record_from_dict

GOOD = {
    "id": "a-1",
    "task": "common_object",
    "images": ["x.png", "y.png"],
    "question": "Where?",
    "boxes": [{"image_index": 1, "bbox": [1, 2, 30, 40], "space": "pixels"}],
    "split": "test",
    "domain": "id",
}


def test_round_trip():
    r = record_from_dict(GOOD)
    assert record_from_dict(json.loads(r.to_json())) == r
    assert r.target.image_index == 1 and r.target.bbox == (1.0, 2.0, 30.0, 40.0)


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"id": None}, "id", "expected str or int"),
        ({"task": 3}, "task", "expected str"),
        ({"images": []}, "images", "no images"),
        ({"images": ["a.png", 5]}, "images[1]", "expected a path"),
        ({"question": None}, "question", "expected str"),
        ({"boxes": [{"image_index": 2, "bbox": [1, 2, 3, 4]}]}, "boxes[0].image_index", "not an index"),
        ({"boxes": [{"image_index": 0, "bbox": [1, 2, 3]}]}, "boxes[0].bbox", "expected [x1, y1, x2, y2]"),
        ({"boxes": [{"image_index": 0, "bbox": [5, 2, 3, 4]}]}, "boxes[0].bbox", "inverted"),
        ({"boxes": [{"image_index": 0, "bbox": [1, 2, "3", 4]}]}, "boxes[0].bbox", "finite numbers"),
        ({"boxes": [{"image_index": 0, "bbox": [1, 2, 3, 4], "space": "cm"}]}, "boxes[0].space", "unknown"),
        ({"boxes": [{"image_index": 0, "bbox": [0.1, 0.2, 1.3, 0.4], "space": "normalized"}]}, "boxes[0].bbox", "leaves [0, 1]"),
        ({"boxes": []}, "boxes", "at least one box"),
        ({"domain": "both"}, "domain", "expected one of"),
    ],
)
def test_errors_name_record_and_field(change, field, reason):
    with pytest.raises(RecordError) as err:
        record_from_dict({**GOOD, **change}, "data.jsonl:7")
    assert err.value.field_name == field
    assert reason in str(err.value)
    assert str(err.value).startswith("data.jsonl:7")


def test_bad_lines_are_reported_and_good_ones_load(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [
        json.dumps(GOOD),
        "{broken json",
        json.dumps({**GOOD, "id": "a-2", "images": []}),
        json.dumps({**GOOD, "id": "a-1"}),  # duplicate id
        json.dumps({**GOOD, "id": "a-3"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = load_records(path)
    assert [r.id for r in report.records] == ["a-1", "a-3"]
    assert len(report.errors) == 3
    assert f"{path}:2" in report.errors[0] and "not valid JSON" in report.errors[0]
    assert "(id a-2)" in report.errors[1] and "'images'" in report.errors[1]
    assert "duplicate id" in report.errors[2]
    with pytest.raises(RecordError):
        load_records(path, strict=True)


def test_multiple_choice_record_needs_no_box():
    r = record_from_dict({**GOOD, "boxes": [], "choices": ["(A) cat", "(B) dog"], "answer": "A"})
    assert r.choices == ("(A) cat", "(B) dog") and r.target is None
