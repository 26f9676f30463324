"""prepare: a tiny recipe over the three source kinds, real PNGs, a missing image, recipe mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from migrl.records import load_records
from migrl.sources.prepare import RecipeError, prepare, read_recipe

REPO = Path(__file__).resolve().parent.parent


def _png(path: Path, size=(32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


def _mgrounding(data: Path) -> None:
    items = []
    for i in range(6):
        rel = [f"./MGrounding-630k/Common_Object/COCO/{i}_{k}.png" for k in range(2)]
        for k, p in enumerate(rel):
            if not (i == 5 and k == 1):  # item 5's second image is missing
                _png(data / p)
        items.append({
            "id": str(i), "images": rel, "type": "common_train",
            "conversations": [
                {"from": "human", "value": "<image>\n<image>\nThese images share one object in common. Locate it in the 2th image."},
                {"from": "gpt", "value": f"<|box_start|>({10 * i},0),({10 * i + 50},500)<|box_end|>"},
            ],
        })
    path = data / "MGrounding-630k" / "Common_Object" / "common_train_70k.json"
    path.write_text(json.dumps(items), encoding="utf-8")


def _refcoco(data: Path) -> None:
    images = [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 32, "height": 24} for i in range(3)]
    for im in images:
        _png(data / "coco" / "train2014" / im["file_name"])
    anns = [{"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0} for i in range(3)]
    refs = [{"ref_id": i, "ann_id": 100 + i, "image_id": i, "category_id": 1, "split": "train",
             "sentences": [{"sent_id": i, "sent": f"thing {i}", "tokens": ["thing"]}]} for i in range(3)]
    (data / "refcoco").mkdir()
    (data / "refcoco" / "refs(unc).json").write_text(json.dumps(refs), encoding="utf-8")
    instances = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (data / "refcoco" / "instances.json").write_text(json.dumps(instances), encoding="utf-8")


def _detection(data: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 24} for i in range(3)]
    for im in images:
        _png(data / "odinw" / "train" / im["file_name"])
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": 0} for i in range(3)]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]}
    (data / "odinw" / "train" / "annotations_without_background.json").write_text(json.dumps(coco), encoding="utf-8")


TINY = {
    "seed": 3,
    "sources": {
        "mg": {
            "kind": "mgrounding",
            "path": "MGrounding-630k/Common_Object/common_train_70k.json",
            "image_root": ".",
            "tasks": ["common_object"],
        },
        "ref": {
            "kind": "refcoco",
            "refs": "refcoco/refs(unc).json",
            "instances": "refcoco/instances.json",
            "image_root": "coco/train2014",
        },
        "det": {
            "kind": "detection",
            "path": "odinw/train/annotations_without_background.json",
            "image_root": "odinw/train",
            "source": "odinw-tiny",
        },
    },
    "coldstart": {"mg": 3, "ref": 1, "det": 1},
    "rl_pool": {"mg": "all", "ref": 5, "det": "all"},
}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    _mgrounding(d)
    _refcoco(d)
    _detection(d)
    return d


def _recipe(tmp_path: Path, data: Path, **changes) -> Path:
    path = tmp_path / "prepare.yaml"
    path.write_text(yaml.safe_dump({**TINY, "root": str(data), **changes}), encoding="utf-8")
    return path


def test_pools_are_sampled_disjoint_and_reported(tmp_path, data):
    stats = prepare(_recipe(tmp_path, data), tmp_path / "out")
    cold = load_records(tmp_path / "out" / "coldstart.jsonl")
    rl = load_records(tmp_path / "out" / "rl_pool.jsonl")
    assert cold.errors == [] and rl.errors == []
    cold_ids, rl_ids = {r.id for r in cold.records}, {r.id for r in rl.records}
    assert len(cold_ids) == 5 and len(rl_ids) == 2 + 2 + 2 and not cold_ids & rl_ids
    assert stats["pools"]["coldstart"]["sources"]["mg"] == {"requested": 3, "available": 6, "written": 3}
    rl_mg = stats["pools"]["rl_pool"]["sources"]["mg"]
    assert rl_mg["requested"] == "all" and rl_mg["written"] == 2
    assert rl_mg["available"] in (2, 3)  # 3 left after the cold start, less the bad one if the cold start met it
    assert stats["pools"]["rl_pool"]["sources"]["ref"] == {"requested": 5, "available": 2, "written": 2}
    assert stats["pools"]["rl_pool"]["short"] == ["ref"]
    mg = stats["sources"]["mg"]
    assert mg["records"] == 6 and mg["errors_total"] == 1
    assert "source mg: record mgrounding-common_train_70k-000005-t0: field 'images[1]'" in mg["errors"][0]
    assert "5_1.png" in mg["errors"][0] and "does not exist" in mg["errors"][0]
    on_disk = json.loads((tmp_path / "out" / "prepare_stats.json").read_text(encoding="utf-8"))
    assert on_disk == stats
    # every image path is absolute: the pools live in another folder than the data
    assert all(Path(p).is_absolute() and Path(p).exists() for r in cold.records + rl.records for p in r.images)


def test_same_seed_same_files_other_seed_other_draw(tmp_path, data):
    recipe = _recipe(tmp_path, data)
    prepare(recipe, tmp_path / "a")
    prepare(recipe, tmp_path / "b")
    for name in ("coldstart.jsonl", "rl_pool.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    draws = set()
    for seed in range(6):
        prepare(recipe, tmp_path / f"s{seed}", seed=seed)
        draws.add(frozenset(r.id for r in load_records(tmp_path / f"s{seed}" / "coldstart.jsonl").records))
    assert len(draws) > 1


def test_without_image_check_the_missing_image_is_not_an_error(tmp_path, data):
    stats = prepare(_recipe(tmp_path, data, check_images=False), tmp_path / "out")
    assert stats["sources"]["mg"]["errors_total"] == 0
    assert stats["pools"]["coldstart"]["sources"]["mg"]["written"] + stats["pools"]["rl_pool"]["sources"]["mg"]["written"] == 6


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"coldstart": {"nope": 1}}, "coldstart.nope: no such source"),
        ({"rl_pool": {"mg": -1}}, "rl_pool.mg: expected a count >= 0 or 'all'"),
        ({"sources": {**TINY["sources"], "mg": {**TINY["sources"]["mg"], "pth": "x"}}}, "unknown key"),
        ({"sources": {**TINY["sources"], "mg": {"kind": "laion"}}}, "kind 'laion' is not one of"),
        ({"sources": {**TINY["sources"], "mg": {**TINY["sources"]["mg"], "tasks": "common_object"}}}, "expected a list of names"),
        ({"colstart": {}}, "unknown key"),
    ],
)
def test_recipe_mistakes_raise_before_anything_is_written(tmp_path, data, changes, message):
    with pytest.raises(RecipeError, match=message):
        prepare(_recipe(tmp_path, data, **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_paper_recipe_is_valid_and_matches_table_1():
    recipe, counts = read_recipe(REPO / "recipes" / "paper" / "prepare.yaml")
    cold = counts["coldstart"]
    assert cold["mg_common_object"] == 22000 and cold["mg_refer_grounding"] == 24000
    assert cold["mg_region"] == 5000 and cold["mg_diff"] == 3000
    assert cold["refcoco"] + cold["refcoco_plus"] + cold["refcocog"] == 1000
    assert cold["odinw"] + cold["v3det"] == 1000
    assert sum(cold.values()) == 56000
    assert all(counts["rl_pool"][s] is None for s in ("mg_common_object", "mg_refer_grounding", "mg_region", "mg_diff"))
