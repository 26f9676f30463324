"""Resuming training: which ``checkpoint-N`` folder a rerun may start from."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint the Trainer finished writing, or None.

    transformers (``Trainer._save_checkpoint``) writes a checkpoint's files in place -- weights,
    optimizer, scheduler, RNG, then ``trainer_state.json`` last -- and ``get_last_checkpoint`` takes
    the highest step whatever state that folder is in. After a ``kill -9`` during a save the newest
    folder lacks files, and resuming from it fails. A checkpoint counts here once its
    ``trainer_state.json`` parses and names its own step; a torn newer one is passed over (and
    overwritten when training reaches that step again).
    """
    out = Path(output_dir)
    if not out.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))), reverse=True)
    for step, folder in steps:
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is incomplete (interrupted while saving?); resuming from an earlier checkpoint", folder)
            continue
        if isinstance(state, dict) and state.get("global_step") == step:
            return str(folder)
        log.warning("%s has a trainer_state.json for another step; passed over", folder)
    return None
