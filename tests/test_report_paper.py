"""The paper's tables as transcribed: spot values, and every stated average against its columns."""

from __future__ import annotations

import pytest

from migrl.report.paper import (
    INCONSISTENT,
    MIG_COLUMNS,
    TABLE_2,
    TABLE_3,
    TABLE_4,
    TABLE_5,
    TABLE_6,
    TABLE_7,
    TABLE_8,
    TABLE_9,
    TABLE_10,
    TABLES,
    paper_rows,
)
from migrl.tasks import ID_TASKS, OOD_TASKS


def test_spot_values():
    assert TABLE_2.row("Ours")["object_tracking"] == 63.41
    assert TABLE_2.row("Qwen2.5-VL-7B")["common_object"] == 21.81
    assert TABLE_2.row("Qwen2.5-VL-7B + CoT-SFT")["avg"] == 52.41
    assert TABLE_2.row("Human")["region"] == 100.00
    assert TABLE_3.row("Ours")["ood_avg"] == 53.34
    assert TABLE_4.row("Ours")["ap50"] == 58.49
    assert TABLE_5.row("Qwen2.5-VL-72B")["ref-l4:test"] == 76.71
    assert TABLE_6.row("GPT4o")["avg"] == 60.34
    assert TABLE_7.row("Qwen2.5-VL-7B")["Vec"] == 83.33
    assert TABLE_8.row("Ours")["sem"] == 59.4 and TABLE_8.row("Mantis")["VQA"] == 76.0
    assert TABLE_9.row("Ours-Full")["region"] == 47.89
    assert TABLE_10.row("w/o KL")["avg"] == 55.33


def _stated_averages():
    for table in TABLES:
        for model in table.rows:
            for avg, cols in table.averages.items():
                yield table, model, avg, cols


@pytest.mark.parametrize("table,model,avg,cols", list(_stated_averages()), ids=lambda v: getattr(v, "name", str(v)))
def test_stated_average_is_the_mean_of_its_columns(table, model, avg, cols):
    row = table.row(model)
    mean = sum(row[c] for c in cols) / len(cols)
    if (table.name, model, avg) in INCONSISTENT:
        assert abs(mean - row[avg]) > 0.1, "listed as inconsistent but agrees: a transcription slip?"
    else:
        assert mean == pytest.approx(row[avg], abs=0.1)


def test_every_mean_table_checks_some_average():
    # Tables whose last columns are means must say so, or the test above checks nothing for them.
    for table in (TABLE_2, TABLE_5, TABLE_6, TABLE_7, TABLE_8, TABLE_9):
        assert table.averages


def test_table_3_is_table_2_split_in_and_out_of_domain():
    assert set(ID_TASKS) | set(OOD_TASKS) == set(MIG_COLUMNS)
    for model in TABLE_3.rows:
        t2, t3 = TABLE_2.row(model), TABLE_3.row(model)
        assert sum(t2[t] for t in ID_TASKS) / 4 == pytest.approx(t3["id_avg"], abs=0.1)
        assert sum(t2[t] for t in OOD_TASKS) / 6 == pytest.approx(t3["ood_avg"], abs=0.1)
        assert t2["avg"] == t3["avg"]


def test_table_10_average_is_over_ten_tasks():
    # Referential (7 tasks) and Spontaneous (3) groups; Ours equals Table 9's Ours-Full groups.
    ours = TABLE_9.row("Ours-Full")
    referential = TABLE_10.row("beta=1e-3 (Ours)")["referential"]
    assert sum(ours[c] for c in MIG_COLUMNS[:7]) / 7 == pytest.approx(referential, abs=0.01)
    for model, (ref, spo, avg) in TABLE_10.rows.items():
        if ("Table 10", model, "avg") in INCONSISTENT:
            assert abs((7 * ref + 3 * spo) / 10 - avg) > 0.1
        else:
            assert (7 * ref + 3 * spo) / 10 == pytest.approx(avg, abs=0.1)


def test_paper_rows_merge_tables_2_and_3_for_mig_bench():
    columns, rows = paper_rows("mig-bench")
    keys = [k for k, _ in columns]
    assert keys == list(MIG_COLUMNS) + ["avg", "id_avg", "ood_avg"]
    assert rows["Ours"]["ood_avg"] == 53.34 and rows["Ours"]["region"] == 51.45  # Table 2, not the ablation
    assert "ood_avg" not in rows["Human"] and "Ours-Full" not in rows


def test_paper_rows_take_a_benchmark_out_of_a_mixed_table():
    columns, rows = paper_rows("lisa")
    assert [k for k, _ in columns] == ["val", "test"]
    assert rows["Ours"] == {"val": 62.76, "test": 56.11}
    assert paper_rows("world") == ([], {})
