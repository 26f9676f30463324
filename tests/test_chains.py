"""Where a run's points come from: the chain's last locate step against the worked chain, and the hits after it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from migrl.boxes import Space, convert, format_answer
from migrl.data.world import GENERATORS, generate, gold_response, last_locate_step, write_split
from migrl.images import TINY_SIZING, image_size
from migrl.jsonl import write_jsonl_atomic
from migrl.records import Record, data_root, read_records
from migrl.report.build import write_report
from migrl.scoring.chains import chain_rates, gold_step
from score_helpers import score_records
from test_report_build import table_rows, write_eval


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_every_worked_chain_ends_in_a_step_naming_the_target_and_its_image(task):
    for index in range(5):
        item = generate(task, 3, "test", index)
        name, image = last_locate_step(gold_response(item))
        assert image == item.target_image
        # the named object is the target (region's target is the object's box grown by 2 px)
        assert any(o["name"] == name and max(abs(a - b) for a, b in zip(o["bbox"], item.target_box)) <= 2
                   for o in item.objects[image])


def test_the_last_step_counts_and_a_broken_one_is_no_step():
    text = "Locate the red cross in image 1. Then: Locate the blue circle in image 3.</think>"
    assert last_locate_step(text) == ("blue circle", 2)
    assert last_locate_step("Locate the red cross in image.") is None
    assert last_locate_step("Locate the red in image 2.") is None
    assert last_locate_step("") is None


def answer(record: Record, root: Path, step: str | None, box_right: bool) -> str:
    """A chain ending in ``step`` (None: no locate step), then the gold box or one in a far corner, on the target image."""
    gt = record.target
    size = image_size(root / record.images[gt.image_index])
    box = convert(gt.bbox, gt.space, Space.QWEN25, size, TINY_SIZING) if box_right else (0.0, 0.0, 2.0, 2.0)
    return f"<think>Image 1 shows it. {step or 'I see it.'}</think><answer>{format_answer(box, gt.image_index)}</answer>"


def other_step(record: Record) -> str:
    name, image = gold_step(record)
    return f"Locate the {name} in image {image + 2}."  # the right object, on another image


@pytest.fixture
def world(tmp_path):
    data = write_split(tmp_path / "world", "test", 4, seed=1)
    return data, read_records(data), data_root(data)


def test_a_right_step_and_its_hit_are_told_apart_from_the_rest(world):
    data, records, root = world
    texts = {}
    for r in records:  # per task: right step + hit, right step + miss, wrong image + hit, no step + miss
        i = int(r.id.rsplit("-", 1)[1])
        right = r.meta["cot"][-1]
        texts[r.id] = answer(r, root, [right, right, other_step(r), None][i], box_right=i in (0, 2))
    scores = score_records(records, texts, root, Space.QWEN25, TINY_SIZING)
    rates = chain_rates(records, texts, scores["per_item"])
    assert set(rates) == {r.task for r in records}
    for task, rate in rates.items():
        assert (rate.items, rate.right_step, rate.hit_after_right, rate.hit_after_other) == (4, 50.0, 50.0, 50.0), task
        assert scores["tasks"][task] == 50.0  # the hits are the scorer's, and add up to its accuracy


def test_an_unanswered_item_is_a_wrong_step_and_records_without_a_chain_are_left_out(world):
    data, records, root = world
    plain = [replace(r, meta={}) for r in records[:4]]
    texts = {r.id: r.meta["cot"][-1] for r in records[4:8]}  # items 0-3 (chains removed) and 8+ unanswered
    outcomes = {r.id: [r.task, 0] for r in records}
    rates = chain_rates(plain + records[4:], texts, outcomes)
    assert records[0].task not in rates
    first = rates[records[4].task]
    assert (first.items, first.right_step, first.hit_after_right, first.hit_after_other) == (4, 100.0, 0.0, None)
    second = rates[records[8].task]
    assert (second.items, second.right_step, second.hit_after_right) == (4, 0.0, None)


def test_the_report_shows_the_chain_table_for_world_records_only(world, tmp_path):
    data, records, root = world
    gold = {r.id: answer(r, root, r.meta["cot"][-1], box_right=True) for r in records}
    wrong = {r.id: answer(r, root, other_step(r), box_right=False) for r in records}
    write_eval(tmp_path / "gold", records, root, gold)
    write_eval(tmp_path / "wrong", records, root, wrong)
    runs = {"gold": tmp_path / "gold", "wrong": tmp_path / "wrong"}
    md, _ = write_report(runs, data, tmp_path / "report", pictures_per_task=0, coords="qwen25", sizing=TINY_SIZING)
    text = md.read_text(encoding="utf-8")
    assert "Chains of thought: the last step" in text
    rows = table_rows(text.split("Chains of thought: the last step")[1])
    for task in {r.task for r in records}:
        assert rows[task][1:] == ["100.00", "100.00", "-", "0.00", "-", "0.00"], task
    assert rows["ID avg"][1:] == rows["OOD avg"][1:] == ["100.00", "100.00", "-", "0.00", "-", "0.00"]

    plain = data.with_name("plain.jsonl")  # the same records without their worked chains
    write_jsonl_atomic(plain, (replace(r, meta={}).to_dict() for r in records))
    md, _ = write_report(runs, plain, tmp_path / "report-plain", pictures_per_task=0, coords="qwen25", sizing=TINY_SIZING)
    assert "Chains of thought" not in md.read_text(encoding="utf-8")
