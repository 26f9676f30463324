"""MC-Bench: a text prompt over an image pair; every instance it refers to, in either image.

Official protocol (read): XuYunqiu/MC-Bench ``eval_mc_bench.py`` ``mcbench_eval``.

- AP50 ("instance level"): pycocotools COCOeval on bbox; predicted groups are first re-mapped to GT
  groups, for the images ``getImgIds(catIds=getCatIds('group 2'))``, by the permutation of GT groups
  with the best mean Hungarian-matched IoU over the pair (``scipy.optimize.linear_sum_assignment``;
  scipy is not a migrl dependency, so an exact max-sum matching by dynamic programming stands in);
  then precision at IoU 0.5, all areas, maxDets 100, averaged over recall points > -1, per group,
  weighted by the group's GT count.
- Accuracy ("image level"): images taken two by two in file order; a pair is right when, for both
  images, "has a predicted box" equals "has a GT box". No IoU.

The paper's Table 4: its style columns (Comparison / Reasoning / Referring, ``text_style`` of
``mc-bench_v0.2_val.json``) are AP50, on its AP50 column's scale (weighted by the file's style counts,
810 / 844 / 346 pairs, their mean is within 1.9 points of that column on all nine rows). So ``tasks``
holds, per style, the AP50 above computed on that style's pairs alone (as if they were the whole file),
and ``avg`` (= ``ap50``) the AP50 of all pairs, the AP50 column itself (no mean of the styles: AP is not
additive over pairs). The accuracy is kept beside them (``accuracy``, ``accuracy_by_style``).

Known bugs, reproduced in ``tasks`` / ``ap50`` and fixed in ``bugs_fixed`` (its ``avg`` = ``ap50_bugs_fixed``):
1. pycocotools stores the matched GT id in ``dtm`` and counts ``dtm == 0`` as unmatched, so annotation
   id 0 can never be a true positive. Fixed: GT annotation ids renumbered 1..N.
2. The re-mapping reloads the predictions from disk inside its loop, so only the last image's mapping
   survives. Fixed: every pair's mapping is kept (each pair once).
   Also fixed there: the mapping is applied in place one group at a time, so ``(2, 1)`` sends group 1
   to 2 and then both to 1; the fixed figure applies it at once. (migrl's predictions carry one group,
   so this never triggers for them.)
Where no image has a second group the official code stops with a NameError; both figures then use
the predictions as they are.

migrl's side: every box of the answer becomes a detection of ``group 1`` with score 1.0 on the image it
names, converted from the model's space to that image's pixels; a box naming no image cannot be placed
on a pair and is counted in ``unplaced_boxes``. The paper keeps "samples containing one instance per
image": here, pairs where each image has at most one GT box and the pair has at least one (1,339 of
2,000 in v0.2): ``protocol`` kind "paper subset"; ``subset="all"`` scores every pair, kind "official"
(records are only built for pairs with a target: a target-less pair is never asked and counts as
"nothing found", the right answer for it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from migrl.benchmarks.base import ImageSizes, build_record, protocol, read_json, result, xywh_to_xyxy
from migrl.boxes import Space, convert, parse_answer
from migrl.images import ImageError, ImageSizing
from migrl.records import LoadReport, RecordError

STYLES = ("Comparison", "Reasoning", "Referring")


# ---------------------------------------------------------------------------------------------
# Annotation files -> a COCO ground truth with pair links, and the pairs


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_box(b: Any) -> bool:
    ok = isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
    return ok and b[2] > 0 and b[3] > 0


class _Errors(list):
    """Error strings naming the file, the entry (by position and id) and the field."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = path

    def add(self, kind: str, i: int, entry: Any, field: str, reason: str) -> None:
        ident = f" (id {entry.get('id')!r})" if isinstance(entry, dict) and "id" in entry else ""
        self.append(f"{self.path}: {kind} {i}{ident}: field {field!r}: {reason}")


def _image_problem(im: Any, link: str) -> tuple[str, str] | None:
    if not isinstance(im, dict):
        return "<record>", f"expected a JSON object, got {type(im).__name__}"
    if not _is_int(im.get("id")):
        return "id", f"expected an integer, got {im.get('id')!r}"
    if not isinstance(im.get("file_name"), str) or not im["file_name"]:
        return "file_name", f"expected a path, got {im.get('file_name')!r}"
    if link not in im or isinstance(im[link], (list, dict)) or im[link] is None:
        return link, f"expected the pair's id, got {im.get(link)!r}"
    return None


