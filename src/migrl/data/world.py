"""The embedded multi-image world: deterministic generators of MIG-Bench-like tasks.

Ten tasks, named as in MIG-Bench's ``MIG_data.json``. In-domain (the cold-start and RL mix):
``common_object``, ``diff`` (static difference), ``region`` (locate a region picture in its source),
``refer_grounding`` (a reference picture, find it in a scene). Out-of-domain (never trained on):
``group_grounding``, ``correspondence``, ``object_tracking``, ``multi_view``, ``reasoning``,
``view_diff`` (robust difference).

Every task is solved by the same few steps, which is what lets reasoning learnt on the in-domain
tasks carry over: say what some images show, pick the target by a rule, then "Locate the <name> in
image <k>." -- the grounding request the base model already answers. Each record's ``meta`` keeps
those steps (``cot``) and the scene facts (``objects``) for the scripted teacher; prompts never
read ``meta``.

Boxes the text carries (a marked box in a question, the gold answer) are written in the student model's
space: ``coords`` (its family's: Qwen2.5-VL's pixels of the resized image, Qwen3-VL's [0, 1000] of each
image) with ``sizing`` (its image setting). The random draws never depend on either.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from migrl.boxes import Space, convert, format_answer, round_box
from migrl.data import scenes as sc
from migrl.data.scenes import Obj, Scene, listing
from migrl.answer_space import AnswerSpace
from migrl.images import TINY_SIZING, ImageSizing
from migrl.jsonl import write_jsonl_atomic
from migrl.models.family import DEFAULT_FAMILY
from migrl.records import GroundTruthBox, Record

from migrl.tasks import ID_TASKS, OOD_TASKS, TASKS  # noqa: F401  (the world's tasks are MIG-Bench's)
# Training-only sources, never in a test split: plain grounding ("locate the X in image k"), the world's
# counterpart of the single-image sources (RefCOCO, ODinW, V3Det) in the paper's cold-start mix.
TRAINING_SOURCES = ("grounding",)


@dataclass
class Item:
    """A generated task before it is written to disk."""

    task: str
    images: list[Image.Image]
    question: str
    target_image: int  # 0-based
    target_box: tuple[int, int, int, int]  # pixels of the original target image
    cot: list[str]  # the reasoning steps of a correct answer
    objects: list[list[dict]] = field(default_factory=list)  # per image: [{"name", "bbox"}]

    def think(self) -> str:
        return " ".join(self.cot)


def _objects_of(scene: Scene) -> list[dict]:
    return [{"name": o.name, "bbox": list(o.box)} for o in scene.objects]


def _shows(index: int, names: list[str]) -> str:
    return f"Image {index + 1} shows {listing(names)}."


def _locate(name: str, index: int) -> str:
    return f"Locate the {name} in image {index + 1}."


# The step every chain of the world ends in, as ``_locate`` writes it (a name is "<colour> <shape>").
LOCATE_STEP = re.compile(r"Locate the ([a-z]+ [a-z]+) in image (\d+)\.")


def last_locate_step(text: str) -> tuple[str, int] | None:
    """The object and image (0-based) of a text's last "Locate the <name> in image <k>." step, or None:
    what a chain of thought finally decided to ground."""
    found = LOCATE_STEP.findall(text or "")
    return (found[-1][0], int(found[-1][1]) - 1) if found else None


def _marked_text(box: tuple[int, int, int, int], size: tuple[int, int], space: AnswerSpace) -> str:
    """The marked box as the model reads coordinates (its space: for Qwen2.5-VL, pixels of the resized image)."""
    return str(round_box(convert(box, Space.PIXELS, space.coords, size, space.sizing)))


def _scenes_with_unique_names(rng: random.Random, n_images: int, shared: list[str], extra: tuple[int, int]) -> list[Scene]:
    used = set(shared)
    out = []
    for _ in range(n_images):
        others = sc.random_names(rng, rng.randint(*extra), exclude=used)
        used |= set(others)
        names = shared + others
        rng.shuffle(names)
        out.append(sc.random_scene(rng, names))
    return out


# --------------------------------------------------------------------------- in-domain tasks


def common_object(rng: random.Random, space: AnswerSpace) -> Item:
    n = rng.choice((2, 3, 3, 4))
    target = sc.random_names(rng, 1)[0]
    scenes = _scenes_with_unique_names(rng, n, [target], (1, 2))
    k = rng.randrange(n)
    cot = [_shows(i, s.names()) for i, s in enumerate(scenes)]
    cot += [f"The {target} appears in every image.", _locate(target, k)]
    return Item(
        "common_object",
        [sc.render(s) for s in scenes],
        f"These images share one object in common. Recognize and locate this object in image {k + 1}.",
        k,
        scenes[k].find(target).box,
        cot,
        [_objects_of(s) for s in scenes],
    )


def _with_difference(rng: random.Random) -> tuple[Scene, Scene, str]:
    """Two scenes equal but for one object: added, or the same place in another colour."""
    while True:
        first = sc.random_scene(rng, sc.random_names(rng, rng.randint(2, 3)))
        if rng.random() < 0.5:
            new = sc.random_names(rng, 1, exclude=set(first.names()))[0]
            added = sc.place(rng, first.width, first.height, [new], taken=first.objects)
            if added is None:
                continue
            second = Scene(first.width, first.height, first.objects + added, first.background)
            return first, second, new
        old = rng.choice(first.objects)
        colours = [c for c in sc.COLOURS if f"{c} {old.shape}" not in first.names()]
        changed = Obj(old.shape, rng.choice(colours), old.box)
        objects = tuple(changed if o is old else o for o in first.objects)
        return first, Scene(first.width, first.height, objects, first.background), changed.name


def diff(rng: random.Random, space: AnswerSpace) -> Item:
    first, second, target = _with_difference(rng)
    cot = [_shows(0, first.names()), _shows(1, second.names()), f"The {target} is only in image 2.", _locate(target, 1)]
    return Item(
        "diff",
        [sc.render(first), sc.render(second)],
        "Compare these two images carefully and give me the coordinates of their difference in image 2.",
        1,
        second.find(target).box,
        cot,
        [_objects_of(first), _objects_of(second)],
    )


def region(rng: random.Random, space: AnswerSpace) -> Item:
    source = sc.random_scene(rng, sc.random_names(rng, rng.randint(2, 4)))
    picture = sc.render(source)
    shown = rng.sample(list(source.objects), rng.randint(1, min(3, len(source.objects))))
    crops = [sc.crop(picture, o.box) for o in shown]
    j = rng.randrange(len(shown))
    target = shown[j]
    x1, y1, x2, y2 = target.box
    region_box = (max(0, x1 - 2), max(0, y1 - 2), min(source.width, x2 + 2), min(source.height, y2 + 2))
    cot = [_shows(j + 1, [target.name]), _shows(0, source.names()), _locate(target.name, 0)]
    return Item(
        "region",
        [picture] + crops,
        "You are given a source image followed by its several regions. "
        f"Please locate the region shown in image {j + 2} in the source image.",
        0,
        region_box,
        cot,
        [_objects_of(source)] + [[{"name": o.name, "bbox": None}] for o in shown],
    )


def refer_grounding(rng: random.Random, space: AnswerSpace) -> Item:
    target = sc.random_names(rng, 1)[0]
    names = [target] + sc.random_names(rng, rng.randint(1, 3), exclude={target})
    rng.shuffle(names)
    scene = sc.random_scene(rng, names)
    cot = [_shows(0, [target]), _shows(1, scene.names()), _locate(target, 1)]
    return Item(
        "refer_grounding",
        [sc.reference_picture(rng, target), sc.render(scene)],
        "Find and locate where the object in image 1 is in image 2.",
        1,
        scene.find(target).box,
        cot,
        [[{"name": target, "bbox": None}], _objects_of(scene)],
    )


# --------------------------------------------------------------------------- out-of-domain tasks


def group_grounding(rng: random.Random, space: AnswerSpace) -> Item:
    n = rng.choice((2, 3, 4))
    scenes = _scenes_with_unique_names(rng, n, [], (2, 3))
    k = rng.randrange(n)
    target = rng.choice(scenes[k].names())
    cot = [_shows(i, s.names()) for i, s in enumerate(scenes)]
    cot += [f"The {target} is in image {k + 1}.", _locate(target, k)]
    return Item(
        "group_grounding",
        [sc.render(s) for s in scenes],
        f"Please find the bounding box coordinates for the area described by: the {target}.",
        k,
        scenes[k].find(target).box,
        cot,
        [_objects_of(s) for s in scenes],
    )


def correspondence(rng: random.Random, space: AnswerSpace) -> Item:
    marked = sc.random_names(rng, 1)[0]
    colour, shape = marked.split(" ")
    first = sc.random_scene(rng, [marked] + sc.random_names(rng, rng.randint(1, 2), exclude={marked}))
    target = f"{rng.choice([c for c in sc.COLOURS if c != colour])} {shape}"
    others = [n for n in sc.NAMES if n.split(" ")[1] != shape]
    names = [target] + rng.sample(others, rng.randint(1, 2))
    rng.shuffle(names)
    second = sc.random_scene(rng, names)
    box = first.find(marked).box
    cot = [
        f"The marked object in image 1 is a {marked}.",
        _shows(1, second.names()),
        f"The {target} has the same shape.",
        _locate(target, 1),
    ]
    return Item(
        "correspondence",
        [sc.render(first, marked=box), sc.render(second)],
        f"For the object marked by the red box {_marked_text(box, (first.width, first.height), space)} in image 1, "
        "locate the object in image 2 that has the same shape.",
        1,
        second.find(target).box,
        cot,
        [_objects_of(first), _objects_of(second)],
    )


def _moved(rng: random.Random, scene: Scene, step: int) -> Scene | None:
    objects: list[Obj] = []
    for o in scene.objects:
        for _ in range(20):
            m = o.moved(rng.randint(-step, step), rng.randint(-step, step))
            x1, y1, x2, y2 = m.box
            inside = x1 >= 2 and y1 >= 2 and x2 <= scene.width - 2 and y2 <= scene.height - 2
            if inside and not any(sc._overlaps(m.box, p.box) for p in objects):
                objects.append(m)
                break
        else:
            return None
    return Scene(scene.width, scene.height, tuple(objects), scene.background)


def object_tracking(rng: random.Random, space: AnswerSpace) -> Item:
    n = rng.choice((3, 4))
    while True:
        frames = [sc.random_scene(rng, sc.random_names(rng, rng.randint(2, 3)), max_frac=0.38)]
        while len(frames) < n:
            nxt = _moved(rng, frames[-1], 12)
            if nxt is None:
                break
            frames.append(nxt)
        if len(frames) == n:
            break
    target = rng.choice(frames[0].names())
    k = rng.randrange(1, n)
    box = frames[0].find(target).box
    cot = [f"The marked object in image 1 is a {target}.", _locate(target, k)]
    return Item(
        "object_tracking",
        [sc.render(frames[0], marked=box)] + [sc.render(f) for f in frames[1:]],
        "These are a sequence of images containing moving objects. For the object in image 1 marked with the "
        f"red box {_marked_text(box, (frames[0].width, frames[0].height), space)}, locate it in image {k + 1}.",
        k,
        frames[k].find(target).box,
        cot,
        [_objects_of(f) for f in frames],
    )


def _view(scene: Scene, x0: int, y0: int, width: int, height: int) -> Scene:
    """The part of a wide scene seen through a window: objects fully inside, shifted."""
    objects = tuple(
        o.moved(-x0, -y0)
        for o in scene.objects
        if o.box[0] >= x0 and o.box[1] >= y0 and o.box[2] <= x0 + width and o.box[3] <= y0 + height
    )
    return Scene(width, height, objects, scene.background + x0 * 7919 + y0)


def multi_view(rng: random.Random, space: AnswerSpace) -> Item:
    n = rng.choice((2, 3))
    while True:
        width, height = sc.random_size(rng)
        wide = sc.random_scene(rng, sc.random_names(rng, 5), size=(width + 40, height + 30), min_frac=0.22, max_frac=0.32)
        offsets = [(rng.randint(0, 40), rng.randint(0, 30)) for _ in range(n)]
        views = [_view(wide, x, y, width, height) for x, y in offsets]
        common = set(views[0].names()).intersection(*(v.names() for v in views[1:]))
        if common:
            break
    target = rng.choice(sorted(common))
    k = rng.randrange(1, n)
    box = views[0].find(target).box
    cot = [f"The marked object in image 1 is a {target}.", _locate(target, k)]
    return Item(
        "multi_view",
        [sc.render(views[0], marked=box)] + [sc.render(v) for v in views[1:]],
        "These images show one scene from different views. For the object marked with the red box "
        f"{_marked_text(box, (width, height), space)} in image 1, locate it in image {k + 1}.",
        k,
        views[k].find(target).box,
        cot,
        [_objects_of(v) for v in views],
    )


def reasoning(rng: random.Random, space: AnswerSpace) -> Item:
    shown = sc.random_names(rng, 1)[0]
    colour, shape = shown.split(" ")
    target = f"{colour} {rng.choice([s for s in sc.SHAPES if s != shape])}"
    others = rng.sample([n for n in sc.NAMES if not n.startswith(colour + " ")], rng.randint(1, 2))
    names = [target] + others
    rng.shuffle(names)
    scene = sc.random_scene(rng, names)
    cot = [_shows(0, [shown]), _shows(1, scene.names()), f"The {target} has the same colour.", _locate(target, 1)]
    return Item(
        "reasoning",
        [sc.reference_picture(rng, shown), sc.render(scene)],
        "Image 1 shows an object. Find the object in image 2 that has the same colour as it and locate it.",
        1,
        scene.find(target).box,
        cot,
        [[{"name": shown, "bbox": None}], _objects_of(scene)],
    )


def view_diff(rng: random.Random, space: AnswerSpace) -> Item:
    first, second, target = _with_difference(rng)
    for _ in range(20):
        dx, dy = rng.randint(-5, 5), rng.randint(-5, 5)
        moved = tuple(o.moved(dx, dy) for o in second.objects)
        if all(o.box[0] >= 0 and o.box[1] >= 0 and o.box[2] <= second.width and o.box[3] <= second.height for o in moved):
            second = Scene(second.width, second.height, moved, second.background)
            break
    cot = [_shows(0, first.names()), _shows(1, second.names()), f"The {target} is only in image 2.", _locate(target, 1)]
    brightness = rng.choice((-30, -20, 20, 30))
    return Item(
        "view_diff",
        [sc.render(first), sc.render(second, brightness=brightness, noise=6.0)],
        "Compare these two images carefully and give me the coordinates of their real difference in image 2.",
        1,
        second.find(target).box,
        cot,
        [_objects_of(first), _objects_of(second)],
    )


# --------------------------------------------------------------------------- training-only source


def grounding(rng: random.Random, space: AnswerSpace) -> Item:
    n = rng.choice((1, 1, 2, 3))
    scenes = [sc.random_scene(rng, sc.random_names(rng, rng.randint(1, 4))) for _ in range(n)]
    k = rng.randrange(n)
    target = rng.choice(scenes[k].objects)
    where = f" in image {k + 1}" if n > 1 else ""
    return Item(
        "grounding",
        [sc.render(s) for s in scenes],
        f"Please locate the {target.name}{where}.",
        k,
        target.box,
        [_shows(k, scenes[k].names()), _locate(target.name, k)],
        [_objects_of(s) for s in scenes],
    )


GENERATORS: dict[str, Callable[[random.Random, AnswerSpace], Item]] = {
    "common_object": common_object,
    "diff": diff,
    "region": region,
    "refer_grounding": refer_grounding,
    "group_grounding": group_grounding,
    "correspondence": correspondence,
    "object_tracking": object_tracking,
    "multi_view": multi_view,
    "reasoning": reasoning,
    "view_diff": view_diff,
    "grounding": grounding,
}


def item_rng(seed: int, split: str, task: str, index: int) -> random.Random:
    """Every item has its own generator, so items do not depend on which others were made."""
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def generate(task: str, seed: int, split: str, index: int, sizing: ImageSizing = TINY_SIZING,
             coords: Space = DEFAULT_FAMILY.coords) -> Item:
    return GENERATORS[task](item_rng(seed, split, task, index), AnswerSpace(coords, sizing))


def gold_response(item: Item, sizing: ImageSizing = TINY_SIZING, coords: Space = DEFAULT_FAMILY.coords) -> str:
    """A correct chain of thought and answer, in the model's space (``coords`` with its image setting)."""
    size = item.images[item.target_image].size
    box = convert(item.target_box, Space.PIXELS, coords, size, sizing)
    return f"<think>{item.think()}</think><answer>{format_answer(box, item.target_image)}</answer>"


