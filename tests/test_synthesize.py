import hashlib
import json
from pathlib import Path

import pytest

from asks import counting_teacher
from fake_openai_server import FakeOpenAIServer
from migrl.boxes import Space, parse_answer
from migrl.data.world import ID_TASKS, write_split
from migrl.engines.openai_compat import OpenAICompatEngine, OpenAIConfig, image_data_url
from migrl.engines.scripted import ScriptedTeacher
from migrl.engines.teachers import OpenAITeacher
from migrl.images import TINY_SIZING, ImageSizing, image_size, load_image
from migrl.jsonl import read_jsonl
from migrl.records import read_records
from migrl.run_identity import StaleRunError
from migrl.images import ImageSizes
from migrl.scoring.judge import record_iou
from migrl.stages.synthesize import SynthesizeConfig, synthesize


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("pool"), "train", 12, seed=3, tasks=ID_TASKS)


def test_filter_keeps_only_items_right_in_all_samples(pool, tmp_path):
    stats = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), ScriptedTeacher(seed=1), student_sizing=TINY_SIZING)
    assert stats["asked"] == 48 and 0 < stats["kept"] < stats["asked"]
    assert stats["kept"] + sum(stats["dropped"].values()) == stats["asked"]
    assert sum(t["kept"] for t in stats["tasks"].values()) == stats["kept"]
    kept = read_records(tmp_path / "sft.jsonl")
    assert len(kept) == stats["kept"]
    sizes = ImageSizes(pool.parent)
    answers = {r["id"]: r["responses"] for r in read_jsonl(tmp_path / "answers.jsonl")}
    teacher = ScriptedTeacher(seed=1)
    for r in kept:
        parsed = parse_answer(r.response)
        assert parsed.format_ok
        # the response is in the student's space (tiny sizing) and right
        assert record_iou(r.response, r, Space.QWEN25, sizes, TINY_SIZING) >= 0.5
        # and every one of the teacher's k answers was right, in the teacher's space
        assert all(record_iou(a, r, Space.QWEN25, sizes, teacher.sizing) >= 0.5 for a in answers[r.id])


def test_a_rerun_resumes_only_the_same_teachers_answers(pool, tmp_path):
    """Another teacher (here: another seed) or another k into the same --out stops before asking
    anything; answers.jsonl keeps the first teacher's answers untouched, and the same teacher resumes."""
    first = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), ScriptedTeacher(seed=1), student_sizing=TINY_SIZING)
    log = (tmp_path / "answers.jsonl").read_bytes()
    other, fewer = counting_teacher(seed=2), counting_teacher(seed=1)
    with pytest.raises(StaleRunError, match="seed"):
        synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), other, student_sizing=TINY_SIZING)
    with pytest.raises(StaleRunError, match="k: 4 then, 2 now"):
        synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path), k=2), fewer, student_sizing=TINY_SIZING)
    assert other.asked == fewer.asked == []
    assert (tmp_path / "answers.jsonl").read_bytes() == log
    same = counting_teacher(seed=1)
    assert synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), same, student_sizing=TINY_SIZING) == first
    assert same.asked == []  # every item answered: nothing asked again
    assert (tmp_path / "answers.jsonl").read_bytes() == log


def test_teacher_boxes_are_rewritten_into_the_students_space(pool, tmp_path):
    """The teacher resizes with Qwen2.5-VL's setting, the student with the tiny one: a 140x105 picture
    is 140x112 to the teacher and 112x84 to the student, so the numbers must change."""
    synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), ScriptedTeacher(seed=1), student_sizing=TINY_SIZING)
    answers = {r["id"]: r["responses"] for r in read_jsonl(tmp_path / "answers.jsonl")}
    checked = 0
    for r in read_records(tmp_path / "sft.jsonl"):
        size = image_size(pool.parent / r.images[r.target.image_index])
        if ImageSizing().resized(*size) == TINY_SIZING.resized(*size):
            continue
        kept_box = parse_answer(r.response).first_box.bbox
        teacher_boxes = [parse_answer(a).first_box.bbox for a in answers[r.id]]
        assert kept_box not in teacher_boxes
        # By hand, not through migrl.boxes: from the teacher's resized picture to the student's, per axis.
        (tw, th), (sw, sh) = ImageSizing().resized(*size), TINY_SIZING.resized(*size)
        as_student = [(b[0] * sw / tw, b[1] * sh / th, b[2] * sw / tw, b[3] * sh / th) for b in teacher_boxes]
        assert min(max(abs(k - c) for k, c in zip(kept_box, box)) for box in as_student) <= 0.5 + 1e-9  # rounded
        checked += 1
    assert checked > 0


