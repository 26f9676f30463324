"""The configs of the generating stages (eval, reject, synthesize and its teacher, score, served engines) and of
base pretraining, each field defined once: its type, default and help. ``migrl <command>`` options are generated
from them (``migrl.options``); code builds them directly. Light on purpose (no torch): the CLI reads them for
``--help``. sft and grpo are configured by TRL's config classes (``migrl.stages.sft`` / ``grpo``).
"""

from __future__ import annotations

from dataclasses import dataclass

from migrl.benchmarks import NAMES as BENCHMARK_NAMES
from migrl.benchmarks import PAPER_SUBSET
from migrl.boxes import Space
from migrl.models.family import DEFAULT_TINY_FAMILY, TINY_FAMILIES, Family
from migrl.options import opt

SPACES = [s.value for s in Space]
COORDS_HELP = "space of the model's numbers (default: the model folder's family decides: qwen2_5_vl -> qwen25, qwen2_vl -> qwen2)"
SUBSET_HELP = ("which items and tasks the figure covers: paper (default: the set the paper reports) or a wider one "
               "-- mc-bench: all (every pair); odinw: all (every subset in the mean); mmiu: types (every task of the "
               "paper's four relation types), all; blink: all (the 14 subtasks)")
CATEGORY_MAP_HELP = "Ref-L4: the official ref_l4/evaluation.py (its refcoco->o365 table) or a JSON of it; adds the class-level average"
STRICT_HELP = "stop at the first bad record (exit code 4) instead of skipping it (exit code 3)"
SHARD_HELP = ("INDEX/COUNT, e.g. 0/4: generate only that share of the items into its own log (one job of several); "
              "the same command without --shard merges the shard logs. Under torchrun / accelerate launch the ranks "
              "share the items by themselves and rank 0 merges")
SERVER_FIELDS_HELP = ("leave vLLM's top_k / min_p / repetition_penalty out of each request (for a hosted API that refuses "
                      "them); by default they are sent, so a server cannot fill them from the model's generation_config.json")
MISMATCH_HELP = "warn instead of stopping when a server counts other image tokens than training (it resizes differently)"
OUT = ("--output_dir",)  # TRL's spelling, accepted beside --out
MODEL = ("--model_name_or_path",)


