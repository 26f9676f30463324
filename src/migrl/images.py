"""Images: the one image-size setting every stage shares, and safe image loading.

Qwen2.5-VL resizes every image with ``smart_resize`` (sides multiples of 28, area within
[min_pixels, max_pixels]) and answers in pixels of that resized image. Training, rollouts,
evaluation and box conversion must agree on the setting, or boxes silently drift; so it lives
here, is stored in each model folder's processor config, and is read back from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # one image token covers FACTOR x FACTOR pixels

# Largest image we agree to decode (pixels). Pillow's own bomb guard warns at ~89M and raises
# at twice that; we refuse earlier, with an error that names the record.
MAX_DECODED_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageSizing:
    """min/max pixels of the processor; Qwen2.5-VL's released preprocessor defaults."""

    min_pixels: int = 3136
    max_pixels: int = 12845056

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the image the model sees."""
        h, w = smart_resize(height, width, factor=FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    def image_tokens(self, width: int, height: int) -> int:
        w, h = self.resized(width, height)
        return (w // FACTOR) * (h // FACTOR)

    @classmethod
    def from_processor(cls, processor: Any) -> "ImageSizing":
        ip = getattr(processor, "image_processor", processor)
        size = getattr(ip, "size", None) or {}
        get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
        min_px = get("shortest_edge") or getattr(ip, "min_pixels", None) or cls.min_pixels
        max_px = get("longest_edge") or getattr(ip, "max_pixels", None) or cls.max_pixels
        return cls(int(min_px), int(max_px))

    def apply_to(self, processor: Any) -> None:
        """Make a processor resize with this setting (image and video processors alike)."""
        for name in ("image_processor", "video_processor"):
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
    """Absolute path of a record's image, refusing paths that leave the data root."""
    root_path = Path(root).resolve()
    candidate = Path(path)
    full = (candidate if candidate.is_absolute() else root_path / candidate).resolve()
    if not candidate.is_absolute() and root_path not in full.parents and full != root_path:
        raise ImageError(f"image path {path!r} escapes the data root {str(root_path)!r}")
    return full


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the header only; cheap enough to call per record."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise ImageError(f"image {str(path)!r} does not exist") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageError(f"image {str(path)!r} cannot be read: {exc}") from None


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image to RGB, refusing decompression bombs and truncated files."""
    width, height = image_size(path)
    if width * height > MAX_DECODED_PIXELS:
        raise ImageError(f"image {str(path)!r} is {width}x{height}, over the {MAX_DECODED_PIXELS} pixel limit")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:
        raise ImageError(f"image {str(path)!r} cannot be decoded: {exc}") from None


# The embedded tiny model's setting: the world's ~112 px pictures become at most 4 x 4 image tokens.
TINY_SIZING = ImageSizing(min_pixels=3136, max_pixels=112 * 112)