def test_a_qwen2_teacher_is_read_in_its_own_space(pool, tmp_path):
    a = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path / "a")), ScriptedTeacher(seed=1), student_sizing=TINY_SIZING)
    b = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path / "b")), ScriptedTeacher(seed=1, coords=Space.QWEN2), student_sizing=TINY_SIZING)
    assert a["kept"] == b["kept"]  # the same answers in other numbers: the same items pass
    # Each kept Qwen2-space answer lands, in the student's pixels, on one of the teacher's answers.
    answers = {r["id"]: r["responses"] for r in read_jsonl(tmp_path / "a" / "answers.jsonl")}
    for r in read_records(tmp_path / "b" / "sft.jsonl"):
        size = image_size(pool.parent / r.images[r.target.image_index])
        kept = parse_answer(r.response).first_box.bbox
        (tw, th), (sw, sh) = ImageSizing().resized(*size), TINY_SIZING.resized(*size)  # by hand, per axis
        candidates = [[v * (sw / tw if i % 2 == 0 else sh / th) for i, v in enumerate(parse_answer(t).first_box.bbox)]
                      for t in answers[r.id]]
        assert min(max(abs(x - y) for x, y in zip(kept, c)) for c in candidates) <= 1.0


def test_synthesis_is_deterministic(pool, tmp_path):
    for name in ("a", "b"):
        synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path / name)), ScriptedTeacher(seed=2), student_sizing=TINY_SIZING)
    assert (tmp_path / "a" / "sft.jsonl").read_text() == (tmp_path / "b" / "sft.jsonl").read_text()
    assert json.loads((tmp_path / "a" / "stats.json").read_text()) == json.loads((tmp_path / "b" / "stats.json").read_text())


def _scripted_server_answer(pool: Path):
    """A fake teacher server that answers like the scripted teacher, recognising items by their first image."""
    records = read_records(pool)
    by_image = {}
    for r in records:
        by_image[hashlib.sha256(image_data_url(load_image(pool.parent / r.images[0])).encode()).hexdigest()] = r
    teacher = ScriptedTeacher(seed=5)

    def answer(messages, n):
        url = next(p["image_url"]["url"] for p in messages[-1]["content"] if p["type"] == "image_url")
        r = by_image.get(hashlib.sha256(url.encode()).hexdigest())
        if r is None:  # migrl's start-up probe (images of known sizes, not from the pool)
            return ["two pictures"] * n
        sizes = [image_size(pool.parent / p) for p in r.images]
        return [teacher.answer(r, sizes, i) for i in range(n)]

    return answer


def test_openai_teacher_against_a_local_server_with_failures(pool, tmp_path):
    failing = {r.id: r for r in read_records(pool)}["region-train-00003"]
    answer = _scripted_server_answer(pool)
    always_fail = lambda body: _first_url_is(body, pool, failing)  # noqa: E731
    with FakeOpenAIServer(latency=0.01, answer=answer, flaky_every=3, always_fail=always_fail) as server:
        engine = OpenAICompatEngine(OpenAIConfig(base_url=server.base_url, model="teacher", concurrency=4, max_retries=1))
        teacher = OpenAITeacher(engine, ImageSizing(), Space.QWEN25, max_new_tokens=256)
        stats = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), teacher, student_sizing=TINY_SIZING)
    assert stats["asked"] == 48
    assert stats["dropped"]["teacher_error"] == 1
    assert any(failing.id in e and "HTTP 500" in e for e in stats["errors"])
    # The other items were judged exactly as the scripted teacher's own answers would be.
    direct = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path / "direct")), ScriptedTeacher(seed=5), student_sizing=TINY_SIZING)
    kept_directly = {r.id for r in read_records(tmp_path / "direct" / "sft.jsonl")}
    assert stats["kept"] == direct["kept"] - (failing.id in kept_directly)
    # A rerun against a healthy server asks again for the failed item only, and then matches.
    with FakeOpenAIServer(latency=0.01, answer=answer) as server:
        engine = OpenAICompatEngine(OpenAIConfig(base_url=server.base_url, model="teacher", concurrency=4, max_retries=1))
        again = synthesize(SynthesizeConfig(data=str(pool), out=str(tmp_path)), OpenAITeacher(engine, ImageSizing(), Space.QWEN25, max_new_tokens=256), student_sizing=TINY_SIZING)
        assert len(server.calls) == 1
    assert again["dropped"]["teacher_error"] == 0 and again["kept"] == direct["kept"]


def _first_url_is(body, pool, record):
    url = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
    return url == image_data_url(load_image(pool.parent / record.images[0]))


# kill -9 at several points of a real `migrl synthesize`: tests/test_crash_safety.py


def test_the_consistency_filter_keeps_an_item_only_when_every_answer_reaches_iou_one_half():
    """IoU exactly 0.5 in every answer keeps the item; one answer at 0.45 drops it as inconsistent."""
    from migrl.records import GroundTruthBox, Record
    from migrl.stages.synthesize import decide

    record = Record(id="r", task="t", images=("a.png",), question="q", boxes=(GroundTruthBox(0, (0.0, 0.0, 100.0, 10.0)),))

    def answers(*x2s):
        return {"responses": [f'<think>t</think><answer>{{"bbox_2d": [0, 0, {x2}, 10]}}</answer>' for x2 in x2s], "error": None}

    def reason(row):
        return decide(record, row, [(200, 20)], Space.PIXELS, TINY_SIZING, Space.PIXELS, TINY_SIZING, "best")[0]

    assert reason(answers(50, 50, 60, 100)) == "kept"
    assert reason(answers(45, 60, 60, 100)) == "inconsistent"
    assert reason(answers(55, 55, 55, 55)) == "kept"
