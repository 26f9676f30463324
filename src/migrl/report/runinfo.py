"""What a report says about each run beyond its scores: which model folder answered, and that folder's
training log (``trainer_state.json``'s ``log_history``, written by ``migrl.training.finish.save_final``).

An eval folder does not store the model's path, only its fingerprint (``predictions.run.json``, the identity
a resumed eval is checked against). The folder is found by fingerprinting the model folders near the eval
folder (``migrl demo`` writes ``<out>/eval/<stage>`` beside ``<out>/sft`` and ``<out>/grpo``) and the bases
migrl ships; whatever is not found is said, never guessed.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from migrl.recipe import recorded_recipe
from migrl.run_identity import model_fingerprint

SERVED = "served:"  # generator_identity's prefix for answers from a server: no folder to find

# (chart title, log key, y label); a key None is the format reward, whose name is the reward function's
# (TRL logs ``rewards/{reward_func.__name__}/mean``). The loss is charted for SFT logs only: GRPO's loss
# is the clipped policy objective, near zero by construction, and says nothing of learning.
CURVES: tuple[tuple[str, str | None, str], ...] = (
    ("SFT loss", "loss", "loss"),
    ("GRPO reward (mean over completions)", "reward", "reward"),
    ("GRPO KL to the reference", "kl", "KL"),
    ("GRPO format reward (mean)", None, "rate"),
    ("GRPO completion length (mean)", "completions/mean_length", "tokens"),
)
FORMAT_KEY = re.compile(r"^rewards/[^/]*format[^/]*/mean$")


def migrl_version() -> str:
    try:
        return metadata.version("migrl")
    except metadata.PackageNotFoundError:
        return "unknown"


def eval_identity(eval_folder: Path) -> dict[str, Any]:
    """What made the eval's answers (``predictions.run.json``); {} when absent or unreadable."""
    try:
        return json.loads((eval_folder / "predictions.run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _model_folders(where: Path) -> list[Path]:
    return sorted(p for p in where.iterdir() if (p / "config.json").is_file()) if where.is_dir() else []


def candidates(eval_folders: Iterable[Path]) -> list[Path]:
    """Model folders to fingerprint: beside each eval folder and its parent (the demo's layout), then the
    shipped bases; near ones first, so a copy of a shipped base found beside the runs is the one named."""
    from migrl.models.loading import TINY_BASE

    seen: dict[Path, None] = {}
    for folder in eval_folders:
        for where in (folder.parent, folder.parent.parent):
            seen.update(dict.fromkeys(_model_folders(where)))
    seen.update(dict.fromkeys(_model_folders(TINY_BASE.parent)))
    return list(seen)


def find_models(eval_folders: dict[str, Path]) -> dict[str, tuple[Path | None, str]]:
    """Each run's model folder, or None and why; every candidate is fingerprinted once for all runs."""
    prints: dict[Path, str] = {}
    out = {}
    for label, folder in eval_folders.items():
        who = eval_identity(folder).get("model")
        if not who:
            out[label] = (None, f"no {folder / 'predictions.run.json'}: the eval folder does not say which model answered")
        elif who.startswith(SERVED):
            out[label] = (None, f"answers from a served model ({who[len(SERVED):]}): no folder to read")
        else:
            out[label] = _match(who, candidates(eval_folders.values()), prints)
    return out


def _match(who: str, folders: list[Path], prints: dict[Path, str]) -> tuple[Path | None, str]:
    for folder in folders:
        if folder not in prints:
            try:
                prints[folder] = model_fingerprint(folder)
            except OSError:
                prints[folder] = ""
        if prints[folder] == who:
            return folder, ""
    return None, f"no model folder beside the eval folder or shipped with migrl has its weights (fingerprint {who})"


def training_log(model: Path | None) -> tuple[list[dict[str, Any]], str]:
    """The folder's ``log_history`` and, when there is none, why (the shipped base was not trained by migrl)."""
    if model is None:
        return [], ""
    state = model / "trainer_state.json"
    try:
        return list(json.loads(state.read_text(encoding="utf-8")).get("log_history", [])), ""
    except FileNotFoundError:
        return [], f"no {state.name} in {model} (not trained by migrl's sft / grpo): no curves"
    except (OSError, ValueError, AttributeError) as exc:
        return [], f"{state} cannot be read ({exc}): no curves"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_grpo(log: list[dict[str, Any]]) -> bool:
    return any("reward" in entry for entry in log)


def curve(log: list[dict[str, Any]], key: str | None) -> list[tuple[float, float]]:
    """(step, value) of every logged step that has ``key`` (None: the format reward's key)."""
    points = []
    for entry in log:
        name = key or next((k for k in entry if FORMAT_KEY.match(k)), None)
        if name in entry and _number(entry[name]) and _number(entry.get("step")):
            points.append((float(entry["step"]), float(entry[name])))
    return points


def curves(logs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, dict[str, list[tuple[float, float]]]]]:
    """(title, y label, {run: points}) of each chart some run's log has points for."""
    out = []
    for title, key, unit in CURVES:
        grpo_only = key != "loss"
        series = {label: curve(log, key) for label, log in logs.items() if is_grpo(log) == grpo_only}
        series = {label: pts for label, pts in series.items() if pts}
        if series:
            out.append((title, unit, series))
    return out


def recipe_of(model: Path | None) -> str:
    """The recipe a trained folder records (``migrl.recipe.recorded_recipe``), a tiny base's pretraining (its
    ``pretrain_log.json``), else "unknown"."""
    recorded = recorded_recipe(model) if model is not None else None
    if recorded is not None:
        return recorded
    if model is not None and (model / "pretrain_log.json").is_file():
        return "migrl pretrain-base (pretrain_log.json)"
    return "unknown"


def evaluated_at(eval_folder: Path) -> str:
    """When the eval wrote its scores (UTC)."""
    stamp = (eval_folder / "scores.json").stat().st_mtime
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def family_name(model: Path | None) -> str:
    from migrl.models.family import family_of

    found = family_of(model) if model is not None else None
    return found.name if found is not None else "unknown"
