"""report.md (and a self-contained report.html) from the main job's outputs: one section per table or figure,
each with the command that reproduces it, and the seed study's numbers beside ours when they are supplied."""

from __future__ import annotations

import csv
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


@dataclass
class Section:
    title: str
    command: str = ""
    text: str = ""
    table: list[dict] = field(default_factory=list)
    columns: Sequence[str] | None = None
    figures: list[str] = field(default_factory=list)


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _cell(v) -> str:
    if v is None or v == "":
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f != f:
        return "nan"
    if float(f).is_integer() and abs(f) < 1e9 and "." not in str(v):
        return str(int(f))
    return f"{f:.3g}" if 0 < abs(f) < 0.01 else f"{f:.3f}"


def md_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(out) + "\n"


def with_ci(rows: Sequence[dict], metrics: Sequence[str]) -> list[dict]:
    """Fold ``m``, ``m_lo``, ``m_hi`` columns into one 'value [lo, hi]' string per metric."""
    out = []
    for r in rows:
        d = {k: v for k, v in r.items() if not any(k in (m, f"{m}_lo", f"{m}_hi") for m in metrics)}
        for m in metrics:
            if m in r:
                lo, hi = r.get(f"{m}_lo"), r.get(f"{m}_hi")
                d[m] = f"{_cell(r[m])} [{_cell(lo)}, {_cell(hi)}]" if lo not in (None, "") else _cell(r[m])
        out.append(d)
    return out


def render_markdown(title: str, intro: str, sections: Sequence[Section], base_dir: Path) -> str:
    parts = [f"# {title}\n", intro.strip() + "\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        if s.command:
            parts.append(f"Reproduce: `{s.command}`\n")
        if s.text:
            parts.append(s.text.strip() + "\n")
        if s.table:
            parts.append(md_table(s.table, s.columns))
        for f in s.figures:
            rel = os.path.relpath(f, base_dir)
            parts.append(f"![{Path(f).stem}]({rel})\n")
    return "\n".join(parts)




def markdown_to_html(md: str, title: str = "report") -> str:
    """A self-contained HTML page of a Markdown report (markdown-it-py, CommonMark with pipe tables)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}code{background:#f3f3f3}"
             "img{max-width:900px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>")


def write_report(out_dir: Path, title: str, intro: str, sections: Sequence[Section]) -> tuple[Path, Path]:
    """Write report.md and report.html into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = render_markdown(title, intro, sections, out_dir)
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(markdown_to_html(md, title))
    return out_dir / "report.md", out_dir / "report.html"
