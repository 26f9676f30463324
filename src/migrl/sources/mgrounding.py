"""MGrounding-630k (Migician; github.com/Michael4933/Migician, HF dataset Michael4933/MGrounding-630k).

Format, from the Migician README ("Data Preparation"): each JSON file is a list of items::

    {"id": "5229016_8929009_...",
     "images": ["./MGrounding-630k/Group_Grounding/SA-1B/sa_5229016.jpg", ...],
     "conversations": [
        {"from": "human", "value": "<image>\\n<image>\\n...Give the bounding box of the region this sentence
                                    refers to: <|object_ref_start|>a statue of a man<|object_ref_end|>."},
        {"from": "gpt", "value": "It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>"},
        ...more human/gpt turns on the same images...],
     "type": "gg_train"}

Boxes are Qwen2-VL's integers in [0, 1000) of the image they lie on (x1, y1, x2, y2). Image paths are
relative to the folder that holds ``MGrounding-630k/`` (``image_root``). Per-task files live in
``MGrounding-630k/<Subset>/`` (common_train_70k.json, diff_train_70k.json, region_train_70k.json,
refer_train_70k.json, gg_train_120k.json, ot_train_130k.json, free_form_grounding_130k.json); all of
them together are in ``MGrounding-630k.json``.

One record per (human, gpt) turn whose answer holds exactly one box: the paper's prompt asks for one
box. The box stays in the ``qwen2`` space it was released in (exact, and no image has to be opened);
migrl converts per image wherever it needs another space. Turns without a box (e.g. group
grounding's REG turns, whose answer is text) or with several are left out and counted, not errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from migrl.boxes import Space
from migrl.records import RecordError
from migrl.tasks import ID_TASKS
from migrl.sources.convert import SourceError, SourceReport, build_record, image_path, read_json

# Subset folder (confirmed by the README's tree) -> migrl task (MIG-Bench's task names where one exists).
SUBSET_TASKS = {
    "Common_Object": "common_object",
    "Difference": "diff",
    "Free-Form": "free_form",
    "Group_Grounding": "group_grounding",
    "Object_Tracking": "object_tracking",
    "Referring_Grounding": "refer_grounding",
    "Region_Locating": "region",
}
# First word of ``type``. Only "gg_train" is shown in the README; the others follow its file names
# (common_train_70k.json -> "common_train", ...), so the image path's subset is the fallback.
TYPE_TASKS = {
    "common": "common_object",
    "diff": "diff",
    "free": "free_form",
    "gg": "group_grounding",
    "ot": "object_tracking",
    "refer": "refer_grounding",
    "region": "region",
}
# Where neither answer nor question names the image: as migrl's MIG-Bench scorer reads these tasks
# (region: "locate the Nth region picture in the source image" = image 1; diff: the second image).
TASK_DEFAULT_IMAGE = {"region": 0, "diff": 1}

_NUM = r"(\d{1,4}(?:\.\d{1,6})?)"
_BOX_RE = re.compile(
    rf"<\|box_start\|>\s{{0,4}}\(\s{{0,4}}{_NUM}\s{{0,4}},\s{{0,4}}{_NUM}\s{{0,4}}\)\s{{0,4}},"
    rf"\s{{0,4}}\(\s{{0,4}}{_NUM}\s{{0,4}},\s{{0,4}}{_NUM}\s{{0,4}}\)\s{{0,4}}<\|box_end\|>"
)
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_NOUN = r"(?:image|picture|frame)"
_MENTION_RE = re.compile(
    rf"\b(?:(?P<word>{'|'.join(_ORDINALS)})\s{{1,3}}{_NOUN}"
    rf"|(?P<nth>\d{{1,2}})(?:st|nd|rd|th)\s{{1,3}}{_NOUN}"
    rf"|{_NOUN}[\s\-_#]{{0,2}}(?P<num>\d{{1,2}})\b)",
    re.I,
)
_IMAGE_TOKEN_RE = re.compile(r"<image>\s*")


def task_of(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    if isinstance(kind, str) and kind.strip("_"):
        task = TYPE_TASKS.get(kind.strip("_").split("_")[0].lower())
        if task:
            return task
    images = item.get("images") or []
    parts = Path(images[0]).parts if images and isinstance(images[0], str) else ()
    if "MGrounding-630k" in parts[:-1]:
        return SUBSET_TASKS.get(parts[parts.index("MGrounding-630k") + 1])
    return None


def _mentions(text: str) -> list[tuple[int, int]]:
    """(position, 0-based image index) of every "third image" / "2th image" / "image-2" in ``text``."""
    found = []
    for m in _MENTION_RE.finditer(text):
        if m.group("word"):
            n = _ORDINALS.index(m.group("word").lower()) + 1
        else:
            n = int(m.group("nth") or m.group("num"))
        if n >= 1:
            found.append((m.start(), n - 1))
    return found


def _index_from_answer(answer: str, box_start: int, box_end: int) -> int | None:
    """The image named nearest before the box ("It's in the third image. <box>"), else first after it."""
    before = [index for _, index in _mentions(answer[:box_start])]
    if before:
        return before[-1]
    after = _mentions(answer[box_end:])
    return after[0][1] if after else None


def target_image(task: str, question: str, answer: str, box: re.Match, n_images: int) -> tuple[int | None, str]:
    """0-based index of the image the box is on, and which text said so (kept in meta for audits)."""
    index = _index_from_answer(answer, box.start(), box.end())
    if index is not None:
        return index, "answer"
    in_question = _mentions(_BOX_RE.sub(" ", question))
    if in_question:
        return in_question[-1][1], "question"  # "...marked in the first image. Locate it in the 2th image."
    if task in TASK_DEFAULT_IMAGE:
        return TASK_DEFAULT_IMAGE[task], "task default"
    return (0, "single image") if n_images == 1 else (None, "")


def qwen2_box(match: re.Match, where: str, field_name: str) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in match.groups())
    if max(x1, y1, x2, y2) > 1000:
        raise RecordError(where, field_name, f"box {match.group(0)!r} leaves Qwen2's [0, 1000] range")
    if x2 <= x1 or y2 <= y1:
        raise RecordError(where, field_name, f"box {match.group(0)!r} is inverted or has no area")
    return (x1, y1, x2, y2)


def _turn_text(turn: Any, expected: str, where: str, field_name: str) -> str:
    if not isinstance(turn, dict) or turn.get("from") != expected:
        got = turn.get("from") if isinstance(turn, dict) else type(turn).__name__
        raise RecordError(where, f"{field_name}.from", f"expected {expected!r}, got {got!r}")
    value = turn.get("value")
    if not isinstance(value, str):
        raise RecordError(where, f"{field_name}.value", f"expected text, got {type(value).__name__}")
    return value


def _check_item(item: Any, where: str) -> tuple[list[str], list]:
    if not isinstance(item, dict):
        raise RecordError(where, "<item>", f"expected an object, got {type(item).__name__}")
    images, turns = item.get("images"), item.get("conversations")
    if not isinstance(images, list) or not images:
        raise RecordError(where, "images", f"expected a non-empty list of paths, got {images!r}")
    if not isinstance(turns, list) or len(turns) < 2:
        raise RecordError(where, "conversations", "expected human/gpt turns")
    first = _turn_text(turns[0], "human", where, "conversations[0]")
    if first.count("<image>") != len(images):
        raise RecordError(where, "conversations[0].value", f"{first.count('<image>')} <image> tokens for {len(images)} images")
    return images, turns


def _turn_record(item: dict, task: str, paths: list[str], turn: int, where: str, base_id: str, report: SourceReport) -> None:
    turns = item["conversations"]
    q_field, a_field = f"conversations[{2 * turn}]", f"conversations[{2 * turn + 1}]"
    question = _IMAGE_TOKEN_RE.sub("", _turn_text(turns[2 * turn], "human", where, q_field)).strip()
    answer = _turn_text(turns[2 * turn + 1], "gpt", where, a_field)
    boxes = list(_BOX_RE.finditer(answer))
    if len(boxes) != 1:
        report.skip("answer has no box" if not boxes else "answer has several boxes")
        return
    bbox = qwen2_box(boxes[0], where, f"{a_field}.value")
    index, said_by = target_image(task, question, answer, boxes[0], len(paths))
    if index is None:
        raise RecordError(where, f"{a_field}.value", "neither answer nor question says which image the box is on")
    record = build_record(
        {
            "id": f"{base_id}-t{turn}",
            "task": task,
            "images": paths,
            "question": question,
            "boxes": [{"image_index": index, "bbox": list(bbox), "space": Space.QWEN2.value}],
            "split": "train",
            "domain": "id" if task in ID_TASKS else "ood",
            "source": "mgrounding",
            "meta": {
                "mg_id": item.get("id"),
                "mg_type": item.get("type"),
                "turn": turn,
                "answer": answer,
                "image_index_from": said_by,
            },
        },
        where,
    )
    report.records.append(record)


def load_mgrounding(path: str | Path, image_root: str | Path | None = None, tasks: Iterable[str] | None = None) -> SourceReport:
    """Records of one MGrounding-630k JSON file.

    ``image_root``: the folder holding ``MGrounding-630k/`` (default: the JSON's folder, right for the
    combined ``MGrounding-630k.json``). ``tasks``: keep only these migrl tasks (e.g. the paper's four).
    """
    items = read_json(path)
    if not isinstance(items, list):
        raise SourceError(f"{path}: expected a JSON list of conversations, got {type(items).__name__}")
    root = Path(image_root) if image_root is not None else Path(path).parent
    wanted = set(tasks) if tasks else None
    report = SourceReport()
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)
    for i, item in enumerate(items):
        where = f"{path}: item {i}"
        try:
            images, turns = _check_item(item, where)
            task = task_of(item)
            if task is None:
                reason = f"unknown task type {item.get('type')!r} (and no known subset in the image path)"
                raise RecordError(where, "type", reason)
            if wanted is not None and task not in wanted:
                report.skip(f"task not selected: {task}")
                continue
            paths = [image_path(root, p, where, f"images[{k}]") for k, p in enumerate(images)]
        except RecordError as exc:
            report.reject(exc, path)
            continue
        for turn in range(len(turns) // 2):
            try:
                _turn_record(item, task, paths, turn, where, f"mgrounding-{stem}-{i:06d}", report)
            except RecordError as exc:
                report.reject(exc, path)
    return report
