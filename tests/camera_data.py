"""Camera-size test data: MGrounding-630k files and migrl records whose pictures are 640x480 to 1920x1080,
several sizes in one prompt, as a researcher's data is (not the world's 112-px pictures)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from migrl.boxes import Space, convert

SIZES = ((640, 480), (1280, 720), (1920, 1080))


def picture(path: Path, size: tuple[int, int], box_px: tuple[float, float, float, float], seed: int) -> None:
    """A JPEG with a filled object where ``box_px`` is (MGrounding ships JPEGs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (40 + 13 * seed % 180, 90, 140))
    ImageDraw.Draw(im).rectangle(box_px, fill=(230, 200, 30))
    im.save(path, quality=85)


def item_sizes(i: int) -> list[tuple[int, int]]:
    """2 to 4 pictures of mixed sizes, different for each item."""
    n = 2 + i % 3
    return [SIZES[(i + k) % len(SIZES)] for k in range(n)]


QWEN2_BOX = (200.0, 300.0, 600.0, 800.0)  # in [0, 1000) of the picture it is on


def mgrounding_common_object(root: Path, n: int) -> Path:
    """``MGrounding-630k/Common_Object/common_train_70k.json`` with ``n`` items under ``root``."""
    items = []
    for i in range(n):
        sizes = item_sizes(i)
        target = i % len(sizes)
        rel = [f"./MGrounding-630k/Common_Object/COCO/{i:04d}_{k}.jpg" for k in range(len(sizes))]
        for k, (p, size) in enumerate(zip(rel, sizes)):
            picture(root / p, size, convert(QWEN2_BOX, Space.QWEN2, Space.PIXELS, size), i + k)
        items.append({
            "id": f"co_{i}", "images": rel, "type": "common_train",
            "conversations": [
                {"from": "human", "value": "<image>\n" * len(sizes)
                 + f"These images share one object in common. Locate it in the {target + 1}th image."},
                {"from": "gpt", "value": "<|box_start|>({:.0f},{:.0f}),({:.0f},{:.0f})<|box_end|>".format(*QWEN2_BOX)},
            ],
        })
    path = root / "MGrounding-630k" / "Common_Object" / "common_train_70k.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def prepare_recipe(root: Path, data: Path, coldstart: int, rl: int) -> Path:
    """A ``migrl prepare`` recipe over the MGrounding file (as recipes/paper/prepare.yaml, one source)."""
    import yaml

    recipe = {
        "seed": 0, "root": str(data), "check_images": True,
        "sources": {"mg_common_object": {"kind": "mgrounding", "path": "MGrounding-630k/Common_Object/common_train_70k.json",
                                         "image_root": ".", "tasks": ["common_object"]}},
        "coldstart": {"mg_common_object": coldstart},
        "rl_pool": {"mg_common_object": rl},
    }
    path = root / "prepare.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def records_file(root: Path, n: int, split: str = "test") -> Path:
    """migrl records (common_object, qwen2 ground truth) over camera-size pictures."""
    rows = []
    for i in range(n):
        sizes = item_sizes(i)
        target = i % len(sizes)
        images = []
        for k, size in enumerate(sizes):
            p = root / "images" / f"{split}_{i:04d}_{k}.jpg"
            picture(p, size, convert(QWEN2_BOX, Space.QWEN2, Space.PIXELS, size), i + k)
            images.append(str(p))
        rows.append({"id": f"{split}-{i}", "task": "common_object", "images": images, "split": split, "domain": "id",
                     "question": f"These images share one object in common. Locate it in image {target + 1}.",
                     "boxes": [{"bbox": list(QWEN2_BOX), "space": "qwen2", "image_index": target}]})
    path = root / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
