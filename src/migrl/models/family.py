"""Model families: what migrl must know about each Qwen VL generation, as one fact per family.

A folder's family is its ``config.json`` ``model_type``. Everything that differs between generations and
decides boxes, image tokens or loading lives here, and every other module asks this registry:

- the coordinate space its answers are in (``migrl.boxes.Space``);
- the image geometry: vision patch side and spatial merge (one image token covers ``factor`` x ``factor``
  pixels, and ``smart_resize`` makes both sides multiples of ``factor``);
- where its released ``preprocessor_config.json`` keeps the image budget, and that budget;
- the answer format it is taught to ground in;
- the processor outputs a forward pass needs with a batch of images;
- the transformers class that loads it.

Where each fact was checked (transformers 5.24 as installed, and the Qwen repositories):

- Qwen2.5-VL: absolute pixels of the *resized* image -- QwenLM/Qwen3-VL
  ``qwen-vl-finetune/tools/process_bbox.ipynb`` ("Qwen2.5-VL using the absolute coordinated for the resized
  image", its ``convert_to_qwen25vl_format`` with factor 28) and the maintainer's answer in QwenLM/Qwen3-VL
  issue #676. Patch 14, merge 2: ``Qwen2_5_VLVisionConfig`` defaults; budget ``min_pixels`` / ``max_pixels``
  in the released file (3136 / 12845056, measured in ../shared/DESIGN.md).
- Qwen2-VL: integers in [0, 1000] of each image -- ``process_bbox.ipynb`` ``convert_to_qwen2vl_format``
  (``round(x / w * 1000)``, clipped to [0, 1000]). Patch 14, merge 2: ``Qwen2VLVisionConfig`` defaults. Its
  released budget is taken to be Qwen2.5-VL's (the same 4 to 16384 tokens; not re-checked here).
- Qwen3-VL (dense and MoE): relative coordinates in [0, 1000] of each image, like Qwen2-VL -- QwenLM/Qwen3-VL
  README (2d_grounding cookbook: "Using relative position coordinates"), ``cookbooks/omni_recognition.ipynb``
  ("we use relative coordinates, and the coordinates are scaled from 0 to 1000"),
  ``cookbooks/spatial_understanding.ipynb`` (``point / 1000 * width``), ``evaluation/ODinW-13/run_odinw.py``
  (``/ 1000 * [img_w, img_h, ...]``) and the maintainer's answer in issue #1486 (use
  ``convert_to_qwen2vl_format``). Patch 16, merge 2 (factor 32): ``Qwen3VLVisionConfig`` defaults and the
  README ("the compression ratio is 32 for Qwen3-VL"). Budget: a ``size`` dict, ``shortest_edge`` =
  min_pixels, ``longest_edge`` = max_pixels (README, "Pixel Control via Official Processor"); for *videos*
  ``longest_edge`` bounds the pixels of all frames together (same section; ``Qwen3VLVideoProcessor.resize``).
- Qwen3.5 (dense and MoE): patch 16, merge 2, ``Qwen3VLProcessor`` and the ``size`` budget
  (``Qwen3_5VisionConfig`` defaults, ``processing_auto`` / ``image_processing_auto``). The released files say
  the same (Qwen3.5-0.8B's ``config.json``: ``vision_config`` patch_size 16, spatial_merge_size 2; copies of
  the Qwen3.5 ``preprocessor_config.json``: ``processor_class`` Qwen3VLProcessor, ``Qwen2VLImageProcessorFast``,
  ``size`` shortest_edge 65536 / longest_edge 16777216, i.e. 64 to 16384 tokens of 32 px as Qwen3-VL's; the
  video file's longest_edge 25165824 bounds all frames together), and ``layer_types`` makes every 4th decoder
  layer attention and the rest Gated DeltaNet, hence ``kv_cache_only=False``. Its box convention is not stated
  in its own documentation (QwenLM/Qwen3.5 README, the model cards): ``coords`` is None, so every command asks
  for ``--coords`` rather than guessing. The nearest statements: third-party pages say "Qwen3-VL and 3.5" use
  [0, 1000], and a Qwen maintainer, asked of a later generation whether coordinates are "still" in [0, 1000]
  as in Qwen3.5, answers "in most cases ... relative coordinates normalized to [0, 1000]" (QwenLM
  Qwen3.8-Flash-Next issue #4, 2026-08-27). recipes/qwen3_5/ pass ``coords: qwen2`` for that reason and say so.

All six processors return ``mm_token_type_ids`` (``return_mm_token_type_ids = True`` and
``model_input_names``). It must travel with the batch: Qwen3-VL refuses a multimodal forward without it,
and Qwen2-VL / Qwen2.5-VL silently fall back to 1-D positions (``compute_3d_position_ids`` returns None).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrl.boxes import Space

# Processor outputs a forward pass needs for a batch of image prompts (every family's processor returns them).
IMAGE_BATCH_FIELDS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")

QWEN2_JSON_ANSWER = 'JSON {"bbox_2d": [x1, y1, x2, y2], "label": "..."} (a list of them for several objects)'
QWEN2_TOKEN_ANSWER = "<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>"


@dataclass(frozen=True)
class Geometry:
    """How the vision tower cuts an image: ``patch`` x ``patch`` pixel patches, ``merge`` x ``merge`` of them
    one image token."""

    patch: int
    merge: int = 2

    @property
    def factor(self) -> int:
        """Side of the pixels one image token covers; smart_resize rounds both sides to multiples of it."""
        return self.patch * self.merge


@dataclass(frozen=True)
class Family:
    model_type: str  # config.json model_type
    name: str
    coords: Space | None  # None: its own documentation does not say; commands ask for --coords
    geometry: Geometry
    size_dict_budget: bool  # the released preprocessor_config.json: size {shortest_edge, longest_edge}, else min/max_pixels
    released_budget: tuple[int, int]  # (min_pixels, max_pixels) of the released preprocessor_config.json
    answer_format: str | None  # how it is taught to write a box (None: not documented)
    model_class: str  # transformers class name
    batch_fields: tuple[str, ...] = IMAGE_BATCH_FIELDS
    video_budget_per_frame: bool = True  # False: the video processor's longest_edge bounds all frames together
    kv_cache_only: bool = True  # every decoder layer keeps a key/value cache (engines/decoding.py stacks them)

    def budget_config(self, min_pixels: int, max_pixels: int) -> dict[str, Any]:
        """The budget as this family's released preprocessor_config.json writes it."""
        if self.size_dict_budget:
            return {"size": {"longest_edge": max_pixels, "shortest_edge": min_pixels}}
        return {"min_pixels": min_pixels, "max_pixels": max_pixels}


