"""What made a resumable log, so that a rerun only resumes the same run.

``eval`` and ``reject`` resume from their append logs by item id. Rerun into the same ``--out`` with
another model (a retrained one, another base) and the old rows would be kept as if the new model had
written them. Each log gets a ``<log>.run.json`` beside it: the model's fingerprint and the settings
that change the text; a rerun that differs stops with a clear error instead of mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from migrl.jsonl import write_json_atomic

# Bytes read per weight file: 1024 blocks of 4 KiB spread over the file. A fine-tune or a merged LoRA
# changes at least a few percent of the bytes, so two different models share no sampled block with
# a chance below 1e-10, while a 15 GB 7B checkpoint is fingerprinted in well under a second (hashing
# all of it would take a minute at every resume). Copies of a model (another node) match: no mtimes.
BLOCKS, BLOCK = 1024, 4096


class StaleRunError(ValueError):
    pass


def file_fingerprint(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        if size <= BLOCKS * BLOCK:
            digest.update(f.read())
        else:
            for i in range(BLOCKS):
                f.seek(i * (size - BLOCK) // (BLOCKS - 1))
                digest.update(f.read(BLOCK))
    return digest.hexdigest()[:16]


def model_fingerprint(folder: str | os.PathLike) -> str:
    """One string for a model folder's config and weights."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors" or p.name == "config.json")
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}:{file_fingerprint(p)};".encode())
    return digest.hexdigest()[:16]


def check_same_run(log_path: Path, identity: dict[str, Any]) -> None:
    """Record ``identity`` beside a new log; for an existing one, stop when it was made otherwise."""
    meta = log_path.with_name(log_path.stem + ".run.json")
    identity = json.loads(json.dumps(identity))  # as it reads back (tuples -> lists)
    if meta.exists():
        saved = json.loads(meta.read_text())
        changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if changed:
            details = "; ".join(f"{k}: {saved.get(k)!r} then, {identity.get(k)!r} now" for k in changed)
            raise StaleRunError(
                f"{log_path} was written by another run ({details}); resuming would mix the two. "
                f"Use another --out, or delete {log_path.parent} to start again."
            )
        return
    write_json_atomic(meta, identity)


def input_fingerprint(path: str | os.PathLike) -> str:
    """The input file's contents (sampled as for weights): a rerun into the same --out with another data
    file must not resume the first file's answers as its own."""
    return file_fingerprint(Path(path))


def generator_identity(model: str | None, remote: Any = None, **settings: Any) -> dict[str, Any]:
    """The model (a folder's fingerprint, or the name a server serves) and the generation settings."""
    if remote is not None:
        who = f"served:{remote.model}"
    else:
        from migrl.models.loading import resolve_model_path

        who = model_fingerprint(resolve_model_path(model))
    return {"model": who, **settings}
