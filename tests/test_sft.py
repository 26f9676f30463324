import pytest
import torch
from safetensors.torch import load_file
from transformers import Qwen2_5_VLForConditionalGeneration

from migrl.stages.sft import SFTStageConfig, train_sft


def _cfg(data, out, **kw):
    return SFTStageConfig(
        output_dir=str(out), data=str(data), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, **kw,
    )


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_lora_sft_freezes_vision_and_merges_into_a_plain_folder(sft_data, tiny_base, tmp_path):
    summary = train_sft(_cfg(sft_data, tmp_path / "out"))
    assert summary["steps"] == 3 and summary["records"] > 0
    before, after = _weights(tiny_base), _weights(tmp_path / "out")
    vision = [k for k in before if k.startswith("visual.")]  # saved in the original Qwen2.5-VL layout
    assert vision and all(torch.equal(before[k].float(), after[k].float()) for k in vision)  # tower + merger frozen
    lm = [k for k in before if k.startswith("model.layers.") and k.endswith("q_proj.weight")]
    assert any(not torch.equal(before[k].float(), after[k].float()) for k in lm)  # LoRA merged into the LM
    assert not any("lora" in k for k in after)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "out")  # plain from_pretrained
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"


@pytest.mark.slow
def test_full_finetune_answer_only_baseline(sft_data, tiny_base, tmp_path):
    summary = train_sft(_cfg(sft_data, tmp_path / "out", cot=False, use_lora=False))
    assert summary["steps"] == 3
    before, after = _weights(tiny_base), _weights(tmp_path / "out")
    vision = [k for k in before if k.startswith("visual.")]
    assert any(k.startswith("visual.merger.") for k in vision) and any(k.startswith("visual.blocks.") for k in vision)
    assert all(torch.equal(before[k].float(), after[k].float()) for k in vision)


def test_too_long_records_are_skipped_with_a_reason(sft_data, tiny_base, tmp_path):
    from migrl.models.loading import load_processor
    from migrl.records import data_root, read_records
    from migrl.stages.sft import fit_records

    records = read_records(sft_data)
    kept, errors = fit_records(records, data_root(sft_data), load_processor(tiny_base), 60, True, {})
    assert len(kept) + len(errors) == len(records)
    assert errors and all("over max_length 60" in e for e in errors)
    kept_ids = {r.id for r in kept}
    assert [e.split(":", 1)[0] for e in errors] == [f"record {r.id}" for r in records if r.id not in kept_ids]  # each names its record
