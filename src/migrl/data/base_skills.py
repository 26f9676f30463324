"""What the tiny base model is pretrained on: single-step naming and locating, like a real base.

A real base VLM can say what an image shows, name what is inside a marked box and locate a named
object, also in a named image of several; it has never seen the multi-image reasoning tasks nor a
chain of thought. These skills are the steps the world's chains of thought are made of, so the
cold start has something to build on.

An example is a set of 1-4 pictures and a few question/answer turns about them (multi-turn, as
grounding corpora are): the pictures cost most of the compute, so several supervised answers per
set make each step of pretraining worth more.

Boxes are written as the model answers: in its family's space (``coords``: Qwen2.5-VL's pixels of the
resized image, Qwen3-VL's [0, 1000] of each image) with its image setting (``sizing``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image

from migrl.boxes import Space, convert, format_answer, round_box
from migrl.data import scenes as sc
from migrl.images import TINY_SIZING, ImageSizing
from migrl.models.family import DEFAULT_FAMILY
from migrl.prompts import ANSWER_ONLY_SUFFIX

SKILLS = ("locate", "describe", "name_marked")


@dataclass(frozen=True)
class Stage:
    """A step of the curriculum. Measured here: a random-init tiny model learns to locate a lone object
    in ~400 steps, but a named one among several, from the start, not in 1,200; so it first learns
    where things are, then which is which, then several pictures."""

    until: float  # fraction of pretraining steps this stage lasts to
    single_share: float  # share of one-picture examples
    max_images: int
    max_objects: int
    skill_weights: tuple[float, ...] = (0.6, 0.25, 0.15)  # locate, describe, name_marked
    max_turns: int = 2


STAGES = (
    Stage(until=0.15, single_share=1.0, max_images=1, max_objects=1, skill_weights=(0.7, 0.3, 0.0)),
    Stage(until=0.7, single_share=1.0, max_images=1, max_objects=3),
    Stage(until=1.0, single_share=0.35, max_images=4, max_objects=3),
)


def stage_at(progress: float) -> Stage:
    return next((s for s in STAGES if progress < s.until), STAGES[-1])


@dataclass
class Turn:
    skill: str
    question: str
    answer: str
    image_index: int | None = None  # the image a locate answer is on
    box: tuple[int, int, int, int] | None = None  # its pixels in that image


@dataclass
class Example:
    images: list[Image.Image]
    turns: list[Turn] = field(default_factory=list)
    scenes: list[sc.Scene] = field(default_factory=list)  # what each picture holds (for the vision probe)


@dataclass
class _Picture:
    scene: sc.Scene
    lone: bool  # a single object filling a small canvas (like crops and reference pictures)


def _pictures(rng: random.Random, n: int, max_objects: int = 3) -> list[_Picture]:
    out = []
    for i in range(n):
        if n > 1 and i > 0 and rng.random() < 0.2:  # the first is always a scene
            side = rng.choice((56, 70, 84))
            out.append(_Picture(sc.random_scene(rng, sc.random_names(rng, 1), (side, side), min_frac=0.55, max_frac=0.8), True))
        else:
            out.append(_Picture(sc.random_scene(rng, sc.random_names(rng, rng.randint(1, max_objects))), False))
    return out


def _box_text(box: tuple[int, int, int, int], scene: sc.Scene, sizing: ImageSizing, coords: Space) -> list[int]:
    return round_box(convert(box, Space.PIXELS, coords, (scene.width, scene.height), sizing))


def _where(k: int, n: int) -> str:
    return f" in image {k + 1}" if n > 1 else ""


def _turn(rng: random.Random, skill: str, pics: list[_Picture], marked: tuple[int, sc.Obj] | None, sizing: ImageSizing,
          coords: Space) -> Turn:
    n = len(pics)
    if skill == "name_marked" and marked is not None:
        k, obj = marked
        box = _box_text(obj.box, pics[k].scene, sizing, coords)
        q = f"What is the object marked with the red box {box}{_where(k, n)}?"
        subject = f"The marked object in image {k + 1}" if n > 1 else "The marked object"
        return Turn(skill, q, f"{subject} is a {obj.name}.")
    k = rng.randrange(n)
    scene = pics[k].scene
    if skill == "describe":
        q = f"What does image {k + 1} show?" if n > 1 else "What does the image show?"
        subject = f"Image {k + 1}" if n > 1 else "The image"
        return Turn(skill, q, f"{subject} shows {sc.listing(scene.names())}.")
    obj = rng.choice(scene.objects)
    answer = format_answer(_box_text(obj.box, scene, sizing, coords), k if n > 1 else None)
    return Turn("locate", f"Locate the {obj.name}{_where(k, n)}. {ANSWER_ONLY_SUFFIX}", answer, k, obj.box)


def make_example(
    rng: random.Random,
    n_images: int | None = None,
    n_turns: int | None = None,
    skill: str | None = None,
    sizing: ImageSizing = TINY_SIZING,
    stage: "Stage | None" = None,
    coords: Space = DEFAULT_FAMILY.coords,
) -> Example:
    """A picture set and its turns; ``skill`` forces every turn to one skill (held-out evaluation),
    ``stage`` bounds the difficulty (the curriculum); boxes in ``coords`` with ``sizing``. The random draws do
    not depend on either, so every family sees the same pictures and questions."""
    stage = stage or STAGES[-1]
    n = n_images or (1 if rng.random() < stage.single_share else rng.randint(2, stage.max_images))
    pics = _pictures(rng, n, stage.max_objects)
    marked = None
    scenes = [i for i, p in enumerate(pics) if not p.lone]
    if scenes and (skill == "name_marked" or (skill is None and stage.skill_weights[2] and rng.random() < 0.35)):
        k = rng.choice(scenes)
        marked = (k, rng.choice(pics[k].scene.objects))
    images = [sc.render(p.scene, marked=marked[1].box if marked and marked[0] == i else None) for i, p in enumerate(pics)]
    turns = []
    for _ in range(n_turns or rng.randint(1, stage.max_turns)):
        s = skill or rng.choices(SKILLS, weights=stage.skill_weights)[0]
        turns.append(_turn(rng, s if s != "name_marked" or marked else "locate", pics, marked, sizing, coords))
    return Example(images, turns, [p.scene for p in pics])


def sample_texts(seed: int, n: int) -> list[tuple[str, str]]:
    """(question, answer) pairs, for building the tokenizer."""
    rng = random.Random(seed)
    return [(t.question, t.answer) for _ in range(n) for t in make_example(rng).turns]