# Both Qwen2-generation budgets are 4 to 16384 image tokens of 28 x 28 pixels; Qwen3's 64 to 16384 of 32 x 32.
_QWEN2_GEOMETRY = Geometry(patch=14)
_QWEN3_GEOMETRY = Geometry(patch=16)
_QWEN2_BUDGET = (4 * _QWEN2_GEOMETRY.factor ** 2, 16384 * _QWEN2_GEOMETRY.factor ** 2)  # 3136, 12845056
_QWEN3_BUDGET = (64 * _QWEN3_GEOMETRY.factor ** 2, 16384 * _QWEN3_GEOMETRY.factor ** 2)  # 65536, 16777216


def _qwen3(model_type: str, name: str, coords: Space | None, model_class: str, **kw: Any) -> Family:
    return Family(model_type, name, coords, _QWEN3_GEOMETRY, True, _QWEN3_BUDGET, kw.pop("answer_format", QWEN2_JSON_ANSWER),
                  model_class, video_budget_per_frame=False, **kw)


QWEN2_VL = Family("qwen2_vl", "Qwen2-VL", Space.QWEN2, _QWEN2_GEOMETRY, False, _QWEN2_BUDGET, QWEN2_TOKEN_ANSWER,
                  "Qwen2VLForConditionalGeneration")
QWEN25_VL = Family("qwen2_5_vl", "Qwen2.5-VL", Space.QWEN25, _QWEN2_GEOMETRY, False, _QWEN2_BUDGET, QWEN2_JSON_ANSWER,
                   "Qwen2_5_VLForConditionalGeneration")
QWEN3_VL = _qwen3("qwen3_vl", "Qwen3-VL", Space.QWEN2, "Qwen3VLForConditionalGeneration")
QWEN3_VL_MOE = _qwen3("qwen3_vl_moe", "Qwen3-VL-MoE", Space.QWEN2, "Qwen3VLMoeForConditionalGeneration")
# Qwen3.5's decoder mixes Gated DeltaNet layers (a recurrent state, no key/value cache) with attention layers.
QWEN35 = _qwen3("qwen3_5", "Qwen3.5", None, "Qwen3_5ForConditionalGeneration", answer_format=None, kv_cache_only=False)
QWEN35_MOE = _qwen3("qwen3_5_moe", "Qwen3.5-MoE", None, "Qwen3_5MoeForConditionalGeneration", answer_format=None,
                    kv_cache_only=False)

FAMILIES: dict[str, Family] = {f.model_type: f for f in (QWEN2_VL, QWEN25_VL, QWEN3_VL, QWEN3_VL_MOE, QWEN35, QWEN35_MOE)}
# The family of the paper's model, the tiny base and every default that predates the registry.
DEFAULT_FAMILY = QWEN25_VL
# The families migrl builds an embedded tiny base of, by the name `migrl pretrain-base / demo --family` take.
TINY_FAMILIES: dict[str, Family] = {"qwen2.5-vl": QWEN25_VL, "qwen3-vl": QWEN3_VL}
DEFAULT_TINY_FAMILY = "qwen2.5-vl"  # DEFAULT_FAMILY's name there


def model_type_of(folder: str | os.PathLike) -> str | None:
    """``model_type`` of the folder's config.json; OSError / ValueError when it cannot be read."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type") if isinstance(config, dict) else None


def family_of(folder: str | os.PathLike) -> Family | None:
    """The family of the model in ``folder`` (None for a model type migrl does not know)."""
    return FAMILIES.get(model_type_of(folder) or "")
