"""Real benchmarks: loaders of the official annotation files and official-protocol scorers.

``BENCHMARKS[name].load(data_path, image_root=None)`` gives migrl Records (LoadReport: records and
errors); ``BENCHMARKS[name].score(data_path, predictions, coords, image_root, sizing)`` gives the
MIG-Bench result contract plus the benchmark's own keys. Each module names the official code it follows.
"""

from __future__ import annotations

from pathlib import Path

from migrl.bad_records import OptionError
from migrl.benchmarks import blink, lisa, mc_bench, mmiu, odinw, ref_l4, revos
from migrl.benchmarks.base import Benchmark

BENCHMARKS: dict[str, Benchmark] = {
    "mc-bench": Benchmark("mc-bench", mc_bench.load, mc_bench.score, "XuYunqiu/MC-Bench eval_mc_bench.py mcbench_eval"),
    "lisa": Benchmark("lisa", lisa.load, lisa.score, "AMAP-ML/UniVG-R1 eval/zero_shot/lisa_evaluation/eval.py + Visual-RFT lisa_evaluation/gen_box_ann.py"),
    "ref-l4": Benchmark("ref-l4", ref_l4.load, ref_l4.score, "JierunChen/Ref-L4 ref_l4/evaluation.py RefL4Evaluator.evaluate"),
    "revos": Benchmark("revos", revos.load, revos.score, "AMAP-ML/UniVG-R1 eval/zero_shot/revos_evaluation/eval.py"),
    "odinw": Benchmark("odinw", odinw.load, odinw.score, "paper Sec. 4.1 (no official single-box scorer)"),
    "blink": Benchmark("blink", blink.load, blink.score, "zeyofu/BLINK_Benchmark eval/test_benchmark.py analyze_answer"),
    "mmiu": Benchmark("mmiu", mmiu.load, mmiu.score, "OpenGVLab/MMIU evaluate.py process_data, evaluate_correct.py"),
}


# ``--subset``: which items and tasks a figure covers. "paper" (the default everywhere) is the set the paper
# reports; the others widen it. Per benchmark: subset -> (keyword arguments of load, of score).
SUBSETS: dict[str, dict[str, tuple[dict, dict]]] = {
    "mc-bench": {"paper": ({"subset": "paper"}, {"subset": "paper"}), "all": ({"subset": "all"}, {"subset": "all"})},
    "odinw": {"paper": ({}, {"subsets": "paper"}), "all": ({}, {"subsets": "all"})},
    "mmiu": {"paper": ({}, {"tasks": "paper"}), "types": ({}, {"tasks": "types"}),
             "all": ({"paper_types": False}, {"tasks": "all"})},
    "blink": {"paper": ({"paper_subtasks": True}, {"paper_subtasks": True}),
              "all": ({"paper_subtasks": False}, {"paper_subtasks": False})},
}
PAPER_SUBSET = "paper"


def subset_kwargs(benchmark: str, subset: str = PAPER_SUBSET) -> tuple[dict, dict]:
    """(load kwargs, score kwargs) of ``subset``; OptionError for a subset the benchmark does not have."""
    choices = SUBSETS.get(benchmark, {PAPER_SUBSET: ({}, {})})
    if subset not in choices:
        raise OptionError(f"--subset {subset!r}: {benchmark} has {', '.join(sorted(choices))}")
    return choices[subset]


def _category_map_is_ref_l4s(benchmark: str) -> None:
    if benchmark != "ref-l4":
        raise OptionError(f"--category-map is Ref-L4's (its class-level average), not {benchmark!r}'s")


def check_category_map(benchmark: str, category_map: str | Path) -> None:
    """Before any generation: the option belongs to Ref-L4, and the file holds the table."""
    _category_map_is_ref_l4s(benchmark)
    try:
        ref_l4.read_category_map(category_map)
    except (OSError, ValueError, SyntaxError) as exc:
        raise OptionError(f"--category-map {category_map}: {exc}") from None


def score_benchmark(name: str, data_path, predictions, coords, image_root=None, sizing=None, category_map=None,
                    subset: str = PAPER_SUBSET) -> dict:
    """What ``migrl score --benchmark NAME`` should call; ``category_map``: Ref-L4's merge table (class
    average); ``subset``: the paper's set by default (``SUBSETS``)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    _, score_kwargs = subset_kwargs(name, subset)
    if category_map is not None:
        _category_map_is_ref_l4s(name)  # the table itself is read (and checked) by the scorer
        score_kwargs = {**score_kwargs, "category_map": category_map}
    return BENCHMARKS[name].score(data_path, predictions, coords, image_root, sizing, **score_kwargs)


def load_benchmark(name: str, data_path, image_root=None, subset: str = PAPER_SUBSET):
    """The benchmark's records for ``subset`` (what eval generates for)."""
    load_kwargs, _ = subset_kwargs(name, subset)
    return BENCHMARKS[name].load(data_path, image_root, **load_kwargs)
