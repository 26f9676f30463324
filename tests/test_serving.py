"""Served models: vLLM flags, the start-up image-token check, several servers, eval/reject through them.
Against real local HTTP servers (tests/fake_openai_server.py) that count prompt tokens with a processor
resizing images their own way, as `vllm serve` does with its --mm-processor-kwargs."""

from __future__ import annotations

import json
import logging

import pytest

from fake_openai_server import FakeOpenAIServer, processor_prompt_tokens
from migrl.cli import main
from migrl.engines.base import Request, SamplingParams
from migrl.engines.openai_compat import OpenAICompatEngine, OpenAIConfig
from migrl.engines.remote import RemoteConfig
from migrl.engines.serving import (PROBE_SIZES, ImageTokenMismatch, check_image_tokens, local_prompt_tokens,
                                   probe_request, vllm_serve_command, vllm_serve_flags)
from migrl.images import TINY_SIZING, ImageSizing
from migrl.jsonl import read_jsonl
from migrl.models.loading import load_processor
from migrl.stages.evaluate import EvalConfig, evaluate
from migrl.stages.reject import RejectConfig, reject

OTHER = ImageSizing(min_pixels=3136, max_pixels=28 * 28 * 64)  # a server left at another max_pixels


@pytest.fixture(scope="module")
def processors(tiny_base):
    """The model's processor (training's setting) and one resizing like a misconfigured server."""
    return load_processor(tiny_base), load_processor(tiny_base, OTHER)


def engine_for(*servers: FakeOpenAIServer, **config) -> OpenAICompatEngine:
    return OpenAICompatEngine(OpenAIConfig(base_url=[s.base_url for s in servers], model="tiny", **config))


def test_serve_flags_carry_the_image_setting():
    sizing = ImageSizing(min_pixels=200704, max_pixels=1003520)
    assert vllm_serve_flags(sizing, 5) == ["--mm-processor-kwargs", '{"min_pixels":200704,"max_pixels":1003520}',
                                           "--limit-mm-per-prompt", '{"image":5,"video":0}']
    assert vllm_serve_command("runs/paper/sft", sizing, 5) == (
        "vllm serve runs/paper/sft --mm-processor-kwargs '{\"min_pixels\":200704,\"max_pixels\":1003520}' "
        "--limit-mm-per-prompt '{\"image\":5,\"video\":0}'"
    )


def test_serve_flags_command_reads_the_model_folder(tiny_base, capsys):
    assert main(["serve-flags", "--model", str(tiny_base), "--max-images", "4"]) == 0
    assert capsys.readouterr().out.strip() == vllm_serve_command(str(tiny_base), TINY_SIZING, 4)


def test_probe_with_the_processor_matches_a_server_resizing_as_training(processors):
    mine, _ = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine)) as server:
        (result,) = check_image_tokens(engine_for(server), TINY_SIZING, mine)
    assert result.exact and result.matches and result.reported == local_prompt_tokens(mine, probe_request(PROBE_SIZES))
    (call,) = server.calls
    assert [p["type"] for p in call.body["messages"][0]["content"]] == ["image_url", "image_url", "text"]  # multi-image
    assert call.body["max_tokens"] == 1


def test_a_server_resizing_differently_stops_the_run_naming_both_counts_and_the_flags(processors, caplog):
    mine, other = processors
    expected = local_prompt_tokens(mine, probe_request(PROBE_SIZES))
    served = local_prompt_tokens(other, probe_request(PROBE_SIZES))
    assert served != expected
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine)) as good, \
            FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(other)) as bad:
        with pytest.raises(ImageTokenMismatch) as err:
            check_image_tokens(engine_for(good, bad), TINY_SIZING, mine, model_name="runs/sft", max_images=3)
        message = str(err.value)
        assert f"{bad.base_url}: " in message and f"{good.base_url}: " not in message  # only the bad server
        assert f"is {expected} tokens here but the server counted {served}" in message
        assert vllm_serve_command("runs/sft", TINY_SIZING, 3) in message
        with caplog.at_level(logging.WARNING):
            results = check_image_tokens(engine_for(good, bad), TINY_SIZING, mine, strict=False)
    assert [r.matches for r in results] == [True, False]
    assert f"but the server counted {served}" in caplog.text


def test_without_the_processor_two_probes_compare_the_image_tokens_alone():
    with FakeOpenAIServer(sizing=TINY_SIZING) as same, FakeOpenAIServer(sizing=OTHER) as other:
        (ok,) = check_image_tokens(engine_for(same), TINY_SIZING)
        assert not ok.exact and ok.reported == ok.expected == TINY_SIZING.image_tokens(*PROBE_SIZES[1]) - TINY_SIZING.image_tokens(*PROBE_SIZES[0])
        with pytest.raises(ImageTokenMismatch, match=r"exceed a 24x20 one's by 6 here but by \d+ on the server"):
            check_image_tokens(engine_for(other), TINY_SIZING)


