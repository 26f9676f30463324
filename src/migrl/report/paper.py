"""The paper's result tables as data, so a report can put its figures beside ours.

Transcribed from the paper's text (Tables 2-10; Table 1 is dataset statistics, not results).
Columns are named by migrl's keys -- the task names of our scores (``tasks``) or the summary keys
(``avg``, ``id_avg``, ``ood_avg``, ``ap50``, ``sem``, ``spa``) -- and carry the paper's header as a
label. Values are percentages as printed; the paper's "*" (human evaluation on a 20% sample) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIG_BENCH = "mig-bench"

# MIG-Bench's tasks in the paper's column order (OT MV Region Refer GG Reason Co-Re Static Robust Common).
MIG_COLUMNS = (
    "object_tracking", "multi_view", "region", "refer_grounding", "group_grounding", "reasoning",
    "correspondence", "diff", "view_diff", "common_object",
)
MIG_LABELS = ("OT", "MV", "Region", "Refer", "GG", "Reason", "Co-Re", "Static", "Robust", "Common")


@dataclass(frozen=True)
class PaperTable:
    """One table: rows of figures under columns, each column belonging to one migrl benchmark."""

    name: str  # "Table 2"
    title: str
    columns: tuple[str, ...]  # migrl keys, unique in the table ("benchmark:task" where a table spans several)
    labels: tuple[str, ...]  # the paper's headers
    benchmarks: tuple[str, ...]  # per column: the migrl benchmark it is a figure of ("" for none)
    rows: dict[str, tuple[float, ...]]  # model -> one value per column
    averages: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column stating a mean -> its columns
    ablation: bool = False  # ablations stay out of the comparison beside our runs

    def __post_init__(self) -> None:
        n = len(self.columns)
        if len(self.labels) != n or len(self.benchmarks) != n:
            raise ValueError(f"{self.name}: {n} columns but {len(self.labels)} labels / {len(self.benchmarks)} benchmarks")
        for model, values in self.rows.items():
            if len(values) != n:
                raise ValueError(f"{self.name}: row {model!r} has {len(values)} values for {n} columns")

    def row(self, model: str) -> dict[str, float]:
        return dict(zip(self.columns, self.rows[model]))


def _table(name: str, title: str, benchmark: str, columns: tuple[str, ...], labels: tuple[str, ...],
           rows: dict[str, tuple[float, ...]], **kw) -> PaperTable:
    return PaperTable(name, title, columns, labels, (benchmark,) * len(columns), rows, **kw)


# Table 2: MIG-Bench, Acc@0.5 per task; AVG is the mean of the ten tasks.
TABLE_2 = _table(
    "Table 2", "MIG-Bench per task", MIG_BENCH, MIG_COLUMNS + ("avg",), MIG_LABELS + ("AVG",),
    {
        "Human": (100.00, 96.88, 100.00, 98.99, 91.06, 92.08, 97.44, 99.50, 97.87, 98.00, 97.18),
        "LLaVA-OV-72B": (12.91, 7.64, 2.14, 17.83, 21.60, 11.88, 8.55, 13.26, 5.34, 26.84, 13.65),
        "InternVL2-76B": (30.73, 20.83, 5.74, 46.46, 41.28, 32.67, 26.50, 15.91, 10.64, 36.40, 26.72),
        "InternVL3-78B": (27.08, 14.58, 10.44, 50.51, 38.08, 45.54, 17.09, 10.04, 9.57, 24.12, 24.71),
        "Qwen2-VL-72B": (26.73, 22.57, 18.62, 33.33, 62.53, 50.50, 17.09, 46.12, 46.81, 64.46, 38.88),
        "Qwen2.5-VL-72B": (34.32, 29.17, 8.31, 62.63, 59.92, 66.34, 41.03, 43.75, 46.81, 69.98, 46.23),
        "Mantis": (12.18, 2.08, 1.00, 1.01, 10.02, 0.00, 0.85, 1.52, 0.00, 3.31, 3.20),
        "LLaVA-OV-7B": (0.18, 1.04, 1.08, 9.09, 15.43, 6.93, 0.85, 6.06, 3.19, 3.43, 4.73),
        "Minicpm2.6": (9.82, 6.25, 1.75, 11.11, 10.02, 2.97, 2.56, 14.58, 2.13, 14.34, 7.55),
        "mPLUG-Owl3": (8.55, 7.64, 2.41, 7.07, 22.85, 9.09, 5.98, 18.56, 6.38, 34.93, 12.35),
        "InternVL2-8B": (20.73, 9.72, 3.49, 28.28, 30.26, 17.82, 9.40, 6.92, 7.45, 25.49, 15.96),
        "InternVL3-8B": (14.84, 6.94, 12.13, 7.07, 34.87, 16.83, 2.56, 23.67, 14.89, 47.99, 18.18),
        "Qwen2-VL-7B": (20.73, 11.81, 25.95, 23.23, 58.52, 48.51, 11.97, 27.84, 38.30, 19.36, 28.62),
        "Qwen2.5-VL-7B": (15.23, 5.56, 4.07, 13.13, 32.26, 3.96, 2.56, 28.03, 5.32, 21.81, 13.19),
        "Qwen2.5-VL-7B + SFT": (26.59, 35.07, 39.32, 79.80, 59.72, 53.47, 23.93, 53.22, 44.68, 82.11, 49.79),
        "Qwen2.5-VL-7B + CoT-SFT": (46.14, 34.03, 28.93, 80.81, 63.93, 66.34, 34.19, 47.35, 45.74, 76.59, 52.41),
        "Ours": (63.41, 38.54, 51.45, 82.83, 69.54, 67.33, 37.61, 51.52, 43.62, 82.48, 58.83),
    },
    averages={"avg": MIG_COLUMNS},
)

# Table 3: MIG-Bench in-domain (static diff, common object, region, refer) vs out-of-domain (the other six).
TABLE_3 = _table(
    "Table 3", "MIG-Bench in-domain vs out-of-domain", MIG_BENCH, ("id_avg", "ood_avg", "avg"),
    ("In-Domain", "Out-of-Domain", "AVG"),
    {
        "Qwen2.5-VL-72B": (46.17, 46.27, 46.23),
        "Qwen2.5-VL-7B": (16.76, 10.82, 13.19),
        "Qwen2.5-VL-7B + SFT": (63.61, 40.58, 49.79),
        "Qwen2.5-VL-7B + CoT-SFT": (58.42, 48.40, 52.41),
        "Ours": (67.07, 53.34, 58.83),
    },
)

# Table 4: MC-Bench, AP50 per prompt style (our ``tasks``) and AP50 over all pairs (our ``ap50``); AP50 is no mean.
TABLE_4 = _table(
    "Table 4", "MC-Bench", "mc-bench", ("Comparison", "Reasoning", "Referring", "ap50"),
    ("Comparison", "Reasoning", "Referring", "AP50"),
    {
        "InternVL2-76B": (42.66, 35.91, 52.78, 40.01),
        "InternVL3-78B": (45.54, 43.11, 46.23, 43.96),
        "Qwen2.5-VL-72B": (71.79, 57.95, 71.57, 64.74),
        "InternVL2-8B": (33.90, 24.89, 34.21, 29.28),
        "InternVL3-8B": (57.19, 37.60, 59.05, 47.35),
        "Qwen2.5-VL-7B": (29.61, 20.55, 24.23, 24.37),
        "Qwen2.5-VL-7B + SFT": (60.37, 45.02, 48.42, 52.12),
        "Qwen2.5-VL-7B + CoT-SFT": (64.66, 45.43, 60.89, 55.10),
        "Ours": (68.93, 49.37, 59.49, 58.49),
    },
)

# Table 5: zero-shot reasoning grounding; each column is a task of another migrl benchmark (revos has
# one task, lisa and ref-l4 name tasks by split), keyed "benchmark:task"; AVG is the mean of the five.
TABLE_5 = PaperTable(
    "Table 5", "Zero-shot reasoning grounding",
    ("revos", "lisa:val", "lisa:test", "ref-l4:val", "ref-l4:test", "avg"),
    ("ReVOS", "LISA(val)", "LISA(test)", "Ref-L4(val)", "Ref-L4(test)", "AVG"),
    ("revos", "lisa", "lisa", "ref-l4", "ref-l4", ""),
    {
        "Qwen2.5-VL-72B": (48.78, 53.57, 46.85, 74.85, 76.71, 60.15),
        "Qwen2.5-VL-7B": (30.07, 56.63, 53.54, 58.57, 62.76, 52.31),
        "Qwen2.5-VL-7B + SFT": (46.33, 55.10, 54.18, 68.92, 69.14, 58.73),
        "Ours": (49.16, 62.76, 56.11, 74.78, 75.74, 63.71),
    },
    averages={"avg": ("revos", "lisa:val", "lisa:test", "ref-l4:val", "ref-l4:test")},
)

# Table 6: BLINK, the seven subtasks (our task names); AVG is their mean.
BLINK_COLUMNS = (
    "Counting", "Forensic_Detection", "IQ_Test", "Jigsaw", "Multi-view_Reasoning", "Visual_Similarity",
    "Visual_Correspondence",
)
TABLE_6 = _table(
    "Table 6", "BLINK", "blink", BLINK_COLUMNS + ("avg",),
    ("Counting", "Forensic", "IQ", "Jigsaw", "Multi-view", "Similarity", "Vis. Corr.", "AVG"),
    {
        "GPT4o": (49.17, 79.55, 31.33, 55.33, 59.40, 72.59, 75.00, 60.34),
        "Qwen2.5-VL-7B": (67.50, 45.45, 27.33, 63.33, 51.88, 82.96, 68.02, 58.07),
        "Qwen2.5-VL-7B + SFT": (63.33, 32.58, 26.67, 72.67, 48.12, 90.37, 62.21, 56.56),
        "Ours": (70.00, 47.73, 32.00, 74.67, 49.62, 84.44, 69.77, 61.18),
    },
    averages={"avg": BLINK_COLUMNS},
)

# Table 7: ODinW, five subsets (our tasks carry the paper's short names); AVG is their mean.
ODINW_COLUMNS = ("OP", "PV", "WS", "OPV", "Vec")
TABLE_7 = _table(
    "Table 7", "ODinW object detection", "odinw", ODINW_COLUMNS + ("avg",), ODINW_COLUMNS + ("AVG",),
    {
        "Qwen2.5-VL-72B": (19.36, 90.56, 38.78, 16.85, 61.11, 45.33),
        "Qwen2.5-VL-7B": (18.52, 90.56, 26.53, 15.59, 83.33, 46.91),
        "Qwen2.5-VL-7B + SFT": (19.22, 91.26, 34.69, 15.05, 88.89, 49.82),
        "Ours": (20.61, 91.73, 45.58, 18.37, 94.44, 54.15),
    },
    averages={"avg": ODINW_COLUMNS},
)

# Table 8: MMIU, nineteen tasks by the paper's abbreviations, then Sem and Spa (our ``sem`` / ``spa``).
# Its row of names lists MMIU's two-dimensional spatial tasks (ISTE..SOT) first, but its printed Sem / Spa
# are the means of the first ten / last nine *values* (they fit semantic-first, e.g. GPT-4o 67.8 / 41.7):
# names and values do not line up, so only Sem and Spa compare with ours, not single columns.
MMIU_COLUMNS = (
    "ISTE", "HE", "PT", "RPM", "JPS", "ICSC", "IQASC", "ITRSC", "SOT", "VGR", "STS",
    "VCor", "SC", "FC", "ER", "CR", "MIC", "VQA", "FD",
)
MMIU_SEMANTIC, MMIU_SPATIAL = MMIU_COLUMNS[:10], MMIU_COLUMNS[10:]
TABLE_8 = _table(
    "Table 8", "MMIU", "mmiu", MMIU_COLUMNS + ("sem", "spa"), MMIU_COLUMNS + ("Sem", "Spa"),
    {
        "GPT4o": (46.5, 67.8, 93.5, 61.3, 84.0, 72.6, 41.5, 42.6, 79.2, 88.8, 12.5,
                  23.5, 58.5, 88.0, 17.5, 35.0, 29.5, 55.0, 56.0, 67.8, 41.7),
        "Mantis": (31.8, 61.5, 71.0, 65.2, 65.5, 30.9, 28.1, 24.3, 59.8, 57.0, 13.5,
                   27.5, 48.0, 66.0, 13.0, 23.5, 23.0, 76.0, 50.0, 49.5, 37.8),
        "Llava-interleave": (24.8, 29.5, 57.0, 49.8, 54.5, 25.1, 26.4, 23.2, 48.8, 26.3, 15.0,
                             17.5, 47.5, 42.0, 14.0, 22.5, 21.5, 79.0, 60.5, 36.5, 35.5),
        "Qwen2.5-VL-7B": (31.0, 57.0, 80.0, 68.0, 74.0, 44.6, 33.6, 25.1, 82.8, 72.0, 13.0,
                          26.5, 55.5, 75.5, 7.0, 29.0, 23.5, 58.5, 55.5, 56.8, 37.8),
        "Qwen2.5-VL-7B + SFT": (32.5, 69.2, 87.5, 67.0, 80.0, 40.3, 28.6, 26.1, 81.2, 65.1, 12.5,
                                30.5, 54.0, 73.0, 19.5, 33.5, 29.5, 43.0, 52.5, 57.7, 38.6),
        "Ours": (39.0, 69.5, 87.0, 66.8, 72.0, 51.1, 30.4, 27.0, 82.2, 69.3, 15.0,
                 24.5, 68.0, 83.5, 19.0, 32.5, 22.0, 50.0, 49.5, 59.4, 40.4),
    },
    averages={"sem": MMIU_SEMANTIC, "spa": MMIU_SPATIAL},
)

# Table 9: ablations on MIG-Bench (CS cold start, RS rejection sampling, RL). Note "Ours-Full" has
# Region 47.89 / AVG 58.47 here but 51.45 / 58.83 in Table 2; both are transcribed as printed.
TABLE_9 = _table(
    "Table 9", "Ablations on MIG-Bench", MIG_BENCH, MIG_COLUMNS + ("avg",), MIG_LABELS + ("AVG",),
    {
        "Qwen2.5-VL-7B": (15.23, 5.56, 4.07, 13.13, 32.26, 3.96, 2.56, 28.03, 5.32, 21.81, 13.19),
        "w/o CS (RL only)": (14.77, 5.56, 11.59, 18.18, 36.07, 10.89, 3.42, 31.25, 7.45, 38.73, 17.79),
        "CoT-SFT (Full)": (44.34, 22.57, 31.93, 79.80, 61.92, 55.45, 21.37, 50.19, 40.43, 80.15, 48.82),
        "CoT-SFT (LoRA)": (46.14, 34.03, 28.93, 80.81, 63.93, 66.34, 34.19, 47.35, 45.74, 76.59, 52.41),
        "w/o RS (CS + RL)": (50.23, 34.38, 43.75, 79.80, 67.94, 67.33, 34.19, 47.16, 46.81, 80.39, 55.20),
        "Ours-Full": (63.41, 38.54, 47.89, 82.83, 69.54, 67.33, 37.61, 51.52, 43.62, 82.48, 58.47),
    },
    averages={"avg": MIG_COLUMNS}, ablation=True,
)

# Table 10: KL weight ablation on MIG-Bench. Referential = mean of the first seven tasks of Table 2,
# Spontaneous = mean of the last three, so AVG = (7 * Referential + 3 * Spontaneous) / 10, not their mean.
TABLE_10 = _table(
    "Table 10", "Ablation of the KL weight", MIG_BENCH, ("referential", "spontaneous", "avg"),
    ("Referential", "Spontaneous", "AVG"),
    {
        "w/o KL": (54.20, 57.95, 55.33),
        "beta=1e-1": (51.59, 57.15, 53.26),
        "beta=1e-2": (54.96, 57.89, 54.95),
        "beta=1e-3 (Ours)": (58.16, 59.21, 58.47),
        "beta=1e-4": (56.45, 58.86, 57.17),
        "beta=1e-5": (52.29, 56.98, 53.70),
    },
    ablation=True,
)

# Printed figures that disagree with the rest of their row (checked in tests/test_report_paper.py):
# (table, model, column) -> what the other figures give.
INCONSISTENT = {
    ("Table 2", "LLaVA-OV-72B", "avg"): "the ten tasks average 12.80, not 13.65",
    ("Table 8", "Qwen2.5-VL-7B", "spa"): "the nine spatial tasks average 38.22, not 37.8",
    ("Table 10", "beta=1e-2", "avg"): "(7 * 54.96 + 3 * 57.89) / 10 = 55.84, not 54.95",
}

TABLES = (TABLE_2, TABLE_3, TABLE_4, TABLE_5, TABLE_6, TABLE_7, TABLE_8, TABLE_9, TABLE_10)


def paper_rows(benchmark: str) -> tuple[list[tuple[str, str]], dict[str, dict[str, float]]]:
    """The paper's figures for one migrl benchmark, main tables merged (Table 2 + Table 3 for MIG-Bench).

    Returns the columns as ``(key, label)`` in the paper's order and ``{model: {key: value}}``, keys
    as our scores name them (a task, or a summary key such as ``avg``).
    """
    columns: list[tuple[str, str]] = []
    rows: dict[str, dict[str, float]] = {}
    for table in TABLES:
        if table.ablation:
            continue
        for model, values in table.rows.items():
            for key, label, bench, value in zip(table.columns, table.labels, table.benchmarks, values):
                if bench != benchmark:
                    continue
                key = key.removeprefix(f"{benchmark}:")
                if key not in dict(columns):
                    columns.append((key, label))
                rows.setdefault(model, {})[key] = value
    return columns, rows
