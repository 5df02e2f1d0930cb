"""The eval report: ``report.json`` (the record), ``report.md`` and ``report.html`` (for people),
with the aggregates side by side, the gate's reasoning, the cost of each side, and the
examples where candidate and baseline disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gekro_ft.intervals import interval_text
from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html

MAX_SHOWN = 20  # disagreeing examples in the Markdown; report.json has them all


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": write_json(out_dir / "report.json", report)}
    paths["plot"] = _plot_aggregates(report, out_dir / "aggregates.png")
    paths["md"], paths["html"] = write_markdown_and_html(out_dir, "report", _markdown(report),
                                                         f"Eval {report['suite']['name']}")
    return paths


def _fraction_metrics(report: dict[str, Any]) -> list[str]:
    """Aggregates on a 0–1 scale that both sides have, in a stable order."""
    sides = list(report["sides"].values())
    names = [k for k, v in sides[0]["aggregates"].items() if isinstance(v, (int, float)) and 0 <= v <= 1]
    return [k for k in names if all(k in s["aggregates"] for s in sides)]


def _plot_aggregates(report: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    names = _fraction_metrics(report)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 3.6))
    width = 0.8 / max(1, len(report["sides"]))
    for k, (role, side) in enumerate(report["sides"].items()):
        xs = [i + k * width for i in range(len(names))]
        values = [side["aggregates"][n] for n in names]
        ivs = side.get("intervals") or {}
        # error bars: the bootstrap interval around the aggregate (none where there is no interval)
        err = [[max(0.0, v - ivs[n]["lo"]) if n in ivs else 0.0 for v, n in zip(values, names)],
               [max(0.0, ivs[n]["hi"] - v) if n in ivs else 0.0 for v, n in zip(values, names)]]
        ax.bar(xs, values, width, yerr=err, capsize=3, label=f"{role}: {side['provider']['spec']}")
    ax.set_xticks([i + width * (len(report["sides"]) - 1) / 2 for i in range(len(names))], names,
                  rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (higher is better)")
    conf = (report.get("intervals") or {}).get("confidence")
    ax.set_title(f"{report['suite']['name']}: {report['suite']['examples']} examples"
                 + (f" (bars: {conf:.0%} bootstrap intervals)" if conf else ""))
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def _fmt_usd(v: float | None) -> str:
    return "—" if v is None else f"${v:,.6f}" if v < 0.01 else f"${v:,.4f}"


def _markdown(r: dict[str, Any]) -> str:
    suite, gate, sides = r["suite"], r["gate"], r["sides"]
    roles = list(sides)
    verdict = {"pass": "PASS", "fail": "FAIL", "undecided": "UNDECIDED (could not decide)"}[gate["verdict"]]
    lines = [f"# Eval: {suite['name']}", "",
             f"**Verdict: {verdict}**" + (f" — {gate['reason']}" if gate.get("reason") else ""), "",
             f"Gate: `{gate['expression']}`", ""]
    promo = r.get("promotion")
    if promo:
        lines += [f"Promotion: {promo['name']} version {promo['version']} → `@{promo['alias']}` "
                  + ("(moved" + (f"; replaced version {promo['previous']})" if promo.get("previous") else ")")
                     if promo.get("changed") else f"(not moved: {promo.get('reason', 'already there')})"), ""]
    if gate["comparisons"]:
        lines += ["## Gate", "", md_table(["condition", "left", "right", "holds", "left − right, interval"],
                                          [[c.get("text"), c.get("left"), c.get("right"),
                                            "yes" if c.get("held") else "no", _difference(c)]
                                           for c in gate["comparisons"]]), ""]
        lines += [f"- {note}" for note in gate.get("notes") or []] + ([""] if gate.get("notes") else [])
    lines += ["## Inputs", "", md_table(["", *roles], [
        ["spec", *[sides[x]["provider"]["spec"] for x in roles]],
        ["kind", *[sides[x]["provider"]["kind"] for x in roles]],
        *([["engine", *[sides[x]["provider"].get("engine", "") for x in roles]]]
          if any("engine" in sides[x]["provider"] for x in roles) else []),
    ]), "", f"Eval set: `{suite['data']}` ({suite['examples']} examples, sha256 `{suite['data_sha256'][:16]}…`); "
            f"generation: {suite['generation']}; success: {suite['success']['metric']} ≥ "
            f"{suite['success']['threshold']}.", ""]
    names = sorted({k for x in roles for k in sides[x]["aggregates"]})
    iv = r.get("intervals")
    pct = f"{iv['confidence']:.0%}" if iv else ""
    rows = []
    for n in names:
        row: list[Any] = [n]
        for x in roles:
            row += [sides[x]["aggregates"].get(n), _bounds((sides[x].get("intervals") or {}).get(n))]
        if len(roles) == 2:
            a, b = sides["candidate"]["aggregates"].get(n), sides["baseline"]["aggregates"].get(n)
            row += [a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None,
                    _bounds((r.get("delta") or {}).get(n))]
        rows.append(row)
    headers = ["metric", *[h for x in roles for h in (x, f"{pct} CI")],
               *(["candidate − baseline", f"{pct} CI (paired)"] if len(roles) == 2 else [])]
    lines += ["## Aggregates", ""]
    if iv:
        lines += [f"Intervals: seeded paired bootstrap ({iv['resamples']} resamples, seed {iv['seed']}) over the "
                  f"{iv['n']} examples every side answered; error_rate has none (failures are not resampled).", ""]
    lines += [md_table(headers, rows), "", "![aggregates](aggregates.png)", ""]
    ops = []
    for label, key in [("answered", "answered"), ("errors", "errors"), ("from recording", "from_recording"),
                       ("requests sent", "requests_sent"), ("input tokens", "input_tokens"),
                       ("output tokens", "output_tokens")]:
        ops.append([label, *[sides[x][key] for x in roles]])
    ops.append(["latency p50 / p95 (s)", *[
        f"{sides[x]['latency_s']['p50']:.3f} / {sides[x]['latency_s']['p95']:.3f}" if sides[x]["latency_s"] else "—"
        for x in roles]])
    ops.append(["error kinds", *[", ".join(f"{k}: {v}" for k, v in sides[x]["error_kinds"].items()) or "none"
                                 for x in roles]])
    lines += ["## Requests, tokens, latency", "", md_table(["", *roles], ops), ""]
    lines += ["## Cost", "", md_table(["", *roles], [
        ["total", *[_fmt_usd(sides[x].get("cost", {}).get("total_usd")) for x in roles]],
        ["per output", *[_fmt_usd(sides[x].get("cost", {}).get("usd_per_output")) for x in roles]],
        ["per correct output", *[_fmt_usd(sides[x].get("cost", {}).get("usd_per_correct_output")) for x in roles]],
    ]), ""]
    for x in roles:
        c = sides[x].get("cost", {})
        lines.append(f"- {x}: {c.get('basis', 'not priced')}" + (f" — {c['reason']}" if c.get("reason") else ""))
    lines.append("")
    disagree = [e for e in r["examples"] if e.get("disagree")]
    if "baseline" in sides:
        lines += [f"## Where they disagree ({len(disagree)} of {suite['examples']})", ""]
        if disagree:
            lines.append(md_table(["id", "prompt", "reference", "candidate", "baseline"], [
                [e["id"], _clip(e["prompt"]), _clip(e["reference"]),
                 _answer(e["candidate"]), _answer(e["baseline"])] for e in disagree[:MAX_SHOWN]]))
            if len(disagree) > MAX_SHOWN:
                lines.append(f"\n{len(disagree) - MAX_SHOWN} more in report.json.")
        else:
            lines.append("None: both sides got the same examples right.")
        lines.append("")
    if r.get("mlflow"):
        lines += [f"MLflow run `{r['mlflow']['run_id']}` in experiment `{r['mlflow']['experiment']}`.", ""]
    lines += [f"Made by gekro-ft {r['gekro_ft_version']} at {r['created']} in {r['duration_s']:.1f} s.", ""]
    return "\n".join(lines)


def _bounds(iv: dict[str, Any] | None) -> str:
    return "—" if not iv else f"[{iv['lo']:.3f}, {iv['hi']:.3f}]"


def _difference(c: dict[str, Any]) -> str:
    iv = c.get("difference_interval")
    return "—" if not iv else interval_text(iv, "+.3f")


def _clip(text: str | None, n: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n] + "…"


def _answer(a: dict[str, Any]) -> str:
    if a["error"]:
        return f"(error: {a['error']})"
    return ("✔ " if a["correct"] else "✘ ") + _clip(a["text"])
