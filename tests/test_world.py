import json
from collections import Counter

import pytest
from PIL import Image

from migrl.data import world
from migrl.data.world import ID_TASKS, OOD_TASKS, TASKS, generate, gold_response
from migrl.images import TINY_SIZING
from migrl.records import load_records
from score_helpers import score_records


def test_ten_tasks_split_into_in_and_out_of_domain():
    assert len(TASKS) == 10 and set(ID_TASKS).isdisjoint(OOD_TASKS)
    assert set(ID_TASKS) == {"diff", "common_object", "region", "refer_grounding"}  # MIG-Bench's in-domain


@pytest.mark.parametrize("task", TASKS)
def test_items_are_deterministic_and_consistent(task):
    for i in range(5):
        a, b = generate(task, 3, "train", i), generate(task, 3, "train", i)
        assert a.question == b.question and a.target_box == b.target_box and a.cot == b.cot
        assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
        w, h = a.images[a.target_image].size
        x1, y1, x2, y2 = a.target_box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert a.cot[-1].startswith("Locate the ") and f"image {a.target_image + 1}." in a.cot[-1]
        for objects in a.objects:  # names are unique within an image
            assert len({o["name"] for o in objects}) == len(objects)


def test_splits_differ():
    assert generate("diff", 0, "train", 0).question == generate("diff", 0, "test", 0).question
    assert generate("diff", 0, "train", 0).target_box != generate("diff", 0, "test", 0).target_box


def test_target_object_pixels_have_its_colour():
    from migrl.data.scenes import COLOURS, SHADE

    for task in ("common_object", "refer_grounding", "group_grounding"):
        item = generate(task, 0, "test", 1)
        name = item.cot[-1][len("Locate the ") :].split(" in image")[0]
        colour = COLOURS[name.split(" ")[0]]
        x1, y1, x2, y2 = item.target_box
        image = item.images[item.target_image]
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        centre = image.getpixel((cx, cy))
        # The light across the picture adds SHADE * (x/w - 0.5) to red and SHADE * (y/h - 0.5) to blue.
        shade = (SHADE * (cx / (image.width - 1) - 0.5), 0.0, SHADE * (cy / (image.height - 1) - 0.5))
        expected = [c + s for c, s in zip(colour, shade)]
        assert max(abs(a - b) for a, b in zip(centre, expected)) < 12
        nearest = min(COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(centre, COLOURS[n])))
        assert nearest == name.split(" ")[0]


def test_written_split_and_gold_answers_score_100(world_test):
    report = load_records(world_test)
    assert not report.errors
    records = report.records
    assert Counter(r.task for r in records) == {t: 3 for t in TASKS}
    root = world_test.parent
    sizes = {Image.open(root / p).size for r in records for p in r.images}
    assert len(sizes) > 3  # images of many sizes
    # Gold answers are written in the resized space of the target image; scoring converts back.
    preds = {}
    for r in records:
        task, _, index = r.id.split("-")
        preds[r.id] = gold_response(generate(task, 7, "test", int(index)))
    scores = score_records(records, preds, root, "qwen25", TINY_SIZING)
    assert scores["avg"] == 100.0 and scores["id_avg"] == 100.0 and scores["ood_avg"] == 100.0
    # A box read as Qwen2 [0, 1000) (divided by 1000) is wrong almost always.
    assert score_records(records, preds, root, "qwen2", TINY_SIZING)["avg"] < 20


def test_rewriting_a_split_is_identical(tmp_path):
    a = world.write_split(tmp_path / "a", "test", 2, seed=1)
    b = world.write_split(tmp_path / "b", "test", 2, seed=1)
    assert a.read_text() == b.read_text()
    rows = [json.loads(line) for line in a.read_text().splitlines()]
    for row in rows:
        for p in row["images"]:
            assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()



def test_migrl_world_writes_marked_boxes_in_the_students_space(tmp_path):
    """The red box a tracking question names is where the student's numbers put it: resized-image pixels for
    the tiny Qwen2.5-VL base, [0, 1000] of the image for a Qwen3-VL student (its folder says so); both are the
    same box of the picture."""
    import re

    from migrl.boxes import convert
    from migrl.cli import main
    from migrl.models.loading import shipped_base

    def marked(folder, *flags):
        assert main(["world", "--out", str(folder), "--train", "0", "--test", "1", "--tasks", "object_tracking", *flags]) == 0
        record = json.loads((folder / "test.jsonl").read_text().splitlines()[0])
        size = Image.open(folder / record["images"][0]).size
        return [float(v) for v in re.search(r"red box \[([^\]]+)\]", record["question"]).group(1).split(",")], size

    (pixels, size), (thousandths, size3) = marked(tmp_path / "tiny"), marked(tmp_path / "q3", "--model", str(shipped_base("qwen3-vl")))
    assert size == size3 and max(thousandths) > max(size)  # the same picture; [0, 1000] runs past its pixels
    from migrl.images import TINY_SIZING

    in_pixels = convert(pixels, "qwen25", "pixels", size, TINY_SIZING)
    assert convert(thousandths, "qwen2", "pixels", size) == pytest.approx(in_pixels, abs=size[0] / 100)
