"""The one recipe loader: a stage's YAML recipe (``extends:`` merged), command-line overrides, the CPU
fallback, and TRL's parser -- what ``migrl sft|grpo``, ``migrl demo`` and ``migrl sweep`` all read recipes with.

A recipe may ``extends:`` another recipe (a path relative to the file) and change a few fields; ``ablates:``
says in words what it changes; TRL's parser reads the merged recipe from a temporary file. Once a stage has
checked its recipe and its data it records what it runs in ``<output_dir>/recipe.yaml`` (``record_recipe``): the
recipe's fields and those given on the command line, with the values run, under a "# merged from RECIPE" line
that reports name the recipe by. A run refused before that leaves no folder behind. On a machine without a GPU a
GPU recipe (bf16, gradient checkpointing) runs on the CPU instead, and says so. A field the config does not have
is one line naming the nearest real one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from migrl.bad_records import OptionError
from migrl.jsonl import write_text_atomic

META_KEYS = ("extends", "ablates")  # migrl's own recipe keys, not fields of TRL's configs
RECORD_NAME = "recipe.yaml"  # in a stage's output_dir: the record of the recipe it ran
RECORD_HEADER = "# merged from "  # the record's first line: the recipe file, which reports name the run by
# The record a parsed config carries until its stage writes it (a plain attribute, not a config field: it is not
# something a user sets, and TRL's to_dict / the trainer's saved args leave it out).
RECORD_ATTR = "_migrl_recipe_record"
CPU_FIELDS = {"use_cpu": True, "bf16": False, "fp16": False, "gradient_checkpointing": False}


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's fields with its ``extends`` chain merged in (the extending file wins)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"{path}: recipes extend each other in a loop: {' -> '.join(map(str, _seen + (path,)))}")
    fields = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: a recipe is a mapping of field: value, got {type(fields).__name__}")
    parent = fields.pop("extends", None)
    if parent is None:
        return fields
    base = load_recipe(path.parent / parent, _seen + (path,))
    base.pop("ablates", None)  # what the parent ablates is not what this one does
    return {**base, **fields}


def config_index(argv: list[str]) -> int | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return i + 1
    return None


def override(argv: list[str], name: str) -> str | None:
    flag = f"--{name}"
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def expand_config_argv(argv: list[str], into: Path) -> list[str]:
    """``argv`` of ``migrl sft|grpo`` with a ``--config`` that uses ``extends``/``ablates`` replaced by
    the merged recipe, written to ``into`` (a temporary folder: the record is written later, after the checks)."""
    i = config_index(argv)
    if i is None:
        return argv
    raw = yaml.safe_load(Path(argv[i]).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not any(k in raw for k in META_KEYS):
        return argv
    merged = into / "merged.yaml"
    write_text_atomic(merged, yaml.safe_dump(recipe_fields(argv[i]), sort_keys=False))
    return [*argv[:i], str(merged), *argv[i + 1:]]


def recipe_fields(path: str | Path) -> dict[str, Any]:
    """A recipe's config fields, ``extends`` merged, migrl's own keys left out."""
    return {k: v for k, v in load_recipe(path).items() if k not in META_KEYS}


def given_fields(argv: list[str]) -> list[str]:
    """The config fields named on a command line (``--field value`` or ``--field=value``), ``--config`` aside."""
    names = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and len(a) > 2]
    return [n for n in dict.fromkeys(names) if n != "config"]


def recipe_record(cfg: Any, argv: list[str]) -> str | None:
    """What ``record_recipe`` writes for a config parsed from ``argv``: the recipe's fields and the command
    line's, with the values parsed (an override wins), under "# merged from RECIPE"; None without a recipe."""
    i = config_index(argv)
    if i is None:
        return None
    values = json.loads(json.dumps(cfg.to_dict(), default=str))  # enums as their values, tuples as lists: YAML-safe
    keys = [k for k in dict.fromkeys([*recipe_fields(argv[i]), *given_fields(argv)]) if k in values]
    return f"{RECORD_HEADER}{argv[i]}\n" + yaml.safe_dump({k: values[k] for k in keys}, sort_keys=False)


def record_recipe(cfg: Any) -> None:
    """Write the recipe a stage runs to ``<output_dir>/recipe.yaml``: called by a stage once its recipe and
    its data have been checked, so that a refused run leaves nothing behind. A config built in Python, not
    read from a recipe, has nothing to record."""
    record = getattr(cfg, RECORD_ATTR, None)
    if record is not None:
        write_text_atomic(Path(cfg.output_dir) / RECORD_NAME, record)


def recorded_recipe(folder: Path) -> str | None:
    """The recipe a stage's output folder records (its record's first line; the record's path where that line
    is not a header), None without a record."""
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    first = path.read_text(encoding="utf-8").partition("\n")[0]
    named = first[len(RECORD_HEADER):] if first.startswith(RECORD_HEADER) else ""
    return named or str(path)


def cpu_overrides(argv: list[str]) -> list[str]:
    """Without a GPU, a GPU recipe (bf16, gradient checkpointing) would be refused by TrainingArguments;
    run it on the CPU instead and say so."""
    import torch

    if torch.cuda.is_available() or "--use_cpu" in argv:
        return argv
    print("[migrl] no GPU: running on the CPU (use_cpu=true, bf16/fp16/gradient_checkpointing off)", file=sys.stderr)
    return argv + [a for k, v in CPU_FIELDS.items() for a in (f"--{k}", str(v).lower())]


def adapt_to_device(cfg: Any) -> None:
    """The same fallback for a config built in Python (TRL turns bf16 and gradient checkpointing on by
    default; on a CPU both only cost time)."""
    import torch

    if not torch.cuda.is_available():
        for k, v in CPU_FIELDS.items():
            setattr(cfg, k, v)


def parse_recipe(config_class: type, prog: str, argv: list[str]) -> Any:
    """TRL's parser (YAML recipe + command-line overrides, no prefix matching); a field it does not know
    becomes one line naming the nearest real one."""
    from trl import TrlParser

    try:
        (cfg,) = TrlParser(dataclass_types=[config_class], prog=prog, allow_abbrev=False).parse_args_and_config(args=argv)
    except ValueError as exc:
        known_message = "Unknown arguments" in str(exc) or "not used by the HfArgumentParser" in str(exc)
        unknown = re.findall(r"'--([A-Za-z0-9_\-]+)'", str(exc)) if known_message else []
        if not unknown:
            raise
        fields = [f.name for f in dataclasses.fields(config_class)]
        hints = []
        for name in unknown:
            near = difflib.get_close_matches(name, fields, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise OptionError(f"{prog}: unknown recipe field(s) {', '.join(hints)}; `{prog} --help` lists the fields") from None
    return cfg


def stage_config(config_class: type, prog: str, argv: list[str]) -> Any:
    """A stage's config from ``--config RECIPE`` and overrides: extends merged, CPU fallback, parsed."""
    import warnings

    # TRL 1.16's configs still carry transformers' deprecated `gradient_checkpointing` alias; the warning
    # it prints on every run says nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
    with tempfile.TemporaryDirectory(prefix="migrl-recipe-") as tmp:
        cfg = parse_recipe(config_class, prog, cpu_overrides(expand_config_argv(argv, Path(tmp))))
    setattr(cfg, RECORD_ATTR, recipe_record(cfg, argv))
    return cfg


def recipe_argv(recipe: str | Path, **overrides: Any) -> list[str]:
    """Command-line arguments for a stage: a recipe plus field overrides (what the demo runs)."""
    args = ["--config", str(recipe)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args
