"""Which coordinate space a model's numbers are in, and the image setting that space depends on.

One rule for every command, so the same answers score the same everywhere:

1. ``--coords`` when given; otherwise the model folder's family (``config.json`` ``model_type``, the
   registry in ``migrl.models.family``): Qwen2.5-VL answers in pixels of its resized image (``qwen25``),
   Qwen2-VL and Qwen3-VL in [0, 1000] of each image (``qwen2``). A family whose own documentation does
   not state its convention (Qwen3.5) is refused, as an unknown one is.
2. Where the space needs the image setting (``qwen25``: the resized size depends on min/max pixels),
   explicit ``--min-pixels`` / ``--max-pixels`` when given, else the model folder's processor config.
3. Neither: the command refuses and says what to pass. Nothing falls back to the tiny demo model's
   setting -- with it, perfect Qwen2.5-VL boxes on camera-size pictures score 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from migrl.bad_records import OptionError
from migrl.boxes import Space
from migrl.images import ImageSizing
from migrl.models.family import DEFAULT_FAMILY, family_of, model_type_of

SPACES_NEEDING_SIZING = (Space.QWEN25,)
# Record ``meta`` key: the space (and image setting) the boxes of a record's ``response`` are written in.
RESPONSE_SPACE = "response_space"


@dataclass(frozen=True)
class AnswerSpace:
    coords: Space
    sizing: ImageSizing | None  # None where the space does not depend on the image setting

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"coords": self.coords.value}
        if self.sizing is not None:
            d.update(min_pixels=self.sizing.min_pixels, max_pixels=self.sizing.max_pixels)
            if self.sizing.factor != DEFAULT_FAMILY.geometry.factor:  # Qwen2.5-VL's files stay as they were
                d["factor"] = self.sizing.factor
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnswerSpace":
        coords = Space(d["coords"])
        sizing = None
        if "max_pixels" in d:
            sizing = ImageSizing(int(d["min_pixels"]), int(d["max_pixels"]), int(d.get("factor", ImageSizing.factor)))
        return cls(coords, sizing)


def family_coords(folder: str | os.PathLike) -> Space:
    """The space the model in ``folder`` answers in: its family's, by its config.json."""
    config = Path(folder) / "config.json"
    try:
        model_type = model_type_of(folder)
    except (OSError, ValueError) as exc:
        raise OptionError(f"{str(config)!r} cannot be read ({exc}); pass --coords") from None
    family = family_of(folder)
    if family is None or family.coords is None:
        known = f"a {family.name} model, whose documentation states no box convention" if family else \
            f"a {model_type!r} model, whose box convention migrl does not know"
        raise OptionError(f"{str(folder)!r} is {known}; pass --coords ({', '.join(s.value for s in Space)})")
    return family.coords


def resolve_coords(command: str, model: str | os.PathLike | None, coords: str | None) -> Space:
    """Step 1 of the rule: ``coords``, else the model folder's family; refuses when there is neither."""
    if coords:
        return Space(coords)
    if model:
        from migrl.models.loading import resolve_model_path

        return family_coords(resolve_model_path(model))
    raise OptionError(f"{command}: which coordinates are the answers in? Pass --model FOLDER (the model that wrote "
                      f"them; its config decides) or --coords ({', '.join(s.value for s in Space)})")


def resolve_answer_space(command: str, model: str | os.PathLike | None = None, coords: str | None = None,
                         min_pixels: int = 0, max_pixels: int = 0) -> AnswerSpace:
    """The rule above; ``command`` names the command in the error message."""
    space = resolve_coords(command, model, coords)
    if space not in SPACES_NEEDING_SIZING:
        return AnswerSpace(space, None)
    return AnswerSpace(space, resolve_sizing(command, model, min_pixels, max_pixels))


def answer_space_of(model: str | None, coords: str | None, sizing: ImageSizing) -> AnswerSpace:
    """The space a generating stage's model answers in (``model`` None: the shipped tiny base, every stage's
    default model), with the image setting its loaded processor resizes with."""
    from migrl.models.loading import resolve_model_path

    space = resolve_coords("eval/reject", resolve_model_path(model), coords)  # a folder: never refused for want of one
    return AnswerSpace(space, sizing if space in SPACES_NEEDING_SIZING else None)


def sizing_override(command: str, model: str | os.PathLike, min_pixels: int, max_pixels: int) -> ImageSizing | None:
    """A training stage's ``min_pixels`` / ``max_pixels`` over the folder's setting; None when neither is set."""
    return resolve_sizing(command, model, min_pixels, max_pixels) if min_pixels or max_pixels else None


def resolve_sizing(command: str, model: str | os.PathLike | None, min_pixels: int = 0, max_pixels: int = 0) -> ImageSizing:
    """Explicit pixels over the model folder's processor setting; refuses when there is neither."""
    if model:
        from migrl.models.loading import load_processor

        folder_sizing = ImageSizing.from_processor(load_processor(model))  # its family's factor, too
        return replace(folder_sizing, min_pixels=min_pixels or folder_sizing.min_pixels,
                       max_pixels=max_pixels or folder_sizing.max_pixels)
    if max_pixels:
        return ImageSizing(min_pixels or ImageSizing.min_pixels, max_pixels)
    raise OptionError(f"{command}: qwen25 boxes are pixels of the image as the model resized it, which depends on its "
                      "image setting: pass --model FOLDER (its processor config decides) or --max-pixels N "
                      "(and --min-pixels N) as the model was run")