def test_several_servers_share_the_items_each_asked_once():
    requests = [Request([], [{"role": "user", "content": f"q{i}"}]) for i in range(24)]
    with FakeOpenAIServer(latency=0.05) as a, FakeOpenAIServer(latency=0.05) as b:
        results = engine_for(a, b, concurrency=2).generate(requests, SamplingParams())
    assert results == [[f"answer 0 to: q{i}"] for i in range(24)]
    asked = [c.body["messages"][-1]["content"] for c in a.calls + b.calls]
    assert sorted(asked) == sorted(f"q{i}" for i in range(24))  # each once, over both
    assert len(a.calls) >= 6 and len(b.calls) >= 6 and a.max_in_flight <= 2 and b.max_in_flight <= 2


def test_eval_and_reject_through_two_servers(world_test, tiny_base, processors, tmp_path):
    mine, other = processors
    count = processor_prompt_tokens(mine)
    with FakeOpenAIServer(prompt_tokens=count) as a, FakeOpenAIServer(prompt_tokens=count) as b:
        remote = RemoteConfig((a.base_url, b.base_url), "tiny", concurrency=2)
        scores = evaluate(EvalConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "eval"), remote=remote), processor=mine)
        stats = reject(RejectConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "reject"), k=3, remote=remote), processor=mine)
    rows = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    n = len(read_jsonl(world_test))
    assert len(rows) == len({r["id"] for r in rows}) == n and all(r["text"].startswith("answer 0 to: ") for r in rows)
    assert sum(total for _, total in scores["counts"].values()) == n and not scores["record_errors"]
    samples = read_jsonl(tmp_path / "reject" / "samples.jsonl")
    assert len(samples) == n and all(len(r["samples"]) == 3 for r in samples) and stats["asked"] == n
    for server in (a, b):  # each was probed, then answered a share
        assert server.calls[0].body["max_tokens"] == 1 and len(server.calls) > 5


def test_eval_refuses_a_misconfigured_server_before_asking_anything(world_test, tiny_base, processors, tmp_path):
    mine, other = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(other)) as server:
        remote = RemoteConfig((server.base_url,), "tiny")
        with pytest.raises(ImageTokenMismatch, match="--mm-processor-kwargs"):
            evaluate(EvalConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "eval"), remote=remote), processor=mine)
    assert len(server.calls) == 1  # the probe only
    assert not (tmp_path / "eval" / "predictions.jsonl").exists()


def test_eval_command_with_openai_engine(world_test, tiny_base, processors, tmp_path, capsys):
    mine, _ = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine)) as server:
        code = main(["eval", "--model", str(tiny_base), "--data", str(world_test), "--out", str(tmp_path / "e"),
                     "--engine", "openai", "--base-url", server.base_url, "--served-model", "tiny", "--shard", "1/2"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["shard"] == "1/2"
    assert {c.body["model"] for c in server.calls} == {"tiny"}
    assert len(read_jsonl(tmp_path / "e" / "predictions.shard-1-of-2.jsonl")) == len(read_jsonl(world_test)[1::2])


def test_paper_grpo_recipe_documents_vllm_rollouts_switched_off():
    from pathlib import Path

    from trl import TrlParser

    from migrl.recipe import cpu_overrides
    from migrl.stages.grpo import GRPOStageConfig

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "paper" / "grpo.yaml"
    (cfg,) = TrlParser(dataclass_types=[GRPOStageConfig]).parse_args_and_config(args=cpu_overrides(["--config", str(recipe)]))
    assert cfg.use_vllm is False and cfg.vllm_mode == "colocate"  # runs without vLLM as shipped
    text = recipe.read_text()
    assert "vllm_mode: colocate" in text and "server" in text and "migrl serve-flags" in text


def vllm_cfg(mode: str, base_url: str | None = None, **kw):
    from types import SimpleNamespace

    return SimpleNamespace(use_vllm=True, vllm_mode=mode, vllm_server_base_url=base_url, vllm_server_host="0.0.0.0",
                           vllm_server_port=8000, **kw)


def test_grpo_vllm_server_mode_is_probed_with_the_served_name(tiny_base, processors):
    from migrl.engines.serving import check_vllm_rollouts

    mine, other = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine), served_model="runs/sft") as good, \
            FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(other)) as bad:
        check_vllm_rollouts(vllm_cfg("server", good.base_url.removesuffix("/v1")), tiny_base, mine)
        assert [c.body["model"] for c in good.calls] == ["runs/sft"]  # the name GET /v1/models gave
        with pytest.raises(ImageTokenMismatch, match="--mm-processor-kwargs"):
            check_vllm_rollouts(vllm_cfg("server", bad.base_url.removesuffix("/v1")), tiny_base, mine)
        check_vllm_rollouts(vllm_cfg("server", bad.base_url.removesuffix("/v1"), allow_image_token_mismatch=True), tiny_base, mine)