def _annotation_problem(a: Any) -> tuple[str, str] | None:
    if not isinstance(a, dict):
        return "<record>", f"expected a JSON object, got {type(a).__name__}"
    for key in ("image_id", "category_id"):
        if not _is_int(a.get(key)):
            return key, f"expected an integer, got {a.get(key)!r}"
    if not _valid_box(a.get("bbox")):
        return "bbox", f"expected [x, y, w, h] with w, h > 0, got {a.get('bbox')!r}"
    return None


def _description_problem(d: Any) -> tuple[str, str] | None:
    if not isinstance(d, dict):
        return "<record>", f"expected a JSON object, got {type(d).__name__}"
    if not _is_int(d.get("id")):
        return "id", f"expected an integer, got {d.get('id')!r}"
    ids = d.get("images_id")
    if not isinstance(ids, list) or len(ids) != 2 or not all(_is_int(i) for i in ids):
        return "images_id", f"expected the ids of the pair's 2 images, got {ids!r}"  # eval_mc_bench.py: pairs only
    if not isinstance(d.get("text", ""), str):
        return "text", f"expected a string, got {type(d.get('text')).__name__}"
    return None


def _checked(entries: list[Any], kind: str, problem, errors: _Errors) -> list[tuple[int, dict[str, Any]]]:
    kept = []
    for i, entry in enumerate(entries):
        found = problem(entry)
        if found:
            errors.add(kind, i, entry, *found)
        else:
            kept.append((i, entry))
    return kept


def _v02_pairs(data: dict[str, Any], images: list[tuple[int, dict]], errors: _Errors) -> dict[int, dict[str, Any]]:
    """``mc-bench_v0.2_val.json``: a pair per description whose two images are both well formed."""
    by_id = {im["id"]: (i, im) for i, im in images}
    pairs: dict[int, dict[str, Any]] = {}
    for i, d in _checked(data["descriptions"], "description", _description_problem, errors):
        wrong = [x for x in d["images_id"] if x not in by_id or by_id[x][1]["text_id"] != d["id"]]
        if wrong:
            errors.add("description", i, d, "images_id", f"images {wrong} are missing, malformed or of another text_id")
            continue
        pairs[d["id"]] = {"text": d.get("text", ""), "style": d.get("text_style", "all"), "images": list(d["images_id"])}
    linked = {x for p in pairs.values() for x in p["images"]}
    known = {d.get("id") for d in data["descriptions"] if isinstance(d, dict)}  # a bad one is reported already
    for i, im in images:
        if im["id"] in linked:
            continue
        if im["text_id"] in pairs:
            errors.add("image", i, im, "text_id", f"description {im['text_id']!r} does not list image {im['id']!r}")
        elif im["text_id"] not in known:
            errors.add("image", i, im, "text_id", f"no description with id {im['text_id']!r}")
    return pairs


def _coco_pairs(images: list[tuple[int, dict]], errors: _Errors) -> dict[int, dict[str, Any]]:
    """``MC-Bench_coco_format.json``: images grouped by ``pair_id``; a pair needs exactly two."""
    pairs: dict[int, dict[str, Any]] = {}
    first: dict[Any, tuple[int, dict]] = {}
    for i, im in sorted(images, key=lambda e: e[1].get("id_in_pair", 0) if _is_int(e[1].get("id_in_pair")) else 0):
        entry = pairs.setdefault(im["pair_id"], {"text": im.get("description", ""), "style": "all", "images": []})
        entry["images"].append(im["id"])
        first.setdefault(im["pair_id"], (i, im))
    for pid in [p for p, e in pairs.items() if len(e["images"]) != 2]:
        i, im = first[pid]
        errors.add("image", i, im, "pair_id", f"pair {pid!r} has {len(pairs[pid]['images'])} images, expected 2")
        del pairs[pid]
    return pairs


