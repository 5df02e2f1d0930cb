"""Writing the reports people read (eval, bench, cost): JSON, Markdown and self-contained HTML.

Every report is a JSON document with a ``schema_version`` first; the Markdown is made
from it, and the HTML from the Markdown (markdown-it-py, already a dependency of rich),
with plots embedded so the HTML file can be mailed or attached to a CI run on its own.
Everything is written whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import atomic_output, write_bytes_atomic

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4}td{font-variant-numeric:tabular-nums}img{max-width:100%}
code,pre{background:#f6f8fa;padding:.1rem .3rem}pre{padding:.6rem;overflow-x:auto}"""


def write_json(path: str | Path, doc: dict[str, Any]) -> Path:
    """``doc`` as indented JSON; ``schema_version`` must be in it (the reports' contract)."""
    if "schema_version" not in doc:
        raise ValueError("a report document needs a schema_version")
    write_bytes_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                                          | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    return Path(path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """A matplotlib figure as PNG, atomically; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_output(path) as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells are escaped so a ``|`` in model output cannot break it."""
    def cell(v: Any) -> str:
        text = "" if v is None else (f"{v:,.4g}" if isinstance(v, float) else str(v))
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_to_html(markdown: str, title: str, base_dir: str | Path | None = None) -> str:
    """A standalone HTML page; local PNG images next to the report are inlined as data URIs."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    if base_dir is not None:
        def inline(m: re.Match) -> str:
            src = Path(base_dir) / html.unescape(m.group(1))
            if not src.is_file() or src.suffix.lower() != ".png":
                return m.group(0)
            data = base64.b64encode(src.read_bytes()).decode()
            return f'src="data:image/png;base64,{data}"'

        body = re.sub(r'src="([^":]+)"', inline, body)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n")


def write_markdown_and_html(out_dir: str | Path, stem: str, markdown: str, title: str) -> tuple[Path, Path]:
    """``STEM.md`` and ``STEM.html`` in ``out_dir``; images the Markdown names must already be there."""
    out_dir = Path(out_dir)
    md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    write_bytes_atomic(md_path, markdown.encode())
    write_bytes_atomic(html_path, markdown_to_html(markdown, title, base_dir=out_dir).encode())
    return md_path, html_path