def test_grpo_vllm_colocate_needs_the_training_setting_in_the_folder(tiny_base, processors):
    from types import SimpleNamespace

    from migrl.engines.serving import check_vllm_rollouts

    mine, other = processors
    check_vllm_rollouts(vllm_cfg("colocate"), tiny_base, mine)  # the folder's own setting: vLLM reads the same
    with pytest.raises(ValueError, match=r"colocated vLLM builds its processor from .*max_pixels=12544.* training uses .*max_pixels=50176"):
        check_vllm_rollouts(vllm_cfg("colocate"), tiny_base, other)
    check_vllm_rollouts(SimpleNamespace(use_vllm=False), tiny_base, other)  # without vLLM: nothing to check


def test_items_a_server_never_answers_are_listed_counted_wrong_and_asked_again(world_test, tiny_base, processors, tmp_path):
    """eval and reject through a server that refuses one item: the run finishes, the item is in
    bad_records.jsonl (field "server", with the server's reason), eval counts it wrong (the denominator
    is every record), and a rerun against a healthy server asks for that item only."""
    from migrl.engines.openai_compat import image_data_url
    from migrl.images import load_image
    from migrl.records import read_records

    mine, _ = processors
    records = read_records(world_test)
    victim = records[3]
    url = image_data_url(load_image(world_test.parent / victim.images[0]))

    def refused(body):
        urls = [p["image_url"]["url"] for p in body["messages"][-1]["content"] if p.get("type") == "image_url"]
        return bool(urls) and urls[0] == url

    count = processor_prompt_tokens(mine)
    eval_cfg = EvalConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "eval"))
    reject_cfg = RejectConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "reject"), k=2)
    with FakeOpenAIServer(prompt_tokens=count, always_fail=refused, always_fail_status=400) as server:
        remote = RemoteConfig((server.base_url,), "tiny", concurrency=4)
        eval_cfg.remote = reject_cfg.remote = remote
        scores = evaluate(eval_cfg, processor=mine)
        stats = reject(reject_cfg, processor=mine)
    for out in (tmp_path / "eval", tmp_path / "reject"):
        (row,) = read_jsonl(out / "bad_records.jsonl")
        assert row["record"] == victim.id and row["field"] == "server" and "HTTP 400" in row["reason"]
    assert scores["bad_records"]["count"] == 1
    assert sum(total for _, total in scores["counts"].values()) == len(records)  # still in the denominator
    assert victim.id not in {r["id"] for r in read_jsonl(tmp_path / "eval" / "predictions.jsonl")}
    assert stats["asked"] == len(records) - 1

    with FakeOpenAIServer(prompt_tokens=count) as server:
        eval_cfg.remote = reject_cfg.remote = RemoteConfig((server.base_url,), "tiny")
        again = evaluate(eval_cfg, processor=mine)
        assert len(server.calls) == 2  # the start-up probe, then the one missing item
        stats = reject(reject_cfg, processor=mine)
        assert len(server.calls) == 4  # reject too: its probe, then that item only (k samples in one request)
    assert again["bad_records"]["count"] == 0 and stats["bad_records"]["count"] == 0
    for out, name in ((tmp_path / "eval", "predictions.jsonl"), (tmp_path / "reject", "samples.jsonl")):
        assert read_jsonl(out / "bad_records.jsonl") == [] and len(read_jsonl(out / name)) == len(records)


def test_the_merging_rank_lists_what_other_ranks_skipped():
    """Under a launcher, rank 0 gets the other ranks' skips as (id, field, reason): an image that did not
    decode joins bad before scoring (as rank 0's own), an unanswered item after, once."""
    from migrl.bad_records import BadRecords
    from migrl.records import record_from_dict
    from migrl.generation import Generation

    bad = BadRecords("data.jsonl")
    generation = Generation(None, SamplingParams(), None, None, bad, unanswered={"a": "HTTP 500"})
    generation.take_reports([("b", "images", "cannot be decoded"), ("c", "server", "time-out")])
    assert [(b.record, b.field) for b in bad.items] == [("b", "images")]
    records = [record_from_dict({"id": i, "task": "region", "images": ["x.png"], "question": "q",
                                "boxes": [{"image_index": 0, "bbox": [0, 0, 5, 5], "space": "pixels"}]}) for i in "abcc"]
    generation.list_unanswered(records)
    assert [(b.record, b.field) for b in bad.items] == [("b", "images"), ("a", "server"), ("c", "server")]