def _tasks(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


@dataclass
class RemoteConfig:
    """Served copies of a model (`vllm serve`, SGLang, any OpenAI-compatible server)."""

    base_urls: tuple[str, ...] = opt((), "a server of the model, e.g. http://127.0.0.1:8000/v1; repeat for several "
                                     "(items are spread over them)", flag="--base-url", append=True)
    model: str = opt("", "the name the servers serve the model under (default: --model)", flag="--served-model",
                     dest="served_model")
    api_key_env: str = opt("OPENAI_API_KEY", "environment variable holding the API key")
    concurrency: int = opt(16, "requests in flight per server")
    timeout: float = opt(300.0, "seconds per request attempt")
    allow_image_token_mismatch: bool = opt(False, MISMATCH_HELP)
    max_images: int = opt(8, cli=False)  # for the suggested --limit-mm-per-prompt
    server_sampling_fields: bool = opt(True, SERVER_FIELDS_HELP, flag="--no-server-sampling-fields")


@dataclass
class EvalConfig:
    model: str | None = opt(None, "model folder (default: the shipped tiny base)", aliases=MODEL)
    data: str = opt("", "records JSONL, or the benchmark's official annotation file", required=True)
    benchmark: str = opt("records", "how to read --data and score (default: migrl records, Acc@0.5 per task)",
                         choices=BENCHMARK_NAMES)
    image_root: str | None = opt(None, "folder the data's image paths are relative to (default: the data's)")
    category_map: str | None = opt(None, CATEGORY_MAP_HELP)
    subset: str = opt(PAPER_SUBSET, SUBSET_HELP)
    out: str = opt("runs/eval", aliases=OUT)
    batch_size: int = opt(64, "rows decoded together (the engine prefills 16 prompts at a time)")
    max_new_tokens: int = opt(192)
    coords: str | None = opt(None, COORDS_HELP, choices=SPACES)
    cot: bool = opt(True, "ask for the answer only, without the paper's think/answer instruction")
    limit_per_task: int = opt(0, "at most this many records per task (0: every record)")
    chunk: int = opt(64, "records whose images are loaded at once")
    strict: bool = opt(False, STRICT_HELP)
    shard: str | None = opt(None, SHARD_HELP)
    remote: RemoteConfig | None = opt(None, cli=False)  # served models (the model folder gives processor and config)


@dataclass
class RejectConfig:
    model: str | None = opt(None, "the merged CoT-SFT model folder", aliases=MODEL, required=True)
    data: str = opt("", "the RL pool (records JSONL)", required=True)
    out: str = opt("runs/reject", aliases=OUT)
    k: int = opt(8, "samples per item")
    temperature: float = opt(1.0)
    max_new_tokens: int = opt(1024)
    batch_size: int = opt(64, "completions decoded together")
    coords: str | None = opt(None, COORDS_HELP, choices=SPACES)
    chunk: int = opt(64, "items whose images are loaded at once")
    strict: bool = opt(False, STRICT_HELP)
    shard: str | None = opt(None, SHARD_HELP)
    remote: RemoteConfig | None = opt(None, cli=False)  # served models (the model folder gives processor and config)


@dataclass
class SynthesizeConfig:
    data: str = opt("", "records JSONL (the training pool)", required=True)
    out: str = opt("runs/synthesize", aliases=OUT)
    k: int = opt(4, "answers per item (the paper: 4)")
    keep: str = opt("best", "best: one answer per kept item (the tightest box); all: every right, well-formed answer",
                    choices=["best", "all"])
    tasks: tuple[str, ...] = opt((), "comma-separated tasks to use (default: every task in the file)", parse=_tasks)
    limit: int = opt(0, "at most this many items (0: all)")
    retry_failed: bool = opt(True, "do not ask again for items whose teacher request failed (a rerun does by default)")
    shard: str | None = opt(None, SHARD_HELP)
    strict: bool = opt(False, STRICT_HELP)


@dataclass
class TeacherConfig:
    """Who writes the chain-of-thought answers (``migrl.engines.teachers``); its server options are RemoteConfig's."""

    teacher: str = opt("scripted", "scripted: the embedded world's; openai: a served model (--base-url); hf: a local folder",
                       choices=["scripted", "openai", "hf"])
    teacher_model: str = opt("", "model name on the server, or a local folder (teacher hf)")
    teacher_coords: str | None = opt(None, "space of the teacher's boxes (default: --teacher-model's or "
                                     "--teacher-processor's family; else qwen25, the paper's Qwen2.5-VL-72B)", choices=SPACES)
    teacher_min_pixels: int = opt(0, "the teacher's processor min_pixels (0: its family's released one; Qwen2.5-VL's "
                                  "3136 without a local --teacher-model / --teacher-processor folder)")
    teacher_max_pixels: int = opt(0, "the teacher's processor max_pixels (0: its family's released one; Qwen2.5-VL's "
                                  "12845056 without a local folder)")
    teacher_processor: str | None = opt(None, "a folder with the teacher's processor: the image-token check then "
                                        "counts the whole prompt")
    seed: int = opt(0, "the scripted teacher's seed")
    temperature: float = opt(0.7)
    max_new_tokens: int = opt(1024)


@dataclass
class ImageSetting:
    """A model's processor budget, for a command that reads answers without the model's folder at hand."""

    min_pixels: int = opt(0, "the model's processor min_pixels, where no --model folder says it (0: none given)")
    max_pixels: int = opt(0, "the model's processor max_pixels, where no --model folder says it (0: none given)")


@dataclass
class ScoreConfig:
    data: str = opt("", "the benchmark's official annotation file (MIG_data.json, ...), or a records JSONL", required=True)
    predictions: str = opt("", 'JSONL of {"id": ..., "text": ...}', required=True)
    benchmark: str = opt("records", "how to read --data and score", choices=BENCHMARK_NAMES, required=True)
    out: str | None = opt(None, "also write scores.json and bad_records.jsonl into this folder", aliases=OUT)
    image_root: str | None = opt(None, "folder the data's image paths are relative to (default: the data's)")
    category_map: str | None = opt(None, CATEGORY_MAP_HELP)
    subset: str = opt(PAPER_SUBSET, SUBSET_HELP)
    strict: bool = opt(False, STRICT_HELP)


def _family_line(name: str, family: Family) -> str:
    return f"{name} ({family.model_class}, {family.geometry.factor}-px image tokens, boxes in {family.coords.value})"


FAMILY_HELP = "the architecture of the tiny base: " + "; ".join(_family_line(n, f) for n, f in TINY_FAMILIES.items())


@dataclass
class PretrainConfig:
    out: str = opt("runs/tiny-base", aliases=OUT)
    family: str = opt(DEFAULT_TINY_FAMILY, FAMILY_HELP, choices=list(TINY_FAMILIES))
    steps: int = opt(2200, "optimizer steps (the schedule's length)")
    batch_size: int = opt(32)
    lr: float = opt(1e-3)
    warmup_steps: int = opt(100)
    weight_decay: float = opt(0.01)
    seed: int = opt(0)
    shape: str = opt("base", "the tiny model's shape (migrl.models.tiny)")
    eval_every: int = opt(300, "steps between skill checks")
    eval_items: int = opt(32, "items per skill check")
    max_minutes: float = opt(0.0, "stop early when > 0 and time is up (the schedule still assumes --steps)")
    save_dtype: str = opt("float16")
    bf16: bool = opt(True, "keep matmuls in float32 (by default autocast to bfloat16 where the CPU/GPU supports it; "
                           "master weights stay fp32)")
    vision_lr_mult: float = opt(1.0, "the random-init vision tower's learning rate relative to the LM's")
    save_every: int = opt(100, "steps between resumable checkpoints")
    vision_steps: int = opt(400, "first steps train only the vision tower, through the dense probe")
    probe_weight: float = opt(0.5, "the probe's loss keeps training the vision tower beside the LM")
    curriculum_start: float = opt(0.0, "where in the curriculum this run starts, as a fraction of it (0.7: only its last, "
                                       "multi-image stage); with --out a finished base, a second phase continues it")
