"""``migrl synthesize``: teacher chains of thought, kept only when every sample is right.

Each item is answered ``k`` times (the paper: 4) with the paper's prompt. An item is kept only when
all k answers reach IoU >= 0.5 with the ground truth; the kept record carries one answer as its
``response`` (see ``pick``), rewritten into the student's coordinate space.

Teacher boxes are read in the teacher's own space (Qwen2.5-VL: pixels of the image the answer names,
resized by the *teacher's* processor; Qwen2: [0, 1000)) and converted through ``migrl.boxes``.

Files in ``--out``: ``answers.jsonl`` (every item's k answers or its failure, appended as they come;
a rerun after ``kill -9`` asks only for what is missing), ``sft.jsonl`` (kept records) and
``stats.json`` (asked, kept, dropped by reason, per task), both rebuilt from ``answers.jsonl``
and written atomically; ``answers.run.json`` names the teacher and its settings, and a rerun with
another teacher, temperature or k stops instead of mixing its answers with the old ones;
``bad_records.jsonl`` lists the items skipped (bad records, and items the teacher kept failing on,
field "teacher").

Data parallel as in ``migrl eval``: each rank or ``--shard i/n`` job asks for its share into its own
log, merged before the files above are built (``migrl.shards``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from migrl.configs import SynthesizeConfig
from migrl.answer_space import RESPONSE_SPACE, SPACES_NEEDING_SIZING, AnswerSpace
from migrl.bad_records import BadRecords, OptionError
from migrl.boxes import ANSWER_CLOSE, ANSWER_OPEN, Space, convert, format_answer, iou, parse_answer
from migrl.engines.openai_compat import Failure
from migrl.generation import shard_result
from migrl.images import ImageError, ImageSizing, image_size, resolve_image_path
from migrl.jsonl import AppendLog, write_json_atomic, write_jsonl_atomic
from migrl.records import Record, data_root, load_records
from migrl.run_identity import input_fingerprint
from migrl.scoring.judge import is_hit, place
from migrl.shards import Shard, generate_sharded


class Teacher(Protocol):
    coords: Space
    sizing: ImageSizing

    def sample(self, records: list[Record], root: Path, k: int, on_result: Any) -> None: ...

    def identity(self) -> dict[str, Any]:
        """What decides the answers' text (model, sampling settings): answers.jsonl resumes only the same."""
        ...


@dataclass
class Judged:
    text: str
    iou: float
    format_ok: bool
    image_index: int | None
    pixels_box: tuple[float, float, float, float] | None


def judge(text: str, record: Record, sizes: list[tuple[int, int]], coords: Space, sizing: ImageSizing) -> Judged:
    """IoU of a teacher answer against the ground truth, in pixels of the image the answer names."""
    gt = record.target
    format_ok = parse_answer(text).format_ok
    if gt is None:
        return Judged(text, 0.0, format_ok, None, None)
    placed = place(text, gt.image_index, len(sizes), coords, Space.PIXELS, sizes.__getitem__, sizing)
    if placed.bbox is None:
        return Judged(text, 0.0, format_ok, placed.image_index, None)
    truth = convert(gt.bbox, gt.space, Space.PIXELS, sizes[gt.image_index], sizing)
    score = iou(placed.bbox, truth) if placed.image_index == gt.image_index else 0.0
    return Judged(text, score, format_ok, placed.image_index, placed.bbox)