def sampling_sent(call) -> dict:
    keys = ("max_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p", "repetition_penalty")
    return {k: call.body.get(k, "missing") for k in keys}


def migrls(max_tokens: int, temperature: float) -> dict:
    """What every request must say: vLLM takes each field it leaves out from the served folder's
    generation_config.json (Qwen2.5-VL-7B-Instruct's: repetition_penalty 1.05, temperature 1e-6)."""
    return {"max_tokens": max_tokens, "temperature": temperature, "top_p": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}


def test_eval_reject_and_synthesize_send_every_sampling_field(world_test, tiny_base, processors, tmp_path):
    mine, _ = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine)) as server:
        remote = RemoteConfig((server.base_url,), "tiny")
        evaluate(EvalConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "eval"), max_new_tokens=50,
                            remote=remote), processor=mine)
        after_eval = len(server.calls)
        reject(RejectConfig(model=str(tiny_base), data=str(world_test), out=str(tmp_path / "reject"), k=3, temperature=0.8,
                            max_new_tokens=60, remote=remote), processor=mine)
        after_reject = len(server.calls)
        pixels = [str(TINY_SIZING.min_pixels), str(TINY_SIZING.max_pixels)]
        assert main(["synthesize", "--teacher", "openai", "--base-url", server.base_url, "--teacher-model", "tiny",
                     "--teacher-processor", str(tiny_base), "--teacher-min-pixels", pixels[0], "--teacher-max-pixels", pixels[1],
                     "--data", str(world_test), "--out", str(tmp_path / "syn"), "--k", "2", "--temperature", "0.6",
                     "--max-new-tokens", "40", "--model", "tiny-base"]) == 0
    runs = {"eval": (server.calls[:after_eval], migrls(50, 0.0), None),
            "reject": (server.calls[after_eval:after_reject], migrls(60, 0.8), 3),
            "synthesize": (server.calls[after_reject:], migrls(40, 0.6), 2)}
    for stage, ((probe, *asked), expected, n) in runs.items():
        assert sampling_sent(probe) == migrls(1, 0.0), stage  # the start-up image-token check
        assert len(asked) == len(read_jsonl(world_test)), stage
        assert all(sampling_sent(c) == expected and c.body.get("n") == n for c in asked), stage


def test_no_server_sampling_fields_leaves_vllms_fields_out_for_a_hosted_api(world_test, tiny_base, processors, tmp_path):
    mine, _ = processors
    with FakeOpenAIServer(prompt_tokens=processor_prompt_tokens(mine)) as server:
        assert main(["eval", "--model", str(tiny_base), "--data", str(world_test), "--out", str(tmp_path / "eval"),
                     "--engine", "openai", "--base-url", server.base_url, "--served-model", "tiny",
                     "--max-new-tokens", "20", "--no-server-sampling-fields"]) == 0
        assert main(["synthesize", "--teacher", "openai", "--base-url", server.base_url, "--teacher-model", "tiny",
                     "--allow-image-token-mismatch", "--data", str(world_test), "--out", str(tmp_path / "syn"), "--k", "1",
                     "--model", "tiny-base", "--no-server-sampling-fields"]) == 0
    assert server.calls
    for call in server.calls:
        sent = sampling_sent(call)
        assert sent["top_k"] == sent["min_p"] == sent["repetition_penalty"] == "missing"
        assert sent["temperature"] != "missing" and sent["top_p"] == 1.0  # the standard fields still go


def test_serve_flags_write_a_qwen3_vl_budget_as_its_processor_keeps_it(released_qwen3_vl_folder, released_folder, capsys):
    """Qwen3-VL's processor keeps its budget as a size dict: the flags say it so; Qwen2.5-VL's stay min/max_pixels."""
    import json
    import shlex

    from migrl.cli import main

    def kwargs(folder) -> dict:
        assert main(["serve-flags", "--model", str(folder)]) == 0
        line = shlex.split(capsys.readouterr().out)
        return json.loads(line[line.index("--mm-processor-kwargs") + 1])

    assert kwargs(released_qwen3_vl_folder) == {"size": {"longest_edge": 16777216, "shortest_edge": 65536}}
    assert kwargs(released_folder) == {"min_pixels": 3136, "max_pixels": 12845056}
