"""The benchmark registry: one entry per benchmark, ``get(name)``; code outside it asks an entry, never a name.

``get(name).load(data_path, image_root)`` gives migrl Records (a LoadReport: records, errors and ``source``,
what the scorer needs beyond them); ``get(name).score(loaded, predictions, coords, root, sizing)`` gives the
MIG-Bench result contract plus the benchmark's own keys, from what was loaded (the file is read once).
``score_file`` does both (``migrl score``). Each module names the official code it follows. To add a
benchmark: a module with ``load`` and ``score`` beside these, and its entry below. Modules are imported when
an entry is first used, so listing the names (``migrl --help``) costs nothing.
"""

from __future__ import annotations

from migrl.bad_records import OptionError
from migrl.benchmarks.base import PAPER_SUBSET, Benchmark

_ENTRIES = (
    Benchmark("records", "records", "migrl's own Acc@0.5 (no official code: migrl's records)",
              keeps_denominator=False, checks_boxes=True, id_ood_split=True, aliases=("world",)),
    Benchmark("mig-bench", "mig_bench", "Michael4933/Migician eval/utils.py extract_bbox, calculate_iou",
              id_ood_split=True, official_reader="official_reader",
              paper_note="Paper: Table 2 (per task, AVG) and Table 3 (in-domain / out-of-domain)."),
    Benchmark("mc-bench", "mc_bench", "XuYunqiu/MC-Bench eval_mc_bench.py mcbench_eval",
              subsets={"paper": ({"subset": "paper"}, {"subset": "paper"}), "all": ({"subset": "all"}, {"subset": "all"})},
              score_title="AP50 per prompt style (%, eval_mc_bench.py; each style's pairs scored alone; counts: "
                          "true positives / GT boxes)",
              every_box=True, extra_columns=(("ap50_bugs_fixed", "AP50, 2 bugs fixed"),),
              paper_note="The paper's figures as printed (tables named in migrl/report/paper.py). AP50 is the official "
                         "eval_mc_bench.py figure; 'AP50, 2 bugs fixed' is migrl's with annotation id 0 able to match and "
                         "every pair's group re-mapping kept (the official keeps only the last)."),
    Benchmark("lisa", "lisa",
              "AMAP-ML/UniVG-R1 eval/zero_shot/lisa_evaluation/eval.py + Visual-RFT lisa_evaluation/gen_box_ann.py"),
    Benchmark("ref-l4", "ref_l4", "JierunChen/Ref-L4 ref_l4/evaluation.py RefL4Evaluator.evaluate",
              score_title="Scores per split (Acc@0.5 with IoU > 0.5, %)", category_map=True),
    Benchmark("revos", "revos", "AMAP-ML/UniVG-R1 eval/zero_shot/revos_evaluation/eval.py"),
    Benchmark("odinw", "odinw", "paper Sec. 4.1 (no official single-box scorer)",
              subsets={"paper": ({}, {"subsets": "paper"}), "all": ({}, {"subsets": "all"})}),
    Benchmark("blink", "blink", "zeyofu/BLINK_Benchmark eval/test_benchmark.py analyze_answer",
              subsets={"paper": ({"paper_subtasks": True}, {"paper_subtasks": True}),
                       "all": ({"paper_subtasks": False}, {"paper_subtasks": False})},
              score_title="Accuracy per subtask (%, rule-only)"),
    Benchmark("mmiu", "mmiu", "OpenGVLab/MMIU evaluate.py process_data, evaluate_correct.py",
              subsets={"paper": ({}, {"tasks": "paper"}), "types": ({}, {"tasks": "types"}),
                       "all": ({"paper_types": False}, {"tasks": "all"})},
              score_title="Accuracy per task (%, rule-only)",
              paper_note="The paper's figures as printed (tables named in migrl/report/paper.py). Only Sem and Spa "
                         "compare with the paper: its Table 8 prints the task names in another order than its values."),
)
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in _ENTRIES}
_ALIASES = {alias: b.name for b in _ENTRIES for alias in b.aliases}
NAMES = tuple(BENCHMARKS) + tuple(_ALIASES)  # what --benchmark accepts


def get(name: str) -> Benchmark:
    """The entry of ``name`` (or of its alias); OptionError naming the choices for any other."""
    entry = BENCHMARKS.get(_ALIASES.get(name, name))
    if entry is None:
        raise OptionError(f"--benchmark {name!r}: unknown; one of {', '.join(NAMES)}")
    return entry


__all__ = ["BENCHMARKS", "NAMES", "PAPER_SUBSET", "Benchmark", "get"]
