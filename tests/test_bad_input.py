"""Bad input through every stage that reads records: each bad record gets one row in the stage's
``bad_records.jsonl`` (file, line, record id, field, reason), the good ones all go through, the exit
code says something was skipped (3), and ``--strict`` stops at the first bad record (4).

One records file holds 8 good world records and one of each kind of bad record; the stages are run
through ``migrl.cli.main`` with real files, the shipped tiny model and a local HTTP teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from fake_openai_server import FakeOpenAIServer, last_text
from migrl.bad_records import EXIT_SKIPPED, EXIT_STRICT, REPORT_NAME
from migrl.cli import main
from migrl.data.world import ID_TASKS, write_split
from migrl.jsonl import read_jsonl

# id -> the field its row must name. Grouped by what finds them: the schema when the file is read,
# the image headers (before any work), decoding, and the model's context.
LOAD_BAD = {None: "<line>", "bad-types": "images", "bad-task": "task", "bad-no-images": "images",
            "bad-degenerate": "boxes[0].bbox", "bad-inverted": "boxes[0].bbox"}
HEADER_BAD = {"bad-missing": "images[1]", "bad-corrupt": "images[0]", "bad-bomb": "images[0]",
              "bad-escape": "images[0]", "bad-box-outside": "boxes[0].bbox"}
DECODE_BAD = {"bad-truncated": "images"}
TOO_LONG = {"bad-too-many": "length"}  # too many image tokens for the context: a length problem
REASONS = {
    None: "not valid JSON", "bad-types": "expected list", "bad-task": "unknown task 'comon_object'",
    "bad-no-images": "no images", "bad-degenerate": "degenerate or inverted", "bad-inverted": "degenerate or inverted",
    "bad-missing": "does not exist", "bad-corrupt": "cannot be read", "bad-bomb": "decompression bomb",
    "bad-escape": "escapes the data root", "bad-box-outside": "leaves image", "bad-truncated": "cannot be decoded",
    "bad-too-many": "240 image",
}


def bomb_png(path: Path, side: int = 9000) -> None:
    """A ~10 KB PNG that decodes to 81M pixels: under Pillow's default limit (~89M), over migrl's."""
    Image.new("1", (side, side)).save(path, optimize=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "data"
    path = write_split(root, "train", 2, seed=4, tasks=ID_TASKS)
    good = read_jsonl(path)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    noisy = Image.effect_noise((112, 112), 64).convert("RGB")
    noisy.save(root / "whole.png")
    (root / "truncated.png").write_bytes((root / "whole.png").read_bytes()[:3000])
    bomb_png(root / "bomb.png")
    noisy.save(root.parent / "outside.png")  # a real file: refused for where it is, not for being absent

    base = good[0]
    first = base["images"][0]

    def variant(rid: str, **change) -> str:
        return json.dumps({**base, "id": rid, **change})

    def images(k: int, name: str) -> list[str]:  # the record's images with the k-th one replaced
        return [name if j == k else p for j, p in enumerate(base["images"])]

    box = lambda bbox: [{**base["boxes"][0], "bbox": bbox}]  # noqa: E731
    lines = [json.dumps(r) for r in good[:4]] + [
        '{"id": "bad-json", "task": "diff", "images": [',
        variant("bad-missing", images=images(1, "images/train/missing.png")),
        variant("bad-corrupt", images=images(0, "corrupt.png")),
        variant("bad-truncated", images=images(0, "truncated.png")),
        variant("bad-bomb", images=images(0, "bomb.png")),
        variant("bad-escape", images=images(0, "../outside.png")),
        variant("bad-box-outside", boxes=box([0, 0, 5000, 5000])),
        variant("bad-degenerate", boxes=box([10, 10, 10, 40])),
        variant("bad-inverted", boxes=box([40, 10, 20, 30])),
        variant("bad-types", images=first),
        variant("bad-task", task="comon_object"),
        variant("bad-no-images", images=[]),
        variant("bad-too-many", images=[first] * 240),  # 240 x 18 tokens > the tiny model's 4096
    ] + [json.dumps(r) for r in good[4:]]
    out = root / "mixed.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


GOOD_IDS = {f"{t}-train-{i:05d}" for t in ID_TASKS for i in range(2)}


def check_report(out: Path, expected: dict, data: Path) -> list[dict]:
    rows = read_jsonl(out / REPORT_NAME)
    got = {r["record"] if r["field"] != "<line>" else None: r for r in rows}
    assert len(rows) == len(got) == len(expected), [r["where"] for r in rows]  # one row per bad record
    assert set(got) == set(expected)
    lines = data.read_text().splitlines()
    for rid, row in got.items():
        assert row["field"] == expected[rid], row
        assert REASONS[rid] in row["reason"], row
        assert row["file"] == str(data) and row["line"] >= 1
        assert (rid or "bad-json") in lines[row["line"] - 1], row  # the line named is the record's
    return rows


def one_summary_line(err: str, n: int) -> None:
    summary = [line for line in err.splitlines() if line.startswith("bad records:")]
    assert len(summary) == 1 and summary[0].startswith(f"bad records: {n} skipped"), summary


def test_eval_reports_every_bad_record_and_runs_the_good_ones(data, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(data), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "8"])
    expected = {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD, **TOO_LONG}
    assert code == EXIT_SKIPPED
    check_report(out, expected, data)
    assert {r["id"] for r in read_jsonl(out / "predictions.jsonl")} == GOOD_IDS
    scores = json.loads((out / "scores.json").read_text())
    assert sum(total for _, total in scores["counts"].values()) == len(GOOD_IDS)  # bad ones are not scored
    assert scores["bad_records"]["count"] == len(expected)
    one_summary_line(capsys.readouterr().err, len(expected))


def test_eval_strict_stops_at_the_first_bad_record(data, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(data), "--out", str(out), "--max-new-tokens", "4", "--strict"])
    assert code == EXIT_STRICT
    err = capsys.readouterr().err
    assert f"stopped at a bad record: {data}:5: field '<line>': not valid JSON" in err
    assert not (out / "predictions.jsonl").exists()  # stopped before any work


def test_eval_strict_stops_at_an_image_problem_too(data, tmp_path, capsys):
    """Without load errors, --strict stops at the first record whose image is bad, naming it."""
    lines = [line for line in data.read_text().splitlines() if '"bad-' not in line or "bad-missing" in line]
    only = data.parent / "only_missing.jsonl"
    only.write_text("\n".join(lines) + "\n")
    assert main(["eval", "--data", str(only), "--out", str(tmp_path / "e"), "--max-new-tokens", "4", "--strict"]) == EXIT_STRICT
    assert "(id bad-missing): field 'images[1]'" in capsys.readouterr().err


def test_clean_input_exits_0_with_an_empty_report(data, tmp_path):
    clean = data.parent / "clean.jsonl"
    clean.write_text("".join(line + "\n" for line in data.read_text().splitlines() if '"bad-' not in line))
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(clean), "--out", str(out), "--max-new-tokens", "4"]) == 0
    assert (out / REPORT_NAME).read_text() == ""


def synthesize(data: Path, out: Path, server: FakeOpenAIServer, *extra: str) -> int:
    # The fake server counts no image tokens: the start-up image-size check may only warn.
    return main(["synthesize", "--data", str(data), "--out", str(out), "--teacher", "openai", "--base-url", server.base_url,
                 "--teacher-model", "t", "--allow-image-token-mismatch", "--model", "tiny-base", *extra])


def item_calls(server: FakeOpenAIServer) -> list:
    """Requests about records (their prompt is the paper's), not start-up probes."""
    return [c for c in server.calls if "<think>" in last_text(c.body.get("messages", []))]


def test_synthesize_with_an_http_teacher(data, tmp_path):
    """The OpenAI-compatible teacher decodes images when it asks: a truncated one fails its item, not the run."""
    out = tmp_path / "syn"
    with FakeOpenAIServer() as server:
        code = synthesize(data, out, server, "--k", "2", "--concurrency", "4")
        asked = len(item_calls(server))
    assert code == EXIT_SKIPPED
    check_report(out, {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD}, data)  # the teacher's context is not ours to judge
    stats = json.loads((out / "stats.json").read_text())
    assert stats["asked"] == len(GOOD_IDS) + 1 == asked  # the good ones and the 240-image one were asked
    with FakeOpenAIServer() as server:  # a rerun asks only again for the truncated one, which fails again
        assert synthesize(data, out, server, "--k", "2") == EXIT_SKIPPED
        assert item_calls(server) == []
    check_report(out, {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD}, data)


def test_synthesize_teacher_failures_are_reported_but_strict_does_not_stop_at_them(data, tmp_path):
    clean = data.parent / "clean_syn.jsonl"
    clean.write_text("".join(line + "\n" for line in data.read_text().splitlines() if '"bad-' not in line))
    out = tmp_path / "syn"
    with FakeOpenAIServer(always_fail=lambda body: "<think>" in last_text(body.get("messages", []))) as server:
        code = synthesize(clean, out, server, "--k", "1", "--strict")
    rows = read_jsonl(out / REPORT_NAME)
    assert code == EXIT_SKIPPED and {r["record"] for r in rows} == GOOD_IDS
    assert all(r["field"] == "teacher" and "HTTP 500" in r["reason"] for r in rows)


def test_reject(data, tmp_path, capsys):
    out = tmp_path / "rej"
    code = main(["reject", "--model", "tiny-base", "--data", str(data), "--out", str(out), "--k", "1", "--max-new-tokens", "4"])
    expected = {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD, **TOO_LONG}
    assert code == EXIT_SKIPPED
    check_report(out, expected, data)
    assert {r["id"] for r in read_jsonl(out / "samples.jsonl")} == GOOD_IDS
    one_summary_line(capsys.readouterr().err, len(expected))


def test_score_world(data, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [{"id": rid, "text": '{"bbox_2d": [1, 2, 30, 40]}'} for rid in sorted(GOOD_IDS)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "x", "text": \n')
    out = tmp_path / "score"
    code = main(["score", "--benchmark", "world", "--data", str(data), "--predictions", str(preds), "--out", str(out),
                 "--model", "tiny-base"])
    assert code == EXIT_SKIPPED
    report = read_jsonl(out / REPORT_NAME)
    broken_prediction = [r for r in report if r["file"] == str(preds)]
    assert len(broken_prediction) == 1 and "preds.jsonl:9" in broken_prediction[0]["reason"]
    # Scoring reads image headers only: a truncated image or a long prompt does not stop it.
    check_report_rows = [r for r in report if r["file"] == str(data)]
    assert {r["record"] if r["field"] != "<line>" else None for r in check_report_rows} == set(LOAD_BAD) | set(HEADER_BAD)
    scores = json.loads((out / "scores.json").read_text())
    assert sum(total for _, total in scores["counts"].values()) == len(GOOD_IDS) + 2  # truncated, too-many
    capsys.readouterr()
    assert main(["score", "--benchmark", "world", "--data", str(data), "--predictions", str(preds), "--strict",
                 "--model", "tiny-base"]) == EXIT_STRICT
    assert "preds.jsonl:9" in capsys.readouterr().err


def _trl_args(data: Path, out: Path) -> list[str]:
    # One record of this small mixed file is too long on purpose: more than the 5% a stage skips for length.
    return ["--data", str(data), "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1", "--length_skip_limit", "0.2"]


@pytest.mark.slow  # trains or runs the demo: end to end
def test_sft_skips_bad_records_and_trains_on_the_rest(data, tmp_path, capsys):
    out = tmp_path / "sft"
    code = main(["sft", *_trl_args(data, out), "--cot", "false"])  # answer-only: the targets come from the boxes
    expected = {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD, **TOO_LONG}
    assert code == EXIT_SKIPPED
    check_report(out, expected, data)
    assert json.loads((out / "sft_summary.json").read_text())["records"] == len(GOOD_IDS)
    one_summary_line(capsys.readouterr().err, len(expected))
    assert main(["sft", *_trl_args(data, tmp_path / "strict"), "--cot", "false", "--strict", "true"]) == EXIT_STRICT
    assert not (tmp_path / "strict" / "model.safetensors").exists()


@pytest.mark.slow  # trains or runs the demo: end to end
def test_grpo_skips_bad_records_and_trains_on_the_rest(data, tmp_path):
    out = tmp_path / "grpo"
    code = main(["grpo", *_trl_args(data, out), "--num_generations", "2", "--max_completion_length", "8"])
    assert code == EXIT_SKIPPED
    check_report(out, {**LOAD_BAD, **HEADER_BAD, **DECODE_BAD, **TOO_LONG}, data)
    assert json.loads((out / "grpo_summary.json").read_text())["records"] == len(GOOD_IDS)


def test_cot_sft_reports_records_without_a_response(data, tmp_path):
    """CoT SFT needs the teacher's answer: a record without one is skipped by name, not silently."""
    from migrl.stages.sft import SFTStageConfig, train_sft

    clean = data.parent / "no_response.jsonl"
    clean.write_text("".join(line + "\n" for line in data.read_text().splitlines() if '"bad-' not in line))
    cfg = SFTStageConfig(output_dir=str(tmp_path / "sft"), data=str(clean), report_to="none", use_cpu=True, bf16=False)
    with pytest.raises(ValueError, match="no usable SFT records"):
        train_sft(cfg)
    rows = read_jsonl(tmp_path / "sft" / REPORT_NAME)
    assert {r["record"] for r in rows} == GOOD_IDS and all(r["field"] == "response" for r in rows)



def test_skipped_records_exit_0_under_a_launcher(capsys):
    """torchrun / accelerate launch take any non-zero exit for a crashed rank (and restart the
    finished job with --max-restarts): there a run that skipped records exits 0, and says why."""
    from migrl.bad_records import EXIT_OK, exit_code

    summary = {"count": 2, "by_field": {"images": 2}}
    assert exit_code(summary, "out", env={}) == EXIT_SKIPPED
    assert exit_code(summary, "out", env={"WORLD_SIZE": "1"}) == EXIT_SKIPPED
    assert exit_code(summary, "out", env={"WORLD_SIZE": "2", "RANK": "1"}) == EXIT_OK
    assert exit_code(summary, "out", env={"WORLD_SIZE": "1", "TORCHELASTIC_RUN_ID": "none"}) == EXIT_OK  # torchrun, 1 process
    assert "failed rank" in capsys.readouterr().err
    assert exit_code({"count": 0}, "out", env={}) == EXIT_OK