def in_student_space(j: Judged, size: tuple[int, int], space: Space, sizing: ImageSizing) -> str:
    """The answer with its box rewritten into the student's space (the thinking is kept as written)."""
    box = convert(j.pixels_box, Space.PIXELS, space, size, sizing)
    start = j.text.find(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = j.text.find(ANSWER_CLOSE, start)
    return j.text[:start] + format_answer(box, j.image_index) + j.text[end:]


def pick(judged: list[Judged], keep: str) -> list[Judged]:
    """Which answers of a kept item become SFT targets.

    All k are right; "best" keeps the one with the highest IoU (the tightest box teaches the most
    precise localisation, and one answer per item keeps easy items from being counted k times);
    ties go to the shorter text. "all" keeps every well-formed answer.
    """
    good = [j for j in judged if j.format_ok]
    if keep == "all":
        return good
    return sorted(good, key=lambda j: (-j.iou, len(j.text)))[:1]


def decide(record: Record, row: dict[str, Any], sizes: list[tuple[int, int]], teacher_coords: Space,
           teacher_sizing: ImageSizing, student_coords: Space, student_sizing: ImageSizing, keep: str) -> tuple[str, list[str]]:
    """(reason, kept responses): reason is "kept", "teacher_error", "inconsistent" or "format"."""
    if row.get("error"):
        return "teacher_error", []
    judged = [judge(t, record, sizes, teacher_coords, teacher_sizing) for t in row["responses"]]
    if not judged or not all(is_hit(j.iou) for j in judged):
        return "inconsistent", []
    chosen = pick(judged, keep)
    if not chosen:
        return "format", []
    return "kept", [in_student_space(j, sizes[j.image_index], student_coords, student_sizing) for j in chosen]


def synthesize(
    cfg: SynthesizeConfig,
    teacher: Teacher,
    student_coords: Space = Space.QWEN25,
    student_sizing: ImageSizing | None = None,
) -> dict[str, Any]:
    """``student_sizing``: the image setting the student trains with, required for qwen25 targets (their
    pixels are of the image as the student resizes it); ``migrl.answer_space`` finds it from the student's folder."""
    coords = Space(student_coords)
    needs_sizing = coords in SPACES_NEEDING_SIZING
    if needs_sizing and student_sizing is None:
        raise OptionError("synthesize: qwen25 targets need the student's image setting (student_sizing): pass the "
                          "student's model folder (--model) or its --min-pixels/--max-pixels")
    student = AnswerSpace(coords, student_sizing if needs_sizing else None)
    out = Path(cfg.out)
    loaded = load_records(cfg.data, strict=cfg.strict)
    bad = BadRecords.from_load(loaded, cfg.data, cfg.strict)
    records = [r for r in loaded.records if not cfg.tasks or r.task in cfg.tasks]
    records = records[: cfg.limit] if cfg.limit else records
    root = data_root(cfg.data)
    records = bad.usable(records, root)

    def ask(items: list[Record], log: AppendLog) -> None:
        if cfg.retry_failed:  # a rerun asks again for items the teacher failed on (time-outs, 5xx)
            log.forget(r.id for r in items if r.id in log and log.rows[r.id].get("error"))
        todo = [r for r in items if r.id not in log]
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="synthesize", unit="item")

        def save(record: Record, result: list[str] | Failure) -> None:
            if isinstance(result, Failure) and result.field and cfg.strict:
                bad.add(record, result.field, result.reason)  # raises: --strict stops here
            if isinstance(result, Failure):
                log.append([{"id": record.id, "responses": [], "error": result.reason, "field": result.field}])
            else:
                log.append([{"id": record.id, "responses": result, "error": None}])
            bar.update(1)

        teacher.sample(todo, root, cfg.k, save)
        bar.close()

    # A teacher written for an older migrl may lack identity(): then its class name stands for it.
    own = getattr(teacher, "identity", None)
    identity = {**(own() if own else {"teacher": type(teacher).__name__}), "k": cfg.k, "data": input_fingerprint(cfg.data)}
    run = generate_sharded(Shard.resolve(cfg.shard), out / "answers.jsonl", records, ask, identity=identity)
    if run.log is None:  # a shard that only asks: the merging run builds sft.jsonl and stats.json
        return shard_result(run, [])
    log = run.log

    kept_rows, stats = [], _empty_stats()
    for record in records:
        row = log.rows.get(record.id)
        if row is None:  # the teacher never reported this item
            bad.add(record, "teacher", "no answer from the teacher", stops=False)
            continue
        if row.get("error") and row.get("field"):  # the input, not the teacher (an image that does not decode)
            bad.add(record, row["field"], row["error"])
            continue
        try:
            sizes = [image_size(resolve_image_path(p, root)) for p in record.images]
        except ImageError as exc:
            bad.add(record, "images", exc)
            continue
        reason, responses = decide(record, row, sizes, teacher.coords, teacher.sizing, student_coords, student_sizing, cfg.keep)
        _count(stats, record.task, reason)
        if reason == "teacher_error":
            bad.add(record, "teacher", f"teacher failed: {row['error']}; a rerun asks again", stops=False)
        for i, response in enumerate(responses):
            rid = record.id if len(responses) == 1 else f"{record.id}#{i}"
            derived = record.with_response(response).with_absolute_images(root).with_meta(RESPONSE_SPACE, student.to_dict())
            kept_rows.append({**derived.to_dict(), "id": rid, "split": "train"})
    write_jsonl_atomic(out / "sft.jsonl", kept_rows)
    stats["errors"] = [str(b) for b in bad.items]
    stats["bad_records"] = bad.finish(out)
    write_json_atomic(out / "stats.json", stats)
    return stats


def _empty_stats() -> dict[str, Any]:
    return {"asked": 0, "kept": 0, "dropped": {"inconsistent": 0, "format": 0, "teacher_error": 0}, "tasks": {}}


def _count(stats: dict[str, Any], task: str, reason: str) -> None:
    per = stats["tasks"].setdefault(task, {"asked": 0, "kept": 0, "inconsistent": 0, "format": 0, "teacher_error": 0})
    stats["asked"] += 1
    per["asked"] += 1
    if reason == "kept":
        stats["kept"] += 1
        per["kept"] += 1
    else:
        stats["dropped"][reason] += 1
        per[reason] += 1
