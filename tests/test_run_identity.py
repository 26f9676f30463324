"""A resumed eval or reject must be the same run: same model, same generation settings."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from asks import counting_asks
from migrl.jsonl import read_jsonl
from migrl.run_identity import StaleRunError, file_fingerprint, model_fingerprint
from migrl.stages.evaluate import EvalConfig, evaluate
from migrl.stages.reject import RejectConfig, reject


def test_fingerprint_follows_content_not_place(tmp_path, tiny_base):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_base, copy)  # new mtimes, same bytes
    assert model_fingerprint(copy) == model_fingerprint(tiny_base)
    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert model_fingerprint(copy) != model_fingerprint(tiny_base)


def test_large_files_are_sampled_and_still_see_a_local_change(tmp_path):
    big = tmp_path / "w.bin"
    data = bytearray(8 * 2**20)
    big.write_bytes(data)
    before = file_fingerprint(big)
    data[5 * 2**20 : 5 * 2**20 + 16384] = b"\x01" * 16384  # 0.2% of the file, in one place
    big.write_bytes(data)
    assert file_fingerprint(big) != before


def _other_model(tmp_path, tiny_base):
    other = tmp_path / "other"
    shutil.copytree(tiny_base, other)
    weights = load_file(other / "model.safetensors")
    weights = {k: v * 1.01 for k, v in weights.items()}
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    return other


def test_eval_resumes_its_own_run_and_refuses_another_models(world_test, tiny_base, tmp_path):
    out = tmp_path / "ev"
    cfg = EvalConfig(data=str(world_test), out=str(out), limit_per_task=1, max_new_tokens=16)
    with counting_asks() as asked:
        evaluate(cfg)
    assert len(asked) == len(set(asked)) == 10
    with counting_asks() as asked:
        evaluate(EvalConfig(**{**cfg.__dict__, "model": str(tiny_base)}))  # the same model, named: resumes
    assert asked == [] and len(read_jsonl(out / "predictions.jsonl")) == 10
    with counting_asks() as asked:
        with pytest.raises(StaleRunError, match="model"):
            evaluate(EvalConfig(**{**cfg.__dict__, "model": str(_other_model(tmp_path, tiny_base))}))
        with pytest.raises(StaleRunError, match="max_new_tokens"):
            evaluate(EvalConfig(**{**cfg.__dict__, "max_new_tokens": 32}))
    assert asked == []  # the refused runs asked nothing...
    assert len(read_jsonl(out / "predictions.jsonl")) == 10  # ...and wrote nothing


def test_reject_refuses_a_log_sampled_with_other_settings(world_test, tmp_path):
    cfg = RejectConfig(data=str(world_test), out=str(tmp_path / "rj"), k=2, max_new_tokens=8, temperature=1.0)
    reject(cfg)
    with counting_asks() as asked:
        reject(cfg)  # the same settings: resumes, nothing left to sample
        with pytest.raises(StaleRunError, match="temperature"):
            reject(RejectConfig(**{**cfg.__dict__, "temperature": 0.5}))
    assert asked == []
