"""HTML building blocks of the report: escaping, tables, figures, notes and the page.

Every helper that takes a value from the report data escapes it, so callers only
concatenate strings these helpers return. The page has inline CSS and no scripts or
external references, so it reads the same offline as online.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from typing import Any

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa;
  --accent: #0969da; --bad: #cf222e; --good: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--fg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header .meta { color: var(--muted); font-size: 13px; }
nav.toc { margin: 16px 0 8px; padding: 10px 14px; background: var(--bg);
  border: 1px solid var(--line); border-radius: 8px; }
nav.toc ol { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap;
  gap: 6px 18px; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section { background: var(--bg); border: 1px solid var(--line); border-radius: 8px;
  padding: 4px 20px 16px; margin: 16px 0; }
section h2 { font-size: 20px; margin: 14px 0 10px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
section h3 { font-size: 16px; margin: 16px 0 8px; }
p.note { color: var(--muted); font-style: italic; margin: 8px 0; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: var(--soft); padding: 1px 4px; border-radius: 4px; }
figure { margin: 10px 0; overflow-x: auto; }
figure img { max-width: 100%; height: auto; display: block; }
.table-wrap { overflow-x: auto; max-height: 520px; overflow-y: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 4px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 110px; }
.stat .v { display: block; font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat .k { display: block; color: var(--muted); font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card h3 { margin: 0 0 6px; font-size: 15px; }
.card .verdict { margin: 0 0 8px; }
.card .true { color: var(--good); font-weight: 600; }
.card .pred { color: var(--bad); font-weight: 600; }
.card .media { display: flex; flex-wrap: wrap; gap: 8px; margin: 6px 0; }
.card .media figure { margin: 0; }
.card img.thumb { width: 128px; height: auto; image-rendering: pixelated;
  border: 1px solid var(--line); border-radius: 4px; }
.card audio { width: 100%; margin: 4px 0; }
.card figcaption, .card .col { color: var(--muted); font-size: 12px; }
.card blockquote { margin: 2px 0 6px; padding: 4px 8px; background: var(--soft);
  border-left: 3px solid var(--line); max-height: 9em; overflow-y: auto; white-space: pre-wrap;
  overflow-wrap: anywhere; font-size: 13.5px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""

_CODE = re.compile(r"`([^`]+)`")


def esc(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Format a number for a table: ints with separators, floats with 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def is_number(value: Any) -> bool:
    """True for ints and floats (not bools), which tables align to the right."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI embedding ``data`` base64-encoded."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def note(text: str) -> str:
    """A one-line muted note; `backticks` in ``text`` become ``<code>``."""
    marked = _CODE.sub(r"<code>\1</code>", esc(text))
    return f'<p class="note">{marked}</p>'


def figure(png: bytes, alt: str) -> str:
    """An embedded PNG plot."""
    return f'<figure><img src="{data_uri(png, "image/png")}" alt="{esc(alt)}"></figure>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of escaped cells; numbers are formatted and numeric columns right-aligned."""
    numeric = [any(is_number(row[i]) for row in rows) for i in range(len(headers))]

    def cell(tag: str, value: str, i: int) -> str:
        align = ' class="num"' if numeric[i] else ""
        return f"<{tag}{align}>{value}</{tag}>"

    head = "".join(cell("th", esc(h), i) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", esc(fmt(v)), i) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def facts(pairs: Sequence[tuple[str, Any]]) -> str:
    """A two-column definition list of label → value (values escaped and formatted)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def stats(pairs: Sequence[tuple[str, Any]]) -> str:
    """Large-number tiles for the headline metrics."""
    tiles = "".join(
        f'<div class="stat"><span class="v">{esc(fmt(v))}</span>'
        f'<span class="k">{esc(k)}</span></div>'
        for k, v in pairs
    )
    return f'<div class="stats">{tiles}</div>'


def section(section_id: str, title: str, body: str) -> str:
    """A ``<section>`` with its id and ``<h2>`` heading."""
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, meta: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document: header, table of contents and ``(id, title, body)`` sections."""
    toc = "".join(f'<li><a href="#{esc(sid)}">{esc(name)}</a></li>' for sid, name, _ in sections)
    body = "".join(section(sid, name, content) for sid, name, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><header><h1>{esc(title)}</h1>"
        f'<div class="meta">{esc(meta)}</div></header>'
        f'<nav class="toc" aria-label="Contents"><ol>{toc}</ol></nav>'
        f"{body}<footer>{esc(footer)}</footer></main></body></html>\n"
    )
