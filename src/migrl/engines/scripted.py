"""The embedded teacher: writes think/answer chains of thought for the world's tasks, with errors.

It reads the facts the world keeps in ``record.meta`` (the reasoning steps, every object's name and
box) and answers like a large teacher would: usually right, with a slightly imprecise box, and now
and then wrong in the ways real teachers are -- the wrong object, the wrong image, a sloppy box, a
broken format. Error rates grow with task difficulty, so the consistency filter has work to do.
Answers are deterministic per (seed, record id, sample index). Records without the world's facts (e.g.
MGrounding's, from ``migrl prepare``) get a generic two-step chain and every mistake but the wrong object.

It speaks Qwen2.5-VL's space with the *teacher's* image-size setting (by default Qwen2.5-VL's
released one, which differs from the tiny student's), so synthesis must convert teacher boxes into
the student's space, as it must for a real 72B teacher.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from migrl.boxes import Space, convert, format_answer
from migrl.engines.openai_compat import Failure
from migrl.images import ImageSizing, image_size, resolve_image_path
from migrl.records import Record

# Chance that one sample goes wrong, by task (harder tasks, more errors).
ERROR_RATES: dict[str, float] = {
    "refer_grounding": 0.08,
    "grounding": 0.08,
    "region": 0.10,
    "diff": 0.14,
    "common_object": 0.16,
    "group_grounding": 0.18,
    "reasoning": 0.22,
    "correspondence": 0.22,
    "view_diff": 0.22,
    "object_tracking": 0.25,
    "multi_view": 0.28,
}
DEFAULT_ERROR_RATE = 0.2
MISTAKES = ("wrong_object", "wrong_object", "sloppy_box", "wrong_image", "bad_format")


def generic_steps(record: Record) -> list[str]:
    """A chain of thought for records without the world's facts (e.g. MGrounding's): the question, then the
    image the answer is on, in the world's phrasing, so the same mistakes can be made in it."""
    n = len(record.images)
    return [f"The question is about {n} image{'s' if n > 1 else ''}.",
            f"Locate the object the question describes in image {record.target.image_index + 1}."]


@dataclass
class ScriptedTeacher:
    seed: int = 0
    sizing: ImageSizing = field(default_factory=ImageSizing)  # the teacher's own processor setting
    coords: Space = Space.QWEN25
    error_scale: float = 1.0  # multiplies every error rate

    def identity(self) -> dict[str, Any]:
        """What decides the answers' text, so a rerun with other settings does not resume these."""
        return {"teacher": "scripted", "seed": self.seed, "error_scale": self.error_scale, "coords": self.coords.value,
                "pixels": [self.sizing.min_pixels, self.sizing.max_pixels]}

    def _rng(self, record_id: str, sample: int) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}/{record_id}/{sample}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def answer(self, record: Record, sizes: list[tuple[int, int]], sample: int) -> str:
        rng = self._rng(record.id, sample)
        gt = record.target
        index = gt.image_index
        box = list(gt.bbox) if gt.space == Space.PIXELS.value else list(convert(gt.bbox, gt.space, Space.PIXELS, sizes[index]))
        steps = list(record.meta["cot"]) if "cot" in record.meta else generic_steps(record)
        mistake = None
        if rng.random() < ERROR_RATES.get(record.task, DEFAULT_ERROR_RATE) * self.error_scale:
            mistake = rng.choice(MISTAKES)
        if mistake == "wrong_object" and "objects" in record.meta:
            index, box, steps = self._other_object(rng, record, steps, index, box)
        elif mistake == "wrong_image" and len(record.images) > 1:
            index = rng.choice([i for i in range(len(record.images)) if i != index])
            steps[-1] = steps[-1].rsplit(" in image ", 1)[0] + f" in image {index + 1}."
        box = self._jitter(rng, box, sizes[index], sloppy=mistake == "sloppy_box")
        model_box = convert(box, Space.PIXELS, self.coords, sizes[index], self.sizing)
        answer = format_answer(model_box, index)
        if mistake == "bad_format":
            return f"<think>{' '.join(steps)}\n{answer}"
        return f"<think>{' '.join(steps)}</think><answer>{answer}</answer>"

    @staticmethod
    def _other_object(rng: random.Random, record: Record, steps: list[str], index: int, box: list[float]):
        others = [o for o in record.meta["objects"][index] if o["bbox"] and list(map(float, o["bbox"])) != box]
        if not others:
            return index, box, steps
        other = rng.choice(others)
        name = other["name"]
        wrong = steps[-1].split(" in image ")[0].replace("Locate the ", "")
        steps = [s.replace(f"The {wrong} ", f"The {name} ") for s in steps[:-1]] + [f"Locate the {name} in image {index + 1}."]
        return index, list(map(float, other["bbox"])), steps

    @staticmethod
    def _jitter(rng: random.Random, box: list[float], size: tuple[int, int], sloppy: bool) -> list[float]:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        s = 0.45 if sloppy else 0.04
        x1, x2 = x1 + rng.gauss(0, s * w), x2 + rng.gauss(0, s * w)
        y1, y2 = y1 + rng.gauss(0, s * h), y2 + rng.gauss(0, s * h)
        if sloppy:  # drift the whole box too
            dx, dy = rng.choice((-1, 1)) * 0.6 * w, rng.choice((-1, 1)) * 0.6 * h
            x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy, y2 + dy
        width, height = size
        x1, x2 = sorted((min(max(x1, 0), width), min(max(x2, 0), width)))
        y1, y2 = sorted((min(max(y1, 0), height), min(max(y2, 0), height)))
        return [x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)]

    def sample(
        self,
        records: list[Record],
        root: Path,
        k: int,
        on_result: Callable[[Record, list[str] | Failure], None],
    ) -> None:
        for record in records:
            if record.target is None:
                on_result(record, Failure("the scripted teacher answers from the ground-truth box; this record has none"))
                continue
            sizes = [image_size(resolve_image_path(p, root)) for p in record.images]
            on_result(record, [self.answer(record, sizes, i) for i in range(k)])
