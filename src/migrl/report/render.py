"""Markdown and HTML of a report.

Everything that is not this module's own markup -- model answers, questions, ids, run labels, file
names -- goes through ``html.escape`` in the HTML (a model that writes ``<script>`` must not run it
in the reader's browser) and outside code blocks in the Markdown too, since Markdown viewers pass
raw HTML through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from migrl.records import Record
from migrl.report.pictures import PREDICTION_NAME, TRUTH_NAME, Prediction

LEGEND = (f"Ground truth in {TRUTH_NAME}, the run's predicted box in {PREDICTION_NAME}, images numbered as in the "
          "prompt. A thin red frame is part of the prompt's image (the marker some tasks draw around the object "
          "to follow), not a prediction.")
STYLE = """body{font-family:sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:right}
td:first-child,th:first-child{text-align:left}pre{white-space:pre-wrap;text-align:left;margin:0;max-width:60em}
section{border-top:1px solid #ddd;margin-top:1.5em}.note{color:#555}img{max-width:100%}
table.answers td,table.answers th{text-align:left;vertical-align:top}
figure{margin:1em 0}figcaption{color:#555;max-width:60em}"""


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Chart:
    """An inline SVG chart, and its figures as a table: what report.md shows in its place."""

    title: str
    svg: str  # this module's own markup, built by ``charts`` with every foreign text escaped
    figures: Table


@dataclass
class Item:
    """One pictured record with every run's answer."""

    record: Record
    picture: str  # relative to the report folder
    predictions: list[Prediction]


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    return escape(text, quote=False).replace("|", "\\|").replace("\n", " ")  # quotes are plain text in Markdown


def _fence(text: str) -> str:
    """A code block no backtick run in ``text`` can close."""
    ticks = "`" * max([3] + [len(m) + 1 for m in re.findall(r"`+", text)])
    return f"{ticks}text\n{text}\n{ticks}"


def _md_table(table: Table) -> list[str]:
    lines = [f"## {_md_text(table.title)}", ""]
    lines.append("| " + " | ".join(_md_text(h) for h in table.header) + " |")
    lines.append("|" + "---|" * len(table.header))
    lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", _md_text(table.note)]
    return lines + [""]


def _md_item(item: Item) -> list[str]:
    r = item.record
    lines = [f"### {_md_text(r.task)}: {_md_text(r.id)}", "", f"![{_md_text(r.id)}]({escape(item.picture)})", ""]
    lines += ["> " + escape(line) for line in r.question.splitlines() or [""]]
    for pred in item.predictions:
        lines += ["", f"**{_md_text(pred.label)}**: {_md_text(pred.verdict())}"]
        if pred.text is not None:
            lines += ["", _fence(pred.text)]
    return lines + [""]


def _md_chart(chart: Chart) -> list[str]:
    lines = _md_table(chart.figures)
    return lines[:2] + ["(drawn as a chart in report.html; its figures:)", ""] + lines[2:]


def to_markdown(title: str, tables: list[Table], items: list[Item], notes: list[str],
                charts: list[Chart] | None = None) -> str:
    lines = [f"# {_md_text(title)}", ""]
    for table in tables:
        lines += _md_table(table)
    for chart in charts or []:
        lines += _md_chart(chart)
    if notes:
        lines += ["## Notes", ""] + [f"- {_md_text(n)}" for n in notes] + [""]
    if items:
        lines += ["## Pictures", "", LEGEND, ""]
        for item in items:
            lines += _md_item(item)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>\n" for row in table.rows)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return f"<h2>{escape(table.title)}</h2>\n<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>{note}\n"


def _html_item(item: Item) -> str:
    r = item.record
    rows = "".join(
        f"<tr><td>{escape(p.label)}</td><td>{escape(p.verdict())}</td>"
        f"<td><pre>{escape(p.text) if p.text is not None else ''}</pre></td></tr>\n"
        for p in item.predictions
    )
    return (
        f"<section><h3>{escape(r.task)}: {escape(r.id)}</h3>\n"
        f'<img src="{escape(item.picture)}" alt="{escape(r.id)}">\n'
        f"<blockquote><pre>{escape(r.question)}</pre></blockquote>\n"
        f'<table class="answers"><tr><th>run</th><th>result</th><th>answer</th></tr>\n{rows}</table></section>\n'
    )


def _html_chart(chart: Chart) -> str:
    note = f"<figcaption>{escape(chart.figures.note)}</figcaption>" if chart.figures.note else ""
    return f"<figure>{chart.svg}{note}</figure>\n"


def to_html(title: str, tables: list[Table], items: list[Item], notes: list[str],
            charts: list[Chart] | None = None) -> str:
    parts = [
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>\n<h1>{escape(title)}</h1>\n",
    ]
    parts += [_html_table(t) for t in tables]
    if charts:
        parts.append("<h2>Charts</h2>\n")
        parts += [_html_chart(c) for c in charts]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>\n")
    if items:
        parts.append(f"<h2>Pictures</h2><p>{escape(LEGEND)}</p>\n")
        parts += [_html_item(i) for i in items]
    parts.append("</body></html>\n")
    return "".join(parts)