def ground_truth(data: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]], list[str]]:
    """The scorer's COCO dict (images carry ``pair_image_id``), ``{pair id: {text, style, image ids}}``, errors.

    Reads ``MC-Bench_coco_format.json`` (no styles) or ``mc-bench_v0.2_val.json`` (``descriptions``). A
    malformed image, description, annotation or category is left out with an error naming the file, the
    entry and the field, and its pair goes with it (the official script would stop on it); the rest load.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: field {key!r}: expected a list (COCO-like MC-Bench annotations)")
    v02 = isinstance(data.get("descriptions"), list)
    errors = _Errors(path)
    images = _checked(data["images"], "image", lambda im: _image_problem(im, "text_id" if v02 else "pair_id"), errors)
    pairs = _v02_pairs(data, images, errors) if v02 else _coco_pairs(images, errors)
    partner = {a: b for p in pairs.values() for a, b in (p["images"], p["images"][::-1])}
    pair_of = {x: pid for pid, p in pairs.items() for x in p["images"]}
    kept_images = [
        {**im, "pair_id": pair_of[im["id"]], "pair_image_id": partner[im["id"]]} if v02 else {**im, "pair_image_id": partner[im["id"]]}
        for _, im in images if im["id"] in partner
    ]
    all_image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    annotations = []
    for i, a in _checked(data["annotations"], "annotation", _annotation_problem, errors):
        if a["image_id"] not in all_image_ids:
            errors.add("annotation", i, a, "image_id", f"no image with id {a['image_id']!r}")
        elif a["image_id"] in partner:
            # pycocotools reads "area" (area ranges) and the re-mapping reads "iscrowd"; the official
            # script raises without them. w*h and 0 are what COCO files carry for boxes.
            annotations.append({"area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0, **a})
    categories = [c for _, c in _checked(data["categories"], "category", _category_problem, errors)]
    return {"images": kept_images, "annotations": annotations, "categories": categories}, pairs, list(errors)


def _category_problem(c: Any) -> tuple[str, str] | None:
    if not isinstance(c, dict):
        return "<record>", f"expected a JSON object, got {type(c).__name__}"
    if not _is_int(c.get("id")):
        return "id", f"expected an integer, got {c.get('id')!r}"
    if not isinstance(c.get("name"), str):
        return "name", f"expected the group name ('group N'), got {c.get('name')!r}"
    return None


def paper_pairs(gt: dict[str, Any], pairs: dict[int, dict[str, Any]]) -> set[int]:
    """Pairs where each image has at most one GT box and the pair has at least one."""
    per_image: dict[int, int] = {}
    for ann in gt["annotations"]:
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    return {
        pid for pid, p in pairs.items()
        if all(per_image.get(i, 0) <= 1 for i in p["images"]) and any(per_image.get(i, 0) for i in p["images"])
    }


def restrict(gt: dict[str, Any], pairs: dict[int, dict[str, Any]], keep: set[int]) -> dict[str, Any]:
    images = {i for pid in keep for i in pairs[pid]["images"]}
    return {
        "images": [im for im in gt["images"] if im["id"] in images],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in images],
        "categories": gt["categories"],
    }


def _read(data_path: str | Path, subset: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]], list[str]]:
    data = read_json(data_path)
    if not isinstance(data, dict):
        raise ValueError(f"{data_path}: expected a JSON object with images, annotations and categories")
    gt, pairs, errors = ground_truth(data, data_path)
    keep = paper_pairs(gt, pairs) if subset == "paper" else set(pairs)
    return restrict(gt, pairs, keep), {pid: pairs[pid] for pid in sorted(keep)}, errors


def load(data_path: str | Path, image_root: str | Path | None = None, subset: str = "paper") -> LoadReport:
    """One record per pair with a target (id = pair id = ``text_id``), boxes in pixels (xyxy)."""
    report = LoadReport()
    try:
        gt, pairs, errors = _read(data_path, subset)
    except ValueError as exc:
        report.errors.append(f"{data_path}: cannot read MC-Bench annotations: {exc}")
        report.source = RecordError(str(data_path), "<file>", f"cannot read MC-Bench annotations: {exc}")
        return report
    report.errors.extend(errors)
    report.source = (gt, pairs, list(errors), subset)  # the scorer's: pairs without a target count too
    files = {im["id"]: im.get("file_name") for im in gt["images"]}
    anns_of: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        anns_of.setdefault(ann["image_id"], []).append(ann)
    for pid, pair in pairs.items():
        where = f"{data_path}: pair {pid}"
        boxes = [
            {"image_index": k, "bbox": xywh_to_xyxy(a["bbox"]), "space": "pixels"}
            for k, image_id in enumerate(pair["images"]) for a in anns_of.get(image_id, [])
        ]
        if not boxes:
            continue  # no target: nothing for a grounding record to hold; the scorer still counts it
        raw = {
            "id": str(pid), "task": pair["style"], "images": [files.get(i) for i in pair["images"]],
            "question": pair["text"], "boxes": boxes, "domain": "ood", "source": "mc-bench",
            "meta": {"coco_image_ids": pair["images"]},
        }
        build_record(raw, where, report)
    return report


# ---------------------------------------------------------------------------------------------
# Model text -> COCO detections


def detections(
    pairs: dict[int, dict[str, Any]], files: dict[int, str], predictions: dict[str, str], coords: Space,
    sizes: ImageSizes, sizing: ImageSizing, errors: list[str],
) -> tuple[list[dict[str, Any]], int]:
    dets: list[dict[str, Any]] = []
    unplaced = 0
    for pid, pair in pairs.items():
        text = predictions.get(str(pid))
        if text is None:
            continue
        for box in parse_answer(text).boxes:
            if box.image_index is None or not 0 <= box.image_index < len(pair["images"]):
                unplaced += 1
                continue
            image_id = pair["images"][box.image_index]
            try:
                x1, y1, x2, y2 = convert(box.bbox, coords, Space.PIXELS, sizes(files[image_id]), sizing)
            except ImageError as exc:
                errors.append(f"pair {pid}: {exc}")
                continue
            dets.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0})
    return dets, unplaced


# ---------------------------------------------------------------------------------------------
# mcbench_eval, instance level


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _coco(gt: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    _quiet(coco.createIndex)
    return coco


def _max_matching(ious: np.ndarray) -> list[float]:
    """Values of a max-sum one-to-one matching of size min(rows, cols), as linear_sum_assignment(-ious)."""
    m = ious if ious.shape[0] <= ious.shape[1] else ious.T
    rows = m.shape[0]
    best: dict[int, tuple[float, list[float]]] = {0: (0.0, [])}
    for j in range(m.shape[1]):
        step = dict(best)
        for used, (total, values) in best.items():
            for i in range(rows):
                if not used >> i & 1:
                    key, s = used | 1 << i, total + float(m[i, j])
                    if key not in step or s > step[key][0]:
                        step[key] = (s, values + [float(m[i, j])])
        best = step
    return best[(1 << rows) - 1][1]


def _best_permutation(coco: COCO, pred: COCO, ev: COCOeval, image: int, pair: int) -> tuple[int, ...]:
    gt_cats = list({a["category_id"] for i in (image, pair) for a in coco.loadAnns(coco.getAnnIds(imgIds=i))})
    dt_groups = list({a["category_id"] for i in (image, pair) for a in pred.loadAnns(pred.getAnnIds(imgIds=i))})
    perms = list(itertools.permutations(gt_cats, len(dt_groups)))
    scores = []
    for perm in perms:
        matched: list[float] = []
        for group_id, gt_cat in enumerate(perm, start=1):  # official: predicted groups taken as 1..k
            for i in (image, pair):
                dt, gt = ev._dts.get((i, group_id), []), ev._gts.get((i, gt_cat), [])
                if dt:
                    ious = mask_utils.iou([d["bbox"] for d in dt], [g["bbox"] for g in gt], [int(g["iscrowd"]) for g in gt])
                    if len(ious) > 0:
                        matched += _max_matching(np.asarray(ious))
        scores.append(sum(matched) / len(matched) if matched else 0.0)
    return perms[scores.index(max(scores))] if scores else ()


def _regroup(coco: COCO, dets: list[dict[str, Any]], fixed: bool) -> list[dict[str, Any]]:
    pred = _quiet(coco.loadRes, copy.deepcopy(dets))
    ev = COCOeval(coco, pred, "bbox")
    _quiet(ev.evaluate)
    targets = coco.getImgIds(catIds=coco.getCatIds("group 2"))
    out = copy.deepcopy(dets)
    done: set[frozenset[int]] = set()
    for image in targets:
        pair = coco.loadImgs(image)[0]["pair_image_id"]
        perm = _best_permutation(coco, pred, ev, image, pair)
        if not fixed:  # bug 2: a fresh copy each time, so only the last mapping survives
            out = copy.deepcopy(dets)
            for old, new in enumerate(perm, start=1):
                for d in out:
                    if d["category_id"] == old and d["image_id"] in (image, pair):
                        d["category_id"] = new
        elif frozenset((image, pair)) not in done:
            done.add(frozenset((image, pair)))
            mapping = dict(enumerate(perm, start=1))
            for d, orig in zip(out, dets):
                if d["image_id"] in (image, pair):
                    d["category_id"] = mapping.get(orig["category_id"], orig["category_id"])
    return out


@dataclass(frozen=True)
class Ap50:
    """One ``mcbench_eval(eval_type='instance')`` figure: the weighted AP50 (0..1), the detections it
    counts as true positives at IoU 0.5 (``dtm != 0``, as ``accumulate`` counts them) and the GT boxes."""

    ap: float
    true_positives: int
    gt_boxes: int


def _final_eval(coco: COCO, dets: list[dict[str, Any]], fixed: bool) -> COCOeval:
    ev = COCOeval(coco, _quiet(coco.loadRes, _regroup(coco, dets, fixed)), "bbox")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    return ev


def _true_positives(ev: COCOeval) -> int:
    """Detections matched at IoU 0.5, area 'all', maxDets 100; a match to GT id 0 is none (bug 1), as in AP."""
    all_area = ev.params.areaRng[0]
    return int(sum(
        np.sum((e["dtMatches"][0] != 0) & ~e["dtIgnore"][0].astype(bool))
        for e in ev.evalImgs if e is not None and e["aRng"] == all_area
    ))


def instance_ap50(gt: dict[str, Any], dets: list[dict[str, Any]], fixed: bool) -> Ap50:
    """``mcbench_eval(eval_type='instance')``; ``fixed`` renumbers GT ids and keeps every mapping."""
    if fixed:
        gt = {**gt, "annotations": [{**a, "id": k + 1} for k, a in enumerate(gt["annotations"])]}
    coco = _coco(gt)
    total_gt = len(coco.getAnnIds())
    if not dets or not total_gt:
        return Ap50(0.0, 0, total_gt)  # the official code fails on an empty result list and divides by zero without GT
    ev = _final_eval(coco, dets, fixed)
    ap = 0.0
    for k, cat in enumerate(coco.getCatIds()):
        p = ev.eval["precision"][0, :, k, 0, 2]  # IoU 0.5, every recall point, area 'all', maxDets 100
        valid = p[p > -1]
        if valid.size:
            ap += len(coco.getAnnIds(catIds=[cat])) / total_gt * float(np.mean(valid))
    return Ap50(ap, _true_positives(ev), total_gt)


# ---------------------------------------------------------------------------------------------
# mcbench_eval, image level


def pair_accuracy(
    gt: dict[str, Any], pairs: dict[int, dict[str, Any]], dets: list[dict[str, Any]]
) -> tuple[dict[str, int], dict[str, int]]:
    """Hits and totals per style; images two by two in file order, as the official loop."""
    has_gt = {a["image_id"] for a in gt["annotations"]}
    has_dt = {d["image_id"] for d in dets}
    style = {i: p["style"] for p in pairs.values() for i in p["images"]}
    ids = [im["id"] for im in gt["images"]]
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for a, b in zip(ids[0::2], ids[1::2]):
        s = style[a]
        totals[s] = totals.get(s, 0) + 1
        hits[s] = hits.get(s, 0) + ((a in has_gt) == (a in has_dt) and (b in has_gt) == (b in has_dt))
    return hits, totals


# ---------------------------------------------------------------------------------------------
# The result: AP50 per prompt style (Table 4's columns) and over all pairs (its AP50 column)

SUBSETS = ("paper", "all")


def _percent(x: float) -> float:
    return round(100.0 * x, 2)


def ap50_figures(gt: dict[str, Any], pairs: dict[int, dict[str, Any]], dets: list[dict[str, Any]], fixed: bool) -> dict[str, Any]:
    """``tasks``: AP50 of each style's pairs, scored as a file of their own; ``avg``: AP50 of all pairs;
    ``counts``: [true positives, GT boxes] per style (AP50 has no hits out of items)."""
    tasks: dict[str, float] = {}
    counts: dict[str, list[int]] = {}
    for style in sorted({p["style"] for p in pairs.values()}):
        keep = {pid for pid, p in pairs.items() if p["style"] == style}
        part = restrict(gt, pairs, keep)
        images = {im["id"] for im in part["images"]}
        figure = instance_ap50(part, [d for d in dets if d["image_id"] in images], fixed)
        tasks[style] = _percent(figure.ap)
        counts[style] = [figure.true_positives, figure.gt_boxes]
    return {"tasks": tasks, "avg": _percent(instance_ap50(gt, dets, fixed).ap), "counts": counts}


_SELECTION = {
    "paper": "the pairs with at most one GT box per image and at least one in the pair (the paper: 'samples "
             "containing one instance per image')",
    "all": "every pair of the file",
}
_RULE = ("eval_mc_bench.py mcbench_eval, instance level (pycocotools AP at IoU 0.5 per target group, weighted by "
         "the group's GT count, after the official group re-mapping)")
_FIXED = "annotation id 0 able to match (GT ids renumbered 1..N) and every pair's group re-mapping kept"


def _protocols(subset: str, pairs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    where = _SELECTION[subset]
    main = protocol(
        "paper subset" if subset == "paper" else "official",
        f"{_RULE}, with its two bugs, on {where}; tasks: each prompt style's pairs scored alone (Table 4's style "
        f"columns); avg = ap50: all of them (Table 4's AP50 column); beside it 'bugs_fixed' ({_FIXED})",
        pairs,
    )
    fixed = protocol("fixed", f"as 'protocol', with {_FIXED}", pairs)
    return main, fixed


def score(
    loaded: LoadReport,
    predictions: dict[str, str],
    coords: Space,
    root: Path,
    sizing: ImageSizing | None = None,
    subset: str = "paper",
) -> dict[str, Any]:
    """AP50 per prompt style in ``tasks`` and over all pairs in ``avg`` (= ``ap50``), in percent, on the paper's
    pairs (``subset="all"``: every pair); the bug-fixed figures under ``bugs_fixed`` (and ``ap50_bugs_fixed``);
    the image-level accuracy in ``accuracy`` and ``accuracy_by_style``."""
    if subset not in SUBSETS:
        raise ValueError(f"MC-Bench subset {subset!r}: expected one of {SUBSETS}")
    if isinstance(loaded.source, RecordError):  # the file did not read: no denominator to score against
        raise loaded.source
    gt, pairs, errors, loaded_subset = loaded.source
    if loaded_subset != subset:
        raise ValueError(f"MC-Bench: the pairs were loaded for subset {loaded_subset!r}, not {subset!r}")
    errors = list(errors)
    files = {im["id"]: im["file_name"] for im in gt["images"]}
    dets, unplaced = detections(pairs, files, predictions, coords, ImageSizes(root), sizing, errors)
    official = ap50_figures(gt, pairs, dets, fixed=False)
    fixed = ap50_figures(gt, pairs, dets, fixed=True)
    main_protocol, fixed_protocol = _protocols(subset, len(pairs))
    out: dict[str, Any] = {
        **official, "id_avg": official["avg"], "ood_avg": None,  # no in-/out-of-domain split: id_avg is avg
        "missing_predictions": sum(str(pid) not in predictions for pid in pairs),
    }
    if errors:
        out["errors"] = errors
    hits, totals = pair_accuracy(gt, pairs, dets)
    accuracy = result(hits, totals, 0)
    out.update(
        protocol=main_protocol, ap50=official["avg"], ap50_bugs_fixed=fixed["avg"],
        bugs_fixed={**fixed, "protocol": fixed_protocol},
        accuracy=_percent(sum(hits.values()) / max(sum(totals.values()), 1)),
        accuracy_by_style=accuracy["tasks"], accuracy_counts=accuracy["counts"],
        pairs=len(pairs), subset=subset, unplaced_boxes=unplaced,
    )
    return out
