"""Render the tables as one self-contained HTML page and as standalone LaTeX (booktabs) files.

Both come from the same :class:`~wmoe_clip.report.tables.Table` objects through jinja2 templates
(``templates/``): an HTML environment with autoescaping, and a LaTeX environment with LaTeX-safe
delimiters and an explicit ``latex`` escape filter (docs/PIPELINE.md §4.4).
"""

from __future__ import annotations

from typing import Any

import jinja2

from .tables import SYNTHETIC_NOTE, Table

_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "–": "--", "—": "---", "−": "$-$", "±": r"$\pm$", "Δ": r"$\Delta$", "✓": r"$\checkmark$",
    "“": "``", "”": "''", "§": r"\S{}", "×": r"$\times$", "→": r"$\rightarrow$", "†": r"\dag{}",
}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _loader() -> jinja2.BaseLoader:
    return jinja2.PackageLoader("wmoe_clip.report", "templates")


def _latex_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_statement_prefix="%%", line_comment_prefix="%#",
        trim_blocks=True, autoescape=False, undefined=jinja2.StrictUndefined,
    )
    env.filters["latex"] = latex_escape
    return env


def _html_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=_loader(), autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def _header_spans(table: Table) -> list[list[dict[str, Any]]]:
    """Header groups with their first/last column (1-based), for \\cmidrule and colspan, and the HTML
    style of their first column (its method tint on the last group row only, the rule on all)."""
    rows = []
    for depth, groups in enumerate(table.header_groups, 1):
        col, row = 1, []
        for label, span in groups:
            style = table.column_styles[col - 1] if table.column_styles else ""
            if depth < len(table.header_groups):
                style = "start" if "start" in style.split() else ""
            row.append({"label": label, "span": span, "first": col, "last": col + span - 1, "style": style})
            col += span
        rows.append(row)
    return rows


# Width of an "L" column: the longest plain dataset name ("DTD-Synthetic") fits on one line.
WRAP_WIDTH = "2.2cm"


def render_latex(table: Table) -> str:
    colspec = table.align.replace("L", rf">{{\raggedright\arraybackslash}}p{{{WRAP_WIDTH}}}")
    text = _latex_env().get_template("table.tex.j2").render(
        table=table, colspec=colspec, header_rows=_header_spans(table), synthetic_note=SYNTHETIC_NOTE
    )
    return text.lstrip() + "\n"


def _context(t: Table) -> dict[str, Any]:
    return {"table": t, "header_rows": _header_spans(t), "styles": t.column_styles or [""] * len(t.columns)}


def render_html(tables: list[Table], per_class: list[Table] | None = None, **context: Any) -> str:
    """The page: ``tables`` in full, ``per_class`` each in a collapsed ``<details>``."""
    return _html_env().get_template("report.html.j2").render(
        tables=[_context(t) for t in tables], per_class=[_context(t) for t in per_class or []],
        synthetic_note=SYNTHETIC_NOTE, **context
    )
