"""What a run asks its local model for, by record id, for the resume tests.

A log keeps one row per id, so a rerun that asked for every item again would still leave the same
output: the resume tests count the asks instead. Every request ``eval`` and ``reject`` build
(``request_for``) is tagged with its record's id, and ``HFEngine.generate`` notes the ids of the
requests it is handed, in order, one entry per request.

In the test process::

    with counting_asks() as asked:
        evaluate(cfg, model, processor)
    assert asked == []  # nothing was left to do

``counting_teacher()`` does the same for ``synthesize``: a scripted teacher with an ``asked`` list.

As a ``migrl`` command in a subprocess (``python tests/asks.py ASKED_FILE eval ...``): ``migrl.cli.main``
with the same counting, each id appended to ASKED_FILE (one a line, flushed) before the engine starts
on it, so a process killed mid-run leaves what it had asked for. ``{rank}`` in ASKED_FILE is replaced by
the launcher's RANK, one file per rank.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

TAG = "asked_for"


@contextmanager
def counting_asks(note: Callable[[list[str]], None] | None = None) -> Iterator[list[str]]:
    import migrl.stages.evaluate as evaluate
    import migrl.stages.reject as reject
    from migrl.engines.hf import HFEngine

    asked: list[str] = []
    build, generate = evaluate.request_for, HFEngine.generate

    def tagged_request(record, *args, **kwargs):
        request = build(record, *args, **kwargs)
        setattr(request, TAG, record.id)
        return request

    def counted_generate(self, requests, *args, **kwargs):
        ids = [getattr(r, TAG, "<untagged request>") for r in requests]
        asked.extend(ids)
        if note is not None:
            note(ids)
        return generate(self, requests, *args, **kwargs)

    with mock.patch.object(evaluate, "request_for", tagged_request), \
            mock.patch.object(reject, "request_for", tagged_request), \
            mock.patch.object(HFEngine, "generate", counted_generate):
        yield asked


def counting_teacher(**settings):
    """The scripted teacher (``settings`` as its own), noting in ``asked`` the id of every item it is asked for."""
    from migrl.engines.scripted import ScriptedTeacher

    class CountingTeacher(ScriptedTeacher):
        def sample(self, records, root, k, on_result):
            self.asked.extend(r.id for r in records)
            super().sample(records, root, k, on_result)

    teacher = CountingTeacher(**settings)
    teacher.asked = []
    return teacher


def read_asks(path: Path) -> list[str]:
    """The ids a ``tests/asks.py`` run asked for (none when it never got to ask)."""
    return path.read_text().split() if path.exists() else []


def command(asked: Path) -> list[str]:
    """``migrl`` as a subprocess, its asks counted into ``asked``."""
    return [sys.executable, str(Path(__file__).resolve()), str(asked)]


def main() -> int:
    path = Path(sys.argv[1].replace("{rank}", os.environ.get("RANK", "0")))
    from migrl.cli import main as migrl

    with open(path, "a", encoding="utf-8") as f:
        def note(ids: list[str]) -> None:
            f.write("".join(f"{i}\n" for i in ids))
            f.flush()

        with counting_asks(note):
            return migrl(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
