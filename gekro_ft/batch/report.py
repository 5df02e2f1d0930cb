"""The batch reports people read: a job's (batch.json) and an estimate's (estimate.json, with
a plot of cost and wall clock per provider), each rendered to Markdown and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html


def duration(seconds: float | None) -> str:
    """Seconds in the unit a reader compares: s, min, h or days."""
    if seconds is None:
        return "—"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size * (2 if unit == "days" else 1):
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} s"


def write_run_report(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(out_dir / "batch.json", doc)
    md, html = write_markdown_and_html(out_dir, "batch", run_markdown(doc), "gekro-ft batch")
    return {"json": json_path, "md": md, "html": html}


def run_markdown(doc: dict[str, Any]) -> str:
    r, j = doc["this_run"], doc["job"]
    lines = [f"# Batch job: {doc['input']['path']}", "",
             f"Model `{doc['model']}` on {doc['engine']['engine']}; output `{doc['output']['path']}`, "
             f"errors `{doc['output']['errors']}`.", "", "## The job", "",
             md_table(["rows in the input", "answered", "failed (last run)", "input tokens", "output tokens",
                       "output tokens per row"],
                      [[doc["input"]["rows"], j["answered"], j["failed_last_run"], j["input_tokens"],
                        j["output_tokens"], j["output_tokens_per_row"]]]),
             "", "## This run", "",
             md_table(["answered", "failed", "skipped (done before)", "wall", "rows/s", "output tokens/s"],
                      [[r["answered"], r["failed"], r["skipped_done"], duration(r["wall_s"]), r["rows_per_s"],
                        r["output_tokens_per_s"]]])]
    if r["errors_by_code"]:
        lines += ["", "Errors by code: " + ", ".join(f"`{k}` {v}" for k, v in sorted(r["errors_by_code"].items()))]
    if doc.get("checks"):
        c = doc["checks"]
        lines += ["", f"## Checks (suite {c['suite']})", "",
                  md_table(["check", "passed", "of", "share"],
                           [[k, v, c["checked"], c["share"].get(k)] for k, v in c["passed"].items()])]
    return "\n".join(lines) + "\n"


def write_estimate_report(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = save_figure(_figure(doc), out_dir / "estimate.png")
    json_path = write_json(out_dir / "estimate.json", doc)
    md, html = write_markdown_and_html(out_dir, "estimate", estimate_markdown(doc), "gekro-ft batch estimate")
    return {"json": json_path, "md": md, "html": html, "plot": plot}


def tokens_from(p: dict[str, Any]) -> str:
    """Whose token counts a provider's line is priced on, as the tables say it."""
    if p["tier"] == "self-hosted":
        return "measured"
    return "measured by the API" if p.get("tokens_from") == "measured" else "assumed (local sample)"


def api_sample_line(name: str, a: dict[str, Any]) -> str:
    """What became of the sample sent to one API (never a key: the variable's name at most)."""
    if a["tokens_from"] != "measured":
        return f"- `{name}` ({a['ask']}): tokens assumed from the local sample: {a['why']}"
    failed = f", {a['failed']} failed ({a['errors_by_kind']})" if a["failed"] else ""
    return (f"- `{name}` ({a['ask']} at {a['base_url']}): {a['answered']} of {a['rows']} sample rows answered{failed}, "
            f"{a['from_recording']} replayed from `{a['recording']}`, {a['requests_sent']} requests sent; "
            f"{a['input_tokens'] / a['answered']:.1f} input and {a['output_tokens'] / a['answered']:.1f} output "
            "tokens per row")


def estimate_markdown(doc: dict[str, Any]) -> str:
    s, loc = doc["sample"], doc["local"]
    rows = [[p["provider"], p["tier"], f"{p['output_tokens_per_row']:.1f}", tokens_from(p), f"${p['cost_usd']:,.2f}",
             f"{p['x_local']:,.1f}×", duration(p["wall_s"]), p["wall_note"]] for p in doc["providers"]]
    asked = doc.get("api_samples") or {}
    return "\n".join([
        f"# Batch estimate: {doc['rows']:,} rows of {doc['input']['path']}", "",
        f"Sample: {s['answered']} of {s['rows']} rows answered in {s['wall_s']:.1f} s by `{doc['model']}` "
        f"({doc['engine']['engine']}): {doc['input_tokens_per_row']:.1f} input and "
        f"{doc['output_tokens_per_row']:.1f} output tokens per row, {loc['output_tokens_per_s']:.1f} output "
        f"tokens/s. Local machine: {loc['machine']} at ${loc['usd_per_hour']:g}/h ({loc['price_note']}).", "",
        f"The corpus, at the local sample's tokens per row: {doc['input_tokens']:,.0f} input and "
        f"{doc['output_tokens']:,.0f} output tokens. An API's line is priced on the tokens that API reported "
        "for the same sample rows where it was asked (*measured by the API*), else on the local sample's "
        f"(*assumed*). API wall clocks are bounded by the {doc['tier']} rate limits in the price table.", "",
        md_table(["provider", "tier", "output tokens/row", "tokens", "cost", "× local", "wall clock",
                  "wall clock from"], rows), "",
        *(["## The sample on the APIs", "", *(api_sample_line(n, a) for n, a in asked.items()), ""] if asked else []),
        "![cost and wall clock per provider](estimate.png)", ""])


def _figure(doc: dict[str, Any]) -> Any:
    plt = pyplot()
    providers = doc["providers"]
    labels = [f"{p['provider']} ({p['tier']})" for p in providers]
    fig, (ax_cost, ax_wall) = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 1.5), sharey=True)
    colors = ["tab:green" if p["tier"] == "self-hosted" else "tab:blue" if p["tier"] == "standard"
              else "tab:orange" for p in providers]
    ax_cost.barh(labels, [p["cost_usd"] for p in providers], color=colors)
    ax_cost.set_xscale("log")
    ax_cost.set_xlabel("cost of the corpus, US$ (log)")
    walls = [p["wall_s"] / 3600 if p["wall_s"] is not None else 0 for p in providers]
    ax_wall.barh(labels, walls, color=colors)
    if any(walls):
        ax_wall.set_xscale("log")
    ax_wall.set_xlabel("wall clock, hours (log; batch tier: not claimed)")
    ax_cost.invert_yaxis()
    fig.suptitle(f"{doc['rows']:,} rows")
    return fig
