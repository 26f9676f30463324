"""Scenes of coloured shapes and their rendering: the pictures of the embedded world.

A scene is a list of objects (shape, colour, box in pixels) on a canvas of a given size. Objects
never overlap, so every box is the exact extent of one visible shape and names are unique within
an image (a scene never holds two objects of the same name).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

# Mid-range values: the light across the picture (SHADE) shifts them by up to +-40 without clipping.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 45, 45),
    "green": (45, 165, 60),
    "blue": (45, 75, 205),
    "yellow": (205, 190, 45),
    "purple": (140, 55, 175),
    "cyan": (45, 190, 195),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
NAMES = [f"{c} {s}" for c in COLOURS for s in SHAPES]

# Image sizes (width, height) of the world. Most are not multiples of 28, so the Qwen2.5-VL
# resized space differs from the original pixels and per-image conversion is exercised.
IMAGE_SIZES = ((112, 112), (128, 96), (96, 128), (120, 100), (100, 120), (140, 105))


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels (x2, y2 exclusive)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def moved(self, dx: int, dy: int) -> "Obj":
        x1, y1, x2, y2 = self.box
        return replace(self, box=(x1 + dx, y1 + dy, x2 + dx, y2 + dy))


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    objects: tuple[Obj, ...]
    background: int = 0  # seed of the background texture

    def names(self) -> list[str]:
        """Object names from left to right: the order every description uses, so it is learnable."""
        return [o.name for o in sorted(self.objects, key=lambda o: (o.box[0] + o.box[2], o.box[1]))]

    def find(self, name: str) -> Obj | None:
        return next((o for o in self.objects if o.name == name), None)


def random_size(rng: random.Random) -> tuple[int, int]:
    return rng.choice(IMAGE_SIZES)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 3) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def place(
    rng: random.Random,
    width: int,
    height: int,
    names: list[str],
    taken: tuple[Obj, ...] = (),
    min_frac: float = 0.25,
    max_frac: float = 0.45,
    margin: int = 2,
) -> tuple[Obj, ...] | None:
    """Place objects with the given names at random, non-overlapping; None when they do not fit."""
    placed = list(taken)
    side = min(width, height)
    for name in names:
        colour, shape = name.split(" ")
        for _ in range(60):
            w = int(side * rng.uniform(min_frac, max_frac))
            h = int(w * rng.uniform(0.8, 1.25))
            h = min(h, height - 2 * margin)
            if w >= width - 2 * margin:
                continue
            x1 = rng.randint(margin, width - margin - w)
            y1 = rng.randint(margin, height - margin - h)
            box = (x1, y1, x1 + w, y1 + h)
            if not any(_overlaps(box, o.box) for o in placed):
                placed.append(Obj(shape, colour, box))
                break
        else:
            return None
    return tuple(placed[len(taken) :])


def random_names(rng: random.Random, k: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    return rng.sample([n for n in NAMES if n not in exclude], k)


def random_scene(
    rng: random.Random, names: list[str], size: tuple[int, int] | None = None, **place_kw: float
) -> Scene:
    """A scene holding exactly ``names``; retries sizes until they fit."""
    for _ in range(50):
        width, height = size or random_size(rng)
        objects = place(rng, width, height, names, **place_kw)
        if objects is not None:
            return Scene(width, height, objects, rng.randrange(1 << 30))
        place_kw = {**place_kw, "max_frac": max(place_kw.get("max_frac", 0.45) * 0.9, 0.2)}
    raise RuntimeError(f"cannot place {names} in an image")


RAMP = 24.0  # strength of the positional ramp, in grey levels across the picture
# Light falls across every picture, objects included: red grows to the right, blue downwards. It is
# the cue a tiny vision tower needs to know *where* a patch is: Qwen2.5-VL's ViT and LM only have
# rotary (relative) positions, which shape attention but never reach the values a box is read from.
SHADE = 80.0


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A grey field with a faint positional ramp (a cue for where things are) and mild noise."""
    rs = np.random.default_rng(seed)
    base = 120 + rs.integers(-15, 16)
    xs = np.linspace(0, 1, width)[None, :]
    ys = np.linspace(0, 1, height)[:, None]
    img = np.empty((height, width, 3), dtype=np.float32)
    img[..., 0] = base + RAMP * xs
    img[..., 1] = base + 0 * xs + 0 * ys
    img[..., 2] = base + RAMP * ys
    img += rs.normal(0, 4, size=img.shape)
    return img


def draw_object(draw: ImageDraw.ImageDraw, obj: Obj, shift: tuple[int, int] = (0, 0)) -> None:
    x1, y1, x2, y2 = obj.box
    x1, x2 = x1 + shift[0], x2 + shift[0]
    y1, y2 = y1 + shift[1], y2 + shift[1]
    fill = COLOURS[obj.colour]
    # PIL boxes are inclusive: draw within [x1, x2 - 1] so the extent is exactly the box.
    r, b = x2 - 1, y2 - 1
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    if obj.shape == "circle":
        draw.ellipse((x1, y1, r, b), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x1, y1, r, b), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(x1, b), (cx, y1), (r, b)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    elif obj.shape == "cross":
        tw, th = (x2 - x1) / 3, (y2 - y1) / 3
        draw.rectangle((x1 + tw, y1, r - tw, b), fill=fill)
        draw.rectangle((x1, y1 + th, r, b - th), fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene, brightness: int = 0, noise: float = 0.0, marked: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Draw a scene. ``brightness``/``noise`` change the whole picture (robust-difference views);
    ``marked`` draws a thin red frame around a box (a visual reference, as MIG-Bench marks boxes)."""
    arr = _background(scene.width, scene.height, scene.background)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        draw_object(draw, obj)
    if marked is not None:
        x1, y1, x2, y2 = marked
        draw.rectangle((x1 - 2, y1 - 2, x2 + 1, y2 + 1), outline=(255, 0, 0), width=1)
    if SHADE:
        out = np.asarray(img, dtype=np.float32)
        out[..., 0] += SHADE * (np.linspace(0, 1, scene.width)[None, :] - 0.5)
        out[..., 2] += SHADE * (np.linspace(0, 1, scene.height)[:, None] - 0.5)
        img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if brightness or noise:
        out = np.asarray(img, dtype=np.float32) + brightness
        out += np.random.default_rng(scene.background + 1).normal(0, noise, size=out.shape)
        img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return img


def crop(img: Image.Image, box: tuple[int, int, int, int], margin: int = 2) -> Image.Image:
    x1, y1, x2, y2 = box
    return img.crop((max(0, x1 - margin), max(0, y1 - margin), min(img.width, x2 + margin), min(img.height, y2 + margin)))


def reference_picture(rng: random.Random, name: str) -> Image.Image:
    """One object alone on a small canvas: the visual reference of refer/reasoning items."""
    side = rng.choice((56, 70, 84))
    scene = random_scene(rng, [name], size=(side, side), min_frac=0.55, max_frac=0.8)
    return render(scene)


def listing(names: list[str]) -> str:
    """'a red circle, a blue square and a green cross'."""
    items = [f"a {n}" for n in names]
    if len(items) <= 1:
        return "".join(items) or "nothing"
    return ", ".join(items[:-1]) + " and " + items[-1]
