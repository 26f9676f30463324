"""Teachers for ``migrl synthesize`` behind one interface: ``sample(records, root, k, on_result)``.

``on_result(record, texts | Failure)`` is called once per record as answers come in, so synthesis
can persist them and resume. Each teacher says which coordinate space it answers in and with
which image-size setting, so its boxes can be converted before they are judged.
(The embedded scripted teacher lives in ``engines/scripted.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from migrl.bad_records import OptionError
from migrl.boxes import Space
from migrl.engines.base import Request, SamplingParams
from migrl.engines.hf import HFEngine
from migrl.engines.openai_compat import Failure, OpenAICompatEngine, OpenAIConfig
from migrl.generation import request_for
from migrl.images import ImageError, ImageSizing, image_size, resolve_image_path
from migrl.records import Record

OnResult = Callable[[Record, "list[str] | Failure"], None]
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # `vllm serve`'s default address


class LazyRequests(Sequence[Request]):
    """Requests whose images are decoded only when a request is taken: memory stays bounded."""

    def __init__(self, records: list[Record], root: Path, cot: bool = True):
        self.records, self.root, self.cot = records, root, cot

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Request:  # type: ignore[override]
        return request_for(self.records[i], self.root, self.cot)


def readable(records: list[Record], root: Path, on_result: OnResult) -> list[Record]:
    """Records whose images all exist and can be read; the others fail now, with the reason."""
    good = []
    for r in records:
        try:
            for p in r.images:
                image_size(resolve_image_path(p, root))
            good.append(r)
        except ImageError as exc:
            on_result(r, Failure(str(exc), field="images"))
    return good


def teacher_coords(args: Any, folder: str | None) -> Space:
    """--teacher-coords, else the teacher folder's family, else Qwen2.5-VL's (the paper's teacher, 72B)."""
    given = getattr(args, "teacher_coords", None)
    if not (given or folder):
        return Space.QWEN25
    from migrl.answer_space import resolve_coords

    return resolve_coords("migrl synthesize (teacher)", folder, given)


@dataclass
class OpenAITeacher:
    engine: OpenAICompatEngine
    sizing: ImageSizing
    coords: Space = Space.QWEN25
    temperature: float = 0.7
    max_new_tokens: int = 1024

    def identity(self) -> dict[str, Any]:
        """The served model (the servers' addresses may change between runs) and the sampling settings."""
        return _identity(f"served:{self.engine.config.model}", self)

    @classmethod
    def from_args(cls, args: Any, sizing: ImageSizing) -> "OpenAITeacher":
        """The teacher behind ``--base-url`` (repeatable), once every server passed the image-token check:
        the teacher's boxes are read with ``sizing``, so the servers must resize with it."""
        from migrl.engines.serving import check_image_tokens

        config = OpenAIConfig(
            base_url=list(args.base_urls or [DEFAULT_BASE_URL]), model=args.teacher_model, api_key_env=args.api_key_env,
            concurrency=args.concurrency, timeout=args.timeout,
            server_sampling_fields=getattr(args, "server_sampling_fields", True),
        )
        engine = OpenAICompatEngine(config)
        processor = None
        if getattr(args, "teacher_processor", None):
            from migrl.models.loading import load_processor

            processor = load_processor(args.teacher_processor, sizing)
        check_image_tokens(engine, sizing, processor, model_name=args.teacher_model or "TEACHER",
                           strict=not getattr(args, "allow_image_token_mismatch", False))
        coords = teacher_coords(args, args.teacher_processor if getattr(args, "teacher_processor", None) else None)
        return cls(engine, sizing, coords, args.temperature, args.max_new_tokens)

    def sample(self, records: list[Record], root: Path, k: int, on_result: OnResult) -> None:
        records = readable(records, root, on_result)
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, n=k)
        self.engine.generate(LazyRequests(records, root), params, on_result=lambda i, res: on_result(records[i], res))


@dataclass
class HFTeacher:
    """A local model folder as the teacher (batched generation, k samples per prompt)."""

    engine: HFEngine
    sizing: ImageSizing
    coords: Space = Space.QWEN25
    temperature: float = 0.7
    max_new_tokens: int = 1024
    chunk: int = 64

    def identity(self) -> dict[str, Any]:
        """The model folder's fingerprint (its weights, wherever it was loaded from) and the sampling settings."""
        from migrl.run_identity import model_fingerprint

        return _identity(f"hf:{model_fingerprint(self.engine.model.config._name_or_path)}", self)

    @classmethod
    def from_args(cls, args: Any) -> "HFTeacher":
        from migrl.models.loading import load_model, load_processor

        if not args.teacher_model:
            raise OptionError("--teacher hf needs --teacher-model FOLDER (the teacher's model folder)")
        coords = teacher_coords(args, args.teacher_model)  # before loading: a wrong option fails fast
        processor = load_processor(args.teacher_model)
        model = load_model(args.teacher_model)
        engine = HFEngine(model, processor, batch_size=args.concurrency)
        return cls(engine, ImageSizing.from_processor(processor), coords, args.temperature, args.max_new_tokens)

    def sample(self, records: list[Record], root: Path, k: int, on_result: OnResult) -> None:
        records = readable(records, root, on_result)
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, n=k)
        for start in range(0, len(records), self.chunk):
            part, requests = [], []
            lazy = LazyRequests(records[start : start + self.chunk], root)
            for i, record in enumerate(lazy.records):
                try:
                    requests.append(lazy[i])
                    part.append(record)
                except ImageError as exc:  # a file that decodes badly fails its item, not the run
                    on_result(record, Failure(str(exc), field="images"))
            self.engine.generate(requests, params,
                                 on_batch=lambda idx, outs: [on_result(part[i], o) for i, o in zip(idx, outs)])


def _identity(who: str, teacher: "OpenAITeacher | HFTeacher") -> dict[str, Any]:
    """What decides a model teacher's text besides the model: its space, image setting and sampling."""
    return {"teacher": who, "coords": teacher.coords.value, "pixels": [teacher.sizing.min_pixels, teacher.sizing.max_pixels],
            "temperature": teacher.temperature, "max_new_tokens": teacher.max_new_tokens}
