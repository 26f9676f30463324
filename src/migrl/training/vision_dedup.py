"""Image de-duplication for a GRPO group: the G rollouts of a prompt carry the same images G times.

- ``dedup_vision``: the vision tower runs on each distinct image of a call once, its features copied to
  the repeats (exact: images are encoded independently, and gradients of a repeat sum as over copies).
- ``SharedImageProcessor``: the image processor resizes and patches each distinct image once per batch.
- ``vision_tower`` / ``vision_tower_owner``: a (possibly PEFT-wrapped) Qwen2-VL-style model's tower and the
  backbone holding it.

For Qwen2-VL-style towers and processors (``pixel_values`` patches + ``image_grid_thw``); anything else
is passed through unchanged. ``migrl.training.grpo_sharing`` installs them in the trainer.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from migrl.training.grpo_packing import fingerprint


# -- the vision tower: each distinct image once per call ------------------------------------------

def _unique_images(hidden_states: torch.Tensor, sizes: list[int]) -> tuple[list[torch.Tensor], list[int], list[int]]:
    chunks = list(torch.split(hidden_states, sizes))
    buckets: dict[bytes, list[int]] = {}
    uniques: list[int] = []
    which: list[int] = []
    for i, ch in enumerate(chunks):
        for u in buckets.setdefault(fingerprint(ch), []):
            if torch.equal(chunks[uniques[u]], ch):
                which.append(u)
                break
        else:
            buckets[fingerprint(ch)].append(len(uniques))
            which.append(len(uniques))
            uniques.append(i)
    return chunks, uniques, which


def _expand_rows(t: torch.Tensor, unique_sizes: list[int], which: list[int]) -> torch.Tensor:
    starts = torch.tensor([0, *unique_sizes[:-1]]).cumsum(0).tolist()
    index = torch.cat([torch.arange(starts[u], starts[u] + unique_sizes[u]) for u in which]).to(t.device)
    return t.index_select(0, index)


def dedup_vision(visual: torch.nn.Module) -> None:
    """Make ``visual`` (a Qwen2-VL-style tower: ``forward(hidden_states, grid_thw)``; Qwen3-VL's DeepStack
    features are copied like the merged ones) encode each distinct image of a call once and copy its
    features to the repeats.

    Exact: images are encoded independently (attention windows and ``cu_seqlens`` never cross images),
    and gradients of a repeated image sum through ``index_select`` as they would over the copies."""
    if getattr(visual, "_migrl_dedup", False):
        return
    original: Callable[..., Any] = visual.forward
    merge_unit = getattr(visual, "spatial_merge_unit", 4)

    def forward(hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            return original(hidden_states, grid_thw, **kwargs)
        sizes = grid_thw.prod(-1).tolist()
        chunks, uniques, which = _unique_images(hidden_states, sizes)
        if len(uniques) == len(chunks):
            return original(hidden_states, grid_thw, **kwargs)
        out = original(torch.cat([chunks[u] for u in uniques]), grid_thw[uniques], **kwargs)
        unique_sizes = [sizes[u] for u in uniques]
        merged = [s // merge_unit for s in unique_sizes]
        out.pooler_output = _expand_rows(out.pooler_output, merged, which)
        if getattr(out, "deepstack_features", None):  # Qwen3-VL: merged features for early decoder layers
            out.deepstack_features = [_expand_rows(f, merged, which) for f in out.deepstack_features]
        # last_hidden_state is in window order, but the windows of an image are contiguous per image
        out.last_hidden_state = _expand_rows(out.last_hidden_state, unique_sizes, which)
        return out

    visual.forward = forward
    visual._migrl_dedup = True


def vision_tower_owner(model: Any) -> Any:
    """``model.model`` of a (possibly PEFT-wrapped) Qwen2-VL-style model: the backbone holding ``visual``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "model", None)


def vision_tower(model: Any) -> torch.nn.Module | None:
    """``model.model.visual`` of a (possibly PEFT-wrapped) Qwen2-VL-style model, else None."""
    return getattr(vision_tower_owner(model), "visual", None)


# -- the image processor: each distinct image once per batch ---------------------------------------

def _image_key(image: Any) -> tuple | None:
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        data = image.tobytes()
        return (image.mode, image.size, hash(data)), data
    return None


class SharedImageProcessor:
    """Wraps a Qwen2-VL-style image processor (output: ``pixel_values`` patches + ``image_grid_thw``)
    so that within its lifetime each distinct image is processed once; every other attribute is the
    wrapped processor's. Images are processed independently of their batch, so the output is the same.
    TRL calls the processor twice per step on G copies of each image (prompt tokens, then forward
    inputs); the cache covers both."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._cache: dict[tuple, list[tuple[bytes, torch.Tensor, torch.Tensor]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _lookup(self, key: tuple, data: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
        for stored, pix, grid in self._cache.get(key, []):
            if stored == data:
                return pix, grid
        return None

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.image_utils import make_flat_list_of_images

        # TRL's two calls: apply_chat_template passes no return_tensors (torch tensors come back), the
        # processor's own call passes "pt"
        if args or kwargs.get("return_tensors") not in (None, "pt") or images is None:
            return self._inner(images, *args, **kwargs)
        flat = make_flat_list_of_images(images)
        keys = [_image_key(im) for im in flat]
        if any(k is None for k in keys):
            return self._inner(images, **kwargs)
        setting = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        keys = [((setting, *key), data) for key, data in keys]  # other resize settings, other patches
        todo = {}
        for im, (key, data) in zip(flat, keys):
            if self._lookup(key, data) is None and (key, data) not in todo:
                todo[(key, data)] = im
        if todo:
            out = self._inner(list(todo.values()), **kwargs)
            if set(out.keys()) != {"pixel_values", "image_grid_thw"} or not all(isinstance(v, torch.Tensor) for v in out.values()):
                return self._inner(images, **kwargs)  # another layout: do not guess
            grids = out["image_grid_thw"]
            for (key, data), pix, grid in zip(todo, torch.split(out["pixel_values"], grids.prod(-1).tolist()), grids):
                self._cache.setdefault(key, []).append((data, pix, grid))
        found = [self._lookup(key, data) for key, data in keys]
        return BatchFeature(
            data={"pixel_values": torch.cat([f[0] for f in found]), "image_grid_thw": torch.stack([f[1] for f in found])}
        )
