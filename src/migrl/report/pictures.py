"""Box pictures, like the paper's Figure 3: every image of an item side by side, numbered as the
prompt numbers them, ground truth in green and a run's predicted box in dashed magenta, one row per run.

The prediction's colour is none the images use: the world's prompts draw a red frame around the object to
follow (tracking, multi-view, correspondence; ``migrl.data.scenes.render``), and its objects are red, green,
blue, yellow, purple and cyan (``scenes.COLOURS``); a red prediction box would look like the prompt's marker."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

from migrl.boxes import Bbox, PredictedBox, Space, clip_box, convert, iou, parse_answer
from migrl.images import ImageError, ImageSizing, load_image, resolve_image_path
from migrl.records import Record
from migrl.scoring.judge import first_box, is_hit

TRUTH, PREDICTION = (0, 190, 0), (255, 0, 255)  # solid green; magenta, away from every marker and object colour
TRUTH_NAME, PREDICTION_NAME = "solid green", "dashed magenta"  # what the legend says of them
DASH = 5  # pixels on, then off, along a prediction's outline: a second cue besides the colour
HEIGHT = 192  # every image is scaled to this height: the world's 112 px pictures become legible
GAP, CAPTION = 8, 18
FONT_SIZE = 13  # Pillow's default caption font is 10 px: too small to read beside 192 px pictures
# the truth's wider line stays visible inside a prediction drawn on top of it
TRUTH_LINE, PREDICTION_LINE = 5, 2


@dataclass(frozen=True)
class Prediction:
    """One run's answer to an item, placed on the image it names (or else the target image)."""

    label: str
    text: str | None  # None: the run has no prediction for the item
    image_index: int | None = None
    bbox: Bbox | None = None  # original pixels of that image
    iou: float | None = None  # against the ground truth, 0 on another image (the scorer's rule)
    note: str = ""  # why nothing is drawn
    more: tuple[tuple[int, Bbox], ...] = ()  # further boxes, (image index, original pixels), drawn as well

    def verdict(self) -> str:
        parts = [f"IoU {self.iou:.2f} ({'hit' if is_hit(self.iou) else 'miss'})"] if self.iou is not None else []
        return ", ".join(parts + ([self.note] if self.note else []))


def load_images(record: Record, root: Path) -> list[Image.Image | None]:
    """The item's images; None for one that cannot be read, so one bad file costs one panel."""
    images: list[Image.Image | None] = []
    for path in record.images:
        try:
            images.append(load_image(resolve_image_path(path, root)))
        except ImageError:
            images.append(None)
    return images


def truth_boxes(record: Record, images: list[Image.Image | None], sizing: ImageSizing) -> list[tuple[int, Bbox]]:
    """Every ground-truth box in original pixels, with its image index."""
    out = []
    for gt in record.boxes:
        image = images[gt.image_index]
        if image is not None:
            out.append((gt.image_index, convert(gt.bbox, gt.space, Space.PIXELS, image.size, sizing)))
    return out


# Reads the box a scorer takes from a text, in the model's space (None: no box). By default migrl's parser;
# a benchmark whose official rule reads boxes otherwise (MIG-Bench) passes its own, so that the picture
# shows the box that was scored.
BoxReader = Callable[[str], "PredictedBox | None"]


def place_prediction(
    label: str, text: str | None, record: Record, images: list[Image.Image | None], coords: Space, sizing: ImageSizing,
    reader: BoxReader = first_box,
) -> Prediction:
    """Convert the answer's first box from the model's space to pixels of the image it lies on."""
    if text is None:
        return Prediction(label, None, note="no prediction")
    box = reader(text)
    if box is None:
        return Prediction(label, text, iou=0.0, note="no box in the answer")
    target = record.target
    index = box.image_index if box.image_index is not None else (target.image_index if target else 0)
    if not 0 <= index < len(images):
        return Prediction(label, text, iou=0.0, note=f"names image {index + 1} of {len(images)}")
    image = images[index]
    if image is None:
        return Prediction(label, text, note=f"image {index + 1} cannot be read")
    bbox = convert(box.bbox, coords, Space.PIXELS, image.size, sizing)
    score = None
    notes = []
    if target is not None:
        truth = convert(target.bbox, target.space, Space.PIXELS, image.size, sizing)
        score = iou(bbox, truth) if index == target.image_index else 0.0
        if index != target.image_index:
            notes.append(f"box on image {index + 1}, the object is in image {target.image_index + 1}")
    x1, y1, x2, y2 = clip_box(bbox, image.width, image.height)
    if not (bbox[2] > bbox[0] and bbox[3] > bbox[1]):  # nothing is drawn: say why, or it looks like no answer
        notes.append("empty or inverted box")
    elif not (x2 > x1 and y2 > y1):
        notes.append(f"box outside image {index + 1} ({image.width}x{image.height} px)")
    return Prediction(label, text, index, bbox, score, "; ".join(notes))


