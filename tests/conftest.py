"""Shared fixtures: the shipped tiny base is the model of every test; slow tests run last."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
MIG_DATA = Path(os.environ.get("MIGRL_MIG_DATA", REPO.parent / "shared" / "data" / "mig-bench" / "MIG_data.json"))


def pytest_collection_modifyitems(config, items):
    # Fast tests first, slow end-to-end ones after (stable within each group).
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture(scope="session")
def tiny_base():
    from migrl.models.loading import TINY_BASE

    assert (TINY_BASE / "model.safetensors").exists(), "the shipped tiny base is missing"
    return TINY_BASE


@pytest.fixture(scope="session")
def base_model(tiny_base):
    import torch

    from migrl.models.loading import load_model, load_processor

    return load_model(tiny_base, dtype=torch.float32), load_processor(tiny_base)


@pytest.fixture(scope="session")
def world_test(tmp_path_factory):
    """A small test split of the world: 3 items per task."""
    from migrl.data.world import write_split

    out = tmp_path_factory.mktemp("world")
    return write_split(out, "test", 3, seed=7)


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory):
    """CoT SFT records: the scripted teacher's kept answers on a small in-domain pool."""
    from migrl.data.world import ID_TASKS, write_split
    from migrl.engines.scripted import ScriptedTeacher
    from migrl.images import TINY_SIZING
    from migrl.stages.synthesize import SynthesizeConfig, synthesize

    root = tmp_path_factory.mktemp("sftdata")
    pool = write_split(root / "world", "train", 4, seed=11, tasks=ID_TASKS)
    synthesize(SynthesizeConfig(data=str(pool), out=str(root / "syn")), ScriptedTeacher(seed=0), student_sizing=TINY_SIZING)
    return root / "syn" / "sft.jsonl"


# Built fixtures kept between test runs (git-ignored); each is rebuilt when its contents change.
FIXTURE_CACHE = REPO / ".cache" / "fixtures"


@pytest.fixture(scope="session")
def released_folder():
    """A folder shaped like the released Qwen2.5-VL-7B-Instruct (real tokenizer, template, configs; tiny weights)."""
    from migrl.models.released import cached_released_folder

    return cached_released_folder(FIXTURE_CACHE)


@pytest.fixture(scope="session")
def released_qwen3_vl_folder():
    """A folder shaped like the released Qwen3-VL-8B-Instruct (Qwen3 tokenizer, its template, size-dict budget,
    nested config with DeepStack; tiny weights)."""
    from migrl.models.released import cached_released_folder

    return cached_released_folder(FIXTURE_CACHE, family="qwen3_vl")


@pytest.fixture(scope="session")
def released_qwen3_5_folder():
    """A folder shaped like the released Qwen3.5-0.8B (Qwen3.5's own tokenizer, its non-thinking template,
    size-dict budget, Gated DeltaNet and attention layers 3:1, tied embeddings, an MTP head; tiny weights)."""
    from migrl.models.released import cached_released_folder

    return cached_released_folder(FIXTURE_CACHE, family="qwen3_5")