def to_record(item: Item, item_id: str, split: str, image_paths: list[str]) -> Record:
    return Record(
        id=item_id,
        task=item.task,
        images=tuple(image_paths),
        question=item.question,
        boxes=(GroundTruthBox(item.target_image, tuple(float(v) for v in item.target_box), Space.PIXELS.value),),
        split=split,
        domain="id" if item.task in ID_TASKS else "ood",
        source="world",
        meta={"cot": item.cot, "objects": item.objects},
    )


def _save_png_atomic(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def write_split(
    out_dir: str | Path,
    split: str,
    per_task: int,
    seed: int = 0,
    tasks: tuple[str, ...] = TASKS,
    sizing: ImageSizing = TINY_SIZING,
    coords: Space = DEFAULT_FAMILY.coords,
) -> Path:
    """Write ``<out>/<split>.jsonl`` and its images; rerunning with the same arguments gives the same files.
    Questions that show a marked box write it in ``coords`` with ``sizing`` (the student model's)."""
    out = Path(out_dir)
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for task in tasks:
        for i in range(per_task):
            item = generate(task, seed, split, i, sizing, coords)
            item_id = f"{task}-{split}-{i:05d}"
            paths = []
            for j, im in enumerate(item.images):
                rel = f"images/{split}/{item_id}_{j}.png"
                if not (out / rel).exists():
                    _save_png_atomic(im, out / rel)
                paths.append(rel)
            records.append(to_record(item, item_id, split, paths).to_dict())
    path = out / f"{split}.jsonl"
    write_jsonl_atomic(path, records)
    return path
