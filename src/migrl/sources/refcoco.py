"""RefCOCO / RefCOCO+ / RefCOCOg (the ``refer`` release, github.com/lichengunc/refer ``refer.py``).

A dataset folder holds ``refs(unc).p`` (RefCOCO, RefCOCO+), ``refs(umd).p`` or ``refs(google).p``
(RefCOCOg) and ``instances.json`` (COCO format). The refs file is a list of::

    {"ref_id": 0, "ann_id": 1719310, "image_id": 581857, "category_id": 1, "split": "train",
     "sentences": [{"sent_id": 0, "sent": "the lady with the blue shirt", "tokens": [...], "raw": "..."}, ...],
     "file_name": "COCO_train2014_000000581857_1719310.jpg", "sent_ids": [0, ...]}

The box is the referred annotation's ``bbox`` in instances.json (COCO ``[x, y, w, h]`` pixels); the
image file is ``instances["images"][image_id]["file_name"]`` under COCO train2014 (``file_name`` of the
ref carries the annotation id and names no file on disk).

One record per ref by default (its first sentence; the others go to meta), so one object is never
sampled twice with the same box; ``per="sentence"`` gives one record per sentence instead. Only the
``train`` split is read by default: RefCOCO val/test feed benchmarks (Ref-L4 draws on them).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable

from migrl.boxes import Space
from migrl.records import RecordError
from migrl.sources.convert import SourceError, SourceReport, build_record, coco_box_to_xyxy, coco_tables, image_path, read_json

QUESTION = "Locate the object this sentence describes: {sentence}"
DATASETS = ("refcoco", "refcoco+", "refcocog")


def read_refs(path: str | Path, allow_pickle: bool = False) -> list:
    """The refs list from a JSON export (default) or, only when asked, the official pickle.

    Unpickling runs whatever code the file names, so a downloaded ``.p`` is refused unless the caller
    vouches for it with ``allow_pickle=True``. A one-off export to JSON avoids the question::

        python -c "import json,pickle; json.dump(pickle.load(open('refs(unc).p','rb')), open('refs(unc).json','w'))"
    """
    path = Path(path)
    if path.suffix in (".p", ".pkl", ".pickle"):
        if not allow_pickle:
            raise SourceError(
                f"{path}: a pickle can run code when loaded; export it to JSON once "
                "(see migrl.sources.refcoco.read_refs) or set allow_pickle: true if you trust the file"
            )
        try:
            with open(path, "rb") as f:
                refs = pickle.load(f)  # trusted by the caller (allow_pickle=True)
        except FileNotFoundError:
            raise SourceError(f"{path}: file not found") from None
        except Exception as exc:
            raise SourceError(f"{path}: cannot unpickle ({exc})") from None
    else:
        refs = read_json(path)
    if not isinstance(refs, list):
        raise SourceError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _sentences(ref: dict, where: str) -> list[str]:
    raw = ref.get("sentences")
    if not isinstance(raw, list) or not raw:
        raise RecordError(where, "sentences", "expected a non-empty list")
    texts = []
    for k, s in enumerate(raw):
        text = s.get("sent") if isinstance(s, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise RecordError(where, f"sentences[{k}].sent", f"expected a sentence, got {text!r}")
        texts.append(text.strip())
    return texts


def _ref_parts(ref: Any, images: dict, anns: dict, where: str) -> tuple[dict, tuple[float, ...], list[str]]:
    if not isinstance(ref, dict):
        raise RecordError(where, "<ref>", f"expected an object, got {type(ref).__name__}")
    ann = anns.get(ref.get("ann_id"))
    if ann is None:
        raise RecordError(where, "ann_id", f"{ref.get('ann_id')!r} is not an annotation of instances.json")
    image = images.get(ref.get("image_id"))
    if image is None:
        raise RecordError(where, "image_id", f"{ref.get('image_id')!r} is not an image of instances.json")
    if ann.get("image_id") != ref.get("image_id"):
        reason = f"annotation {ann.get('id')} is on image {ann.get('image_id')}, not {ref.get('image_id')}"
        raise RecordError(where, "image_id", reason)
    field_name = f"instances annotation {ann.get('id')}.bbox"
    box = coco_box_to_xyxy(ann.get("bbox"), image.get("width"), image.get("height"), where, field_name)
    return image, box, _sentences(ref, where)


def _record(dataset: str, rid: str, image: str, sentence: str, box: tuple[float, ...], meta: dict, where: str):
    return build_record(
        {
            "id": rid,
            "task": "rec",
            "images": [image],
            "question": QUESTION.format(sentence=sentence),
            "boxes": [{"image_index": 0, "bbox": list(box), "space": Space.PIXELS.value}],
            "split": "train",
            "source": dataset,
            "meta": meta,
        },
        where,
    )


def load_refcoco(
    refs_path: str | Path,
    instances_path: str | Path,
    image_root: str | Path,
    dataset: str = "refcoco",
    splits: Iterable[str] = ("train",),
    per: str = "ref",
    allow_pickle: bool = False,
) -> SourceReport:
    """Single-image grounding records, boxes as ``[x1, y1, x2, y2]`` pixels of the COCO image.

    ``image_root``: the folder of the COCO train2014 images. ``dataset`` names the source and prefixes
    ids (RefCOCO and RefCOCO+ share ref ids and images). ``per``: "ref" or "sentence".
    """
    if per not in ("ref", "sentence"):
        raise ValueError(f"per must be 'ref' or 'sentence', got {per!r}")
    refs = read_refs(refs_path, allow_pickle)
    images, _, anns_list = coco_tables(instances_path)
    anns = {a["id"]: a for a in anns_list if isinstance(a, dict) and "id" in a}
    wanted = set(splits)
    report = SourceReport()
    for i, ref in enumerate(refs):
        where = f"{refs_path}: ref {i}" + (f" (ref_id {ref.get('ref_id')})" if isinstance(ref, dict) else "")
        try:
            if isinstance(ref, dict) and ref.get("split") not in wanted:
                report.skip(f"split not selected: {ref.get('split')}")
                continue
            image, box, sentences = _ref_parts(ref, images, anns, where)
            path = image_path(image_root, image.get("file_name"), where, f"instances image {image.get('id')}.file_name")
            meta = {key: ref.get(key) for key in ("ref_id", "ann_id", "image_id", "split")}
            base = f"{dataset}-{ref.get('ref_id', i)}"
            if per == "ref":
                meta["other_sentences"] = sentences[1:]
                report.records.append(_record(dataset, base, path, sentences[0], box, meta, where))
            else:
                for k, sentence in enumerate(sentences):
                    report.records.append(_record(dataset, f"{base}-s{k}", path, sentence, box, meta, where))
        except RecordError as exc:
            report.reject(exc, refs_path)
    return report
