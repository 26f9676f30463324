"""Digests of what the default family (the tiny Qwen2.5-VL base) is trained and tested on: the world's files
and gold answers, base-skill examples and the pretraining batches. Only APIs that predate the Qwen3-VL tiny
base are used, so the same functions ran on the code before it to pin the values in test_tiny_qwen3.py."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image


def _hex(h: Any) -> str:
    return h.hexdigest()[:16]


def world_digest(root: Path) -> str:
    """Records, decoded pixels (not PNG bytes, which depend on the zlib build) and gold responses."""
    from migrl.data import world

    h = hashlib.sha256()
    h.update(world.write_split(root, "test", 2, seed=0).read_bytes())
    h.update(world.write_split(root, "train", 2, seed=0, tasks=world.ID_TASKS + world.TRAINING_SOURCES).read_bytes())
    for path in sorted((root / "images").rglob("*.png")):
        with Image.open(path) as im:
            h.update(path.name.encode())
            h.update(im.tobytes())
    golds = [world.gold_response(world.generate(t, 0, "test", i)) for t in world.TASKS + world.TRAINING_SOURCES for i in range(3)]
    h.update(json.dumps(golds).encode())
    return _hex(h)


def _example_rows(example: Any) -> list[Any]:
    turns = [[t.skill, t.question, t.answer, t.image_index, t.box] for t in example.turns]
    return turns + [[im.size, hashlib.sha256(im.tobytes()).hexdigest()[:16]] for im in example.images]


def base_skills_digest() -> str:
    """Examples of every curriculum stage, the held-out ones of each skill, and the tokenizer's texts."""
    from migrl.data import base_skills

    rows: list[Any] = []
    rng = random.Random(7)
    for stage in base_skills.STAGES:
        rows += [_example_rows(base_skills.make_example(rng, stage=stage)) for _ in range(8)]
    rng = random.Random(10_000)
    for skill in base_skills.SKILLS:
        rows += [_example_rows(base_skills.make_example(rng, n, 1, skill)) for n in (1, 3)]
    rows.append(base_skills.sample_texts(12345, 20))
    return _hex(hashlib.sha256(json.dumps(rows).encode()))


def pretrain_batches_digest() -> str:
    """The first collated pretraining batches (tokens, labels, pixels, probe targets) with the shipped base."""
    from migrl.models.loading import TINY_BASE, load_processor
    from migrl.stages.pretrain import _Batches

    batches = iter(_Batches(load_processor(TINY_BASE), 2, 0, 100, 0, 8))
    h = hashlib.sha256()
    for _ in range(6):  # pools 0 and 1: vision-only steps and the first curriculum stage
        batch = next(batches)
        for key in sorted(batch):
            values = batch[key] if isinstance(batch[key], dict) else {"": batch[key]}
            for name in sorted(values):
                h.update(f"{key}/{name}".encode())
                h.update(values[name].numpy().tobytes())
    return _hex(h)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({"world": world_digest(Path(tmp)), "base_skills": base_skills_digest(),
                          "pretrain_batches": pretrain_batches_digest()}))
