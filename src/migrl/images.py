"""Images: the one image-size setting every stage shares, and safe image loading.

Qwen VL processors resize every image with ``smart_resize`` (sides multiples of the family's factor --
patch x merge, ``migrl.models.family`` -- area within [min_pixels, max_pixels]); Qwen2.5-VL answers in
pixels of that resized image, and every family's image token count follows from it. Training, rollouts,
evaluation and box conversion must agree on the setting, or boxes silently drift; so it lives here, is
stored in each model folder's processor config, and is read back from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from migrl.models.family import DEFAULT_FAMILY, Family

# The default family's geometry (Qwen2.5-VL, the tiny base's), for code that builds Qwen2.5-VL models.
PATCH_SIZE = DEFAULT_FAMILY.geometry.patch
MERGE_SIZE = DEFAULT_FAMILY.geometry.merge
FACTOR = DEFAULT_FAMILY.geometry.factor  # one image token covers FACTOR x FACTOR pixels

# Largest image we agree to decode (pixels): a few-KB PNG can claim 50k x 50k pixels and take
# gigabytes to decode (a decompression bomb). ``image_size`` refuses larger images from the header,
# before anything is decoded, with an error that names the file.
MAX_DECODED_PIXELS = 64_000_000
# Pillow only *warns* between its default MAX_IMAGE_PIXELS (~89M) and twice that, and raises
# DecompressionBombError above. Set it deliberately, so that every decode in the process -- also
# those migrl does not route through ``load_image``, e.g. the ``datasets`` Image feature that feeds
# the trainers -- raises at our limit rather than warning up to ~179M pixels.
Image.MAX_IMAGE_PIXELS = MAX_DECODED_PIXELS // 2


@dataclass(frozen=True)
class ImageSizing:
    """min/max pixels of the processor and the side its resize rounds to (the family's patch x merge:
    28 for Qwen2-VL / Qwen2.5-VL, 32 for the Qwen3 generation). Defaults: Qwen2.5-VL's released folder."""

    min_pixels: int = DEFAULT_FAMILY.released_budget[0]
    max_pixels: int = DEFAULT_FAMILY.released_budget[1]
    factor: int = DEFAULT_FAMILY.geometry.factor

    @classmethod
    def for_family(cls, family: Family, min_pixels: int | None = None, max_pixels: int | None = None) -> "ImageSizing":
        """``family``'s geometry with this budget (its released one where not given)."""
        low, high = family.released_budget
        return cls(min_pixels or low, max_pixels or high, family.geometry.factor)

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the image the model sees."""
        # Imported here, not at the top: transformers' image module takes seconds to import, and every
        # migrl command (``migrl --help`` too) imports this module.
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        h, w = smart_resize(height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    def image_tokens(self, width: int, height: int) -> int:
        w, h = self.resized(width, height)
        return (w // self.factor) * (h // self.factor)

    @classmethod
    def from_processor(cls, processor: Any) -> "ImageSizing":
        """The setting a processor resizes with: its budget and its own patch x merge (what its resize uses;
        the default family's where it names neither)."""
        ip = getattr(processor, "image_processor", processor)
        size = getattr(ip, "size", None) or {}
        get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
        min_px = get("shortest_edge") or getattr(ip, "min_pixels", None) or cls.min_pixels
        max_px = get("longest_edge") or getattr(ip, "max_pixels", None) or cls.max_pixels
        patch = getattr(ip, "patch_size", None) or DEFAULT_FAMILY.geometry.patch
        merge = getattr(ip, "merge_size", None) or DEFAULT_FAMILY.geometry.merge
        return cls(int(min_px), int(max_px), int(patch) * int(merge))

    def apply_to(self, processor: Any, family: Family = DEFAULT_FAMILY) -> None:
        """Make a processor resize images with this setting. Its video processor gets it too where a video
        budget counts pixels per frame, as an image budget does; where it counts the pixels of all frames
        together (the Qwen3 generation) the same numbers would mean another budget, so it is left alone."""
        names = ("image_processor", "video_processor") if family.video_budget_per_frame else ("image_processor",)
        for name in names:
            ip = getattr(processor, name, None)
            if ip is None:
                continue
            ip.size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
            if hasattr(ip, "min_pixels"):
                ip.min_pixels = self.min_pixels
            if hasattr(ip, "max_pixels"):
                ip.max_pixels = self.max_pixels


class ImageError(ValueError):
    """An image a record names cannot be used; the message says which and why."""


def resolve_image_path(path: str, root: str | os.PathLike) -> Path:
    """Absolute path of a record's image, refusing relative paths that leave the data root.

    The check is on the path as written (``..`` that climbs above the root), not on where symlinks
    lead: the records file is what may be hostile, while a symlinked image folder
    (``data/images -> /mnt/disk/images``) is the filesystem owner's choice and stays usable.
    Absolute paths are taken as they are (stages write them into the records they derive).
    """
    root_path = Path(os.path.abspath(root))
    candidate = Path(path)
    full = Path(os.path.normpath(candidate if candidate.is_absolute() else root_path / candidate))
    if not candidate.is_absolute() and not full.is_relative_to(root_path):
        raise ImageError(f"image path {path!r} escapes the data root {str(root_path)!r}")
    return full


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header only; cheap enough to call per record."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise ImageError(f"image {str(path)!r} does not exist") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image {str(path)!r} is a decompression bomb (over {MAX_DECODED_PIXELS} pixels)") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageError(f"image {str(path)!r} cannot be read: {exc}") from None
    if width * height > MAX_DECODED_PIXELS:
        raise ImageError(f"image {str(path)!r} is {width}x{height}, over the {MAX_DECODED_PIXELS} pixel limit "
                         "(a decompression bomb, or an image too large to use)")
    return width, height


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image to RGB, refusing decompression bombs (from the header) and truncated files."""
    image_size(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:
        raise ImageError(f"image {str(path)!r} cannot be decoded: {exc}") from None


# The embedded tiny models' budget in image tokens of their family: at least 4, at most 4 x 4, so the world's
# ~112 px pictures keep about their own size (Qwen2.5-VL: 3136 to 12544 pixels; Qwen3-VL: 4096 to 16384).
TINY_MIN_TOKENS = 4
TINY_MAX_SIDE_TOKENS = 4


def tiny_sizing(family: Family = DEFAULT_FAMILY) -> ImageSizing:
    """The image setting of ``family``'s embedded tiny base: the same token budget in its own token size."""
    factor = family.geometry.factor
    return ImageSizing(TINY_MIN_TOKENS * factor ** 2, (TINY_MAX_SIDE_TOKENS * factor) ** 2, factor)


# The shipped tiny base's setting (Qwen2.5-VL's tokens: min_pixels 3136, max_pixels 112 x 112).
TINY_SIZING = tiny_sizing()


class ImageSizes:
    """Original (width, height) of images under a data root, read from file headers once each."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._cache: dict[str, tuple[int, int]] = {}

    def __call__(self, path: str) -> tuple[int, int]:
        if path not in self._cache:
            self._cache[path] = image_size(resolve_image_path(path, self.root))
        return self._cache[path]