def place_every_box(
    label: str, text: str | None, record: Record, images: list[Image.Image | None], coords: Space, sizing: ImageSizing
) -> Prediction:
    """Every box of the answer on the image it names (MC-Bench: each box is a detection, scored by AP and
    per-image presence, so no single IoU says whether the item is right); a box naming no image is not
    scored there, and only counted."""
    if text is None:
        return Prediction(label, None, note="no prediction")
    placed: list[tuple[int, Bbox]] = []
    unplaced = unreadable = 0
    for box in parse_answer(text).boxes:
        if box.image_index is None or not 0 <= box.image_index < len(images):
            unplaced += 1
        elif images[box.image_index] is None:
            unreadable += 1
        else:
            placed.append((box.image_index, convert(box.bbox, coords, Space.PIXELS, images[box.image_index].size, sizing)))
    notes = [f"{len(placed)} box(es) drawn"]
    if unplaced:
        notes.append(f"{unplaced} name no image of the item and are not scored")
    if unreadable:
        notes.append(f"{unreadable} on images that cannot be read")
    first = placed[0] if placed else (None, None)
    return Prediction(label, text, first[0], first[1], None, ", ".join(notes), tuple(placed[1:]))


def _panel(image: Image.Image | None) -> tuple[Image.Image, float]:
    """The image scaled to HEIGHT, and the scale; a grey panel stands in for an unreadable image."""
    if image is None:
        return Image.new("RGB", (HEIGHT, HEIGHT), (128, 128, 128)), 1.0
    scale = HEIGHT / image.height
    return image.resize((max(1, round(image.width * scale)), HEIGHT), Image.Resampling.BICUBIC), scale


def _dashed(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], color: tuple, width: int) -> None:
    """A rectangle's outline in dashes of DASH pixels (Pillow draws solid outlines only); the box is not empty."""
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = abs(bx - ax) + abs(by - ay)  # each edge is horizontal or vertical
        for start in range(0, int(length) + 1, 2 * DASH):
            t0, t1 = start / length, min(start + DASH, length) / length
            draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1),
                      fill=color, width=width)


def _rectangle(
    draw: ImageDraw.ImageDraw, bbox: Bbox, panel: tuple[Image.Image, float], x0: int, y0: int, color: tuple, width: int,
    dashed: bool = False,
) -> None:
    image, scale = panel
    # clipped to its panel: a box running off its image must not land on the neighbour
    x1, y1, x2, y2 = clip_box([v * scale for v in bbox], image.width - 1, image.height - 1)
    if x2 > x1 and y2 > y1:  # an inverted or fully outside box has nothing to draw
        if dashed:
            _dashed(draw, (x0 + x1, y0 + y1, x0 + x2, y0 + y2), color, width)
        else:
            draw.rectangle((x0 + x1, y0 + y1, x0 + x2, y0 + y2), outline=color, width=width)


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)  # the bitmap font, size ignored, without FreeType


def _caption_text(draw: ImageDraw.ImageDraw, text: str) -> str:
    try:
        draw.textlength(text, font=_font())
        return text
    except UnicodeEncodeError:  # Pillow without FreeType has a Latin-1 bitmap font only
        return text.encode("ascii", "replace").decode()


def _caption(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str) -> None:
    draw.text(xy, _caption_text(draw, text), fill=(0, 0, 0), font=_font())


def _caption_width(text: str) -> int:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return int(draw.textlength(_caption_text(draw, text), font=_font())) + 1


def draw_item(
    record: Record, images: list[Image.Image | None], predictions: list[Prediction], sizing: ImageSizing
) -> Image.Image:
    """One row per run (a single ground-truth row when there is none)."""
    panels = [_panel(im) for im in images]
    truths = truth_boxes(record, images, sizing)
    rows = predictions or [Prediction("ground truth only", None)]
    row_height = 2 * CAPTION + HEIGHT + GAP
    captions = [": ".join(filter(None, (pred.label, pred.verdict()))) for pred in rows]
    # wide enough for the longest caption: a narrow item must not cut its verdict off
    width = max([GAP + sum(p.width + GAP for p, _ in panels)] + [2 * GAP + _caption_width(c) for c in captions])
    canvas = Image.new("RGB", (width, GAP + row_height * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, pred in enumerate(rows):
        y = GAP + r * row_height
        _caption(draw, (GAP, y), captions[r])
        x = GAP
        for i, panel in enumerate(panels):
            _caption(draw, (x, y + CAPTION), f"image {i + 1}")
            top = y + 2 * CAPTION
            canvas.paste(panel[0], (x, top))
            for index, bbox in truths:
                if index == i:
                    _rectangle(draw, bbox, panel, x, top, TRUTH, TRUTH_LINE)
            if pred.image_index == i and pred.bbox is not None:
                _rectangle(draw, pred.bbox, panel, x, top, PREDICTION, PREDICTION_LINE, dashed=True)
            for index, bbox in pred.more:
                if index == i:
                    _rectangle(draw, bbox, panel, x, top, PREDICTION, PREDICTION_LINE, dashed=True)
            x += panel[0].width + GAP
    return canvas


def save_png_atomic(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
