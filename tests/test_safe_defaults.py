"""Safe defaults: weights from safetensors only, no remote code unless asked, API keys never written
anywhere, image paths kept inside the data root, decompression bombs refused twice over."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fake_openai_server import FakeOpenAIServer, last_text
from migrl.data.world import ID_TASKS, write_split
from migrl.images import MAX_DECODED_PIXELS, ImageError, image_size, load_image, resolve_image_path
from migrl.models.loading import TINY_BASE, load_model, load_processor
from migrl.records import KNOWN_TASKS, RecordError, record_from_dict, record_image_sizes

PLANTED_KEY = "sk-migrl-planted-key-5f1e9c"


class _Marker:
    """Unpickling this writes a file: what a hostile pytorch_model.bin would do, harmlessly."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "code ran"))


def _model_folder_without_weights(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(TINY_BASE, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    return folder


def test_a_folder_with_only_pickled_weights_is_refused_clearly(tmp_path):
    folder = _model_folder_without_weights(tmp_path)
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(FileNotFoundError) as err:
        load_model(folder)
    assert "pytorch_model.bin" in str(err.value) and "safetensors only" in str(err.value)
    assert "can run code" in str(err.value)
    assert not marker.exists()


def test_processor_remote_code_does_not_run_by_default(tmp_path):
    """A model folder whose processor config points at custom code: loading it must not import that code."""
    folder = _model_folder_without_weights(tmp_path)
    marker = tmp_path / "imported"
    (folder / "evil_processing.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\n"
        "from transformers import Qwen2_5_VLProcessor\nclass EvilProcessor(Qwen2_5_VLProcessor):\n    pass\n"
    )
    config = json.loads((folder / "processor_config.json").read_text())
    config["auto_map"] = {"AutoProcessor": "evil_processing.EvilProcessor"}
    (folder / "processor_config.json").write_text(json.dumps(config))
    processor = load_processor(folder)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor" and not marker.exists()


def test_api_key_reaches_no_file_of_a_synthesize_run(tmp_path):
    """A real `migrl synthesize` subprocess with the key in its environment, against a server that
    echoes the key back in its error messages and answers one item only with errors."""
    pool = write_split(tmp_path / "world", "train", 2, seed=9, tasks=ID_TASKS)
    out = tmp_path / "out"
    failing = json.loads(pool.read_text().splitlines()[0])["question"]
    is_failing = lambda body: failing in last_text(body.get("messages", []))  # noqa: E731
    echo = lambda call: f"(you sent {call.headers.get('authorization', '')})"  # noqa: E731
    env = {**os.environ, "MIGRL_TEST_TEACHER_KEY": PLANTED_KEY, "OPENAI_LOG": "debug"}
    with FakeOpenAIServer(always_fail=is_failing, flaky_every=3, error_detail=echo) as server:
        run = subprocess.run(
            [sys.executable, "-m", "migrl.cli", "synthesize", "--data", str(pool), "--out", str(out), "--teacher", "openai",
             "--base-url", server.base_url, "--teacher-model", "t", "--api-key-env", "MIGRL_TEST_TEACHER_KEY", "--k", "2",
             "--allow-image-token-mismatch", "--model", "tiny-base"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        sent = [c.headers.get("authorization") for c in server.calls]
    assert run.returncode == 3, run.stderr[-2000:]  # the failing item is reported as skipped
    assert sent and all(h == f"Bearer {PLANTED_KEY}" for h in sent)  # the key did reach the server
    rows = [json.loads(line) for line in (out / "bad_records.jsonl").read_text().splitlines()]
    assert any("<api key>" in r["reason"] for r in rows)  # the echoed key was redacted, not dropped
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"answers.jsonl", "sft.jsonl", "stats.json", "bad_records.jsonl"}
    for path in written:
        assert PLANTED_KEY not in path.read_text(errors="replace"), path
    assert PLANTED_KEY not in run.stdout and PLANTED_KEY not in run.stderr


def test_api_key_reaches_no_checkpoint(tmp_path, monkeypatch):
    """Training never reads the key; with one in the environment, nothing it saves holds it."""
    from migrl.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    pool = write_split(tmp_path / "world", "train", 1, seed=9, tasks=ID_TASKS)
    out = tmp_path / "sft"
    code = main(["sft", "--data", str(pool), "--output_dir", str(out), "--cot", "false", "--max_steps", "1",
                 "--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "1", "--report_to", "none"])
    assert code == 0 and (out / "checkpoint-1" / "training_args.bin").exists()
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert PLANTED_KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("path", ["../outside.png", "../../etc/passwd", "images/../../x.png", "a/b/../../../x.png"])
def test_relative_paths_may_not_leave_the_data_root(tmp_path, path):
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ImageError, match="escapes the data root"):
        resolve_image_path(path, root)


def test_paths_inside_the_root_and_symlinked_folders_are_fine(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    elsewhere = tmp_path / "disk"
    elsewhere.mkdir()
    (root / "linked").symlink_to(elsewhere)  # the owner's choice of layout, not the record's
    assert resolve_image_path("images/../images/a.png", root) == root / "images" / "a.png"
    assert resolve_image_path("linked/a.png", root) == root / "linked" / "a.png"
    assert resolve_image_path(str(elsewhere / "b.png"), root) == elsewhere / "b.png"  # absolute: as written


def _bomb(path: Path, side: int = 9000) -> Path:
    Image.new("1", (side, side)).save(path, optimize=True)  # ~10 KB on disk, 81M pixels decoded
    return path


def test_pillow_itself_refuses_bombs_at_migrls_limit(tmp_path):
    """The cap is set deliberately: Pillow's default (~89M pixels, warning only up to ~179M) would
    open this 81M-pixel file without a word, e.g. inside the datasets Image feature."""
    bomb = _bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)


def test_image_size_refuses_a_bomb_from_its_header_even_without_pillows_cap(tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's guard off: migrl's own check remains
    with pytest.raises(ImageError, match=f"over the {MAX_DECODED_PIXELS} pixel limit"):
        image_size(bomb)
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(bomb)


def test_broken_images_are_named(tmp_path):
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "whole.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:2000])
    (tmp_path / "corrupt.png").write_bytes(b"GIF89a nonsense")
    with pytest.raises(ImageError, match="truncated.png.*cannot be decoded"):
        load_image(tmp_path / "truncated.png")
    with pytest.raises(ImageError, match="corrupt.png.*cannot be read"):
        image_size(tmp_path / "corrupt.png")
    with pytest.raises(ImageError, match="missing.png.*does not exist"):
        load_image(tmp_path / "missing.png")


def _record(bbox, space="pixels"):
    return record_from_dict({"id": "r", "task": "diff", "images": ["a.png"], "question": "q",
                             "boxes": [{"image_index": 0, "bbox": bbox, "space": space}]})


@pytest.mark.parametrize("bbox, space, ok", [
    ([0, 0, 100, 80], "pixels", True),
    ([0.5, 0, 100.9, 80.5], "pixels", True),  # rounding overhang
    ([10, 10, 130, 40], "pixels", False),
    ([90, 70, 400, 300], "pixels", False),
    ([0, 0, 1000, 1000], "qwen2", True),
    ([0, 0, 1200, 500], "qwen2", False),
])
def test_a_box_must_lie_on_its_image(tmp_path, bbox, space, ok):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    record = _record(bbox, space)
    if ok:
        assert record_image_sizes(record, tmp_path) == [(100, 80)]
    else:
        with pytest.raises(RecordError, match="leaves image 1, which is 100x80") as err:
            record_image_sizes(record, tmp_path)
        assert err.value.field_name == "boxes[0].bbox"


def test_every_task_a_migrl_source_writes_is_known():
    from migrl.data.world import TASKS, TRAINING_SOURCES
    from migrl.sources.mgrounding import SUBSET_TASKS, TYPE_TASKS

    assert set(TASKS) | set(TRAINING_SOURCES) | set(SUBSET_TASKS.values()) | set(TYPE_TASKS.values()) | {"rec", "detection"} <= KNOWN_TASKS
