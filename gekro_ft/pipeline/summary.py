"""The pipeline's summary: the data findings, the training curve, the eval side by side, the
verdict, what an output costs against the APIs, and where everything is."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html

SHOWN = ("json_valid", "json_schema_valid", "field_f1", "exact_match", "accuracy", "macro_f1", "rouge_l", "chrf",
         "success_rate", "error_rate")


def _loss_curve(summary: dict[str, Any], path: Path) -> Path | None:
    """Training and eval loss per step, read back from the training run in MLflow."""
    run_id = summary["training"].get("run_id")
    if not run_id:
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    plotted = False
    for key in ("loss", "eval_loss"):
        history = client.get_metric_history(run_id, key)
        if history:
            ax.plot([m.step for m in history], [m.value for m in history], marker="o", label=key)
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training")
    ax.legend()
    return save_figure(fig, path)


def cost_decision(cost: dict[str, Any]) -> dict[str, Any]:
    """From cost.json, what the summary shows of the decision: the operating point and why, the
    fleet and utilization from the stated traffic, and each ownership option's break-even."""
    point = cost.get("operating_point") or {}
    return {"operating_point": {k: point.get(k) for k in ("concurrency", "tokens_per_s", "reason", "slo")} if point
            else None,
            "traffic": (cost.get("traffic") or {}).get("source"), "fleet": cost.get("fleet"),
            "effective": cost.get("effective"),
            "ownership": {mode: {k: o[k] for k in ("replicas", "monthly_tco", "break_even_api_spend", "break_evens")}
                          for mode, o in (cost.get("ownership") or {}).items()}}


def _money(v: float | None) -> str:
    return "—" if v is None else f"${v:,.2f}"


def _cost_lines(c: dict[str, Any]) -> list[str]:
    point, fleet, eff = c.get("operating_point"), c.get("fleet"), c.get("effective")
    lines = ["## Cost", ""]
    if point:
        lines += [f"Priced at bench concurrency {point['concurrency']}: {point['reason']}.", ""]
    lines += [f"Measured {c['tokens_per_s']:,.1f} output tokens/s, priced as `{c['gpu']}` at ${c['hourly']:g}/h: "
              f"**{_money(c.get('compute_only_usd_per_1m_output_tokens'))} per 1M output tokens compute only, "
              f"{_money(c['full_load_usd_per_1m_output_tokens'])} with overhead** ({c.get('overhead') or 0:.0%}) at "
              "full load" + (f"; ${c['usd_per_1m_useful_output_tokens']:,.2f} per 1M useful (correct) output tokens"
                             if c.get("usd_per_1m_useful_output_tokens") else "") + ".", ""]
    if fleet and eff:
        lines += [f"Traffic `{c['traffic']}`: {fleet['monthly_output_tokens'] / 1e6:,.2f}M output tokens a month "
                  f"need {fleet['replicas']} replica(s) at {fleet['average_utilization']:.1%} average utilization: "
                  f"${eff['compute_only_usd_per_1m_output_tokens']:,.2f} compute only, "
                  f"${eff['with_overhead_usd_per_1m_output_tokens']:,.2f} with overhead per 1M output tokens.", ""]
    rent = (c.get("ownership") or {}).get("rent")
    bills = {be["name"]: be for be in (rent or {}).get("break_evens", [])}
    rows = [[a["name"], f"${a['blended_per_m']:,.2f}",
             f"${a['usd_per_useful_output_1m']:,.2f}" if a.get("usd_per_useful_output_1m") else "—",
             f"{a['break_even_utilization']:.0%}" + (" (the API is cheaper)" if a["break_even_utilization"] > 1 else ""),
             f"${bills[a['name']]['api_monthly_usd']:,.2f}" if a["name"] in bills else "—",
             (f"month {bills[a['name']]['month']}" if bills[a["name"]]["month"] else "never")
             if a["name"] in bills else "—"] for a in c["apis"]]
    lines += [md_table(["API", "blended $ / 1M output tokens", "$ / 1M useful output tokens", "break-even utilization",
                        "API bill / month at the traffic", "break-even (rent)"], rows), ""]
    if rent:
        lines += [f"Self-hosting (rented, {rent['replicas']} replica(s), labour included) costs "
                  f"${rent['monthly_tco']:,.2f} a month: it wins above ${rent['break_even_api_spend']:,.2f} of API "
                  "spend a month.", ""]
    return lines


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("—" if v is None else str(v))


def _route_lines(r: dict[str, Any]) -> list[str]:
    """The router beside its two reference points: the adapter alone and the frontier alone."""
    metric, frontier = r["metric"], r.get("frontier") or {}
    label = f"`{frontier.get('spec')}`" + (" (a **simulation**: the suite's references, "
                                           f"{frontier.get('error_rate', 0):.0%} wrong)" if frontier.get("simulation")
                                           else "")
    rows = []
    for name, key in (("adapter alone", "local_only"), ("router, in sample", "chosen"),
                      ("frontier alone", "frontier_only")):
        point = r.get(key)
        if point:
            rows.append([name, f"{point['escalation_rate']:.0%}", _num(point["quality"].get(metric)),
                         _money(point.get("usd_per_1m_output_tokens")),
                         _money(point.get("usd_per_1m_useful_output_tokens"))])
    lines = ["## Router", "", f"Calibrated on {r.get('examples')} eval examples against {label}: the adapter "
             f"answers first, the frontier on doubt, keeping {metric} within {r['margin']:g} of the frontier alone.",
             "", md_table(["", "escalated", metric, "$ / 1M output", "$ / 1M useful output"], rows), ""]
    oos = r.get("out_of_sample") or {}
    if oos.get("intervals"):
        from gekro_ft.intervals import interval_text

        iv = oos["intervals"]
        lines += [f"Out of sample ({oos['folds']}-fold cross-validation, 95% intervals): {metric} "
                  f"{interval_text(iv[metric], '.3f')} against {interval_text(iv['frontier_' + metric], '.3f')} for the frontier alone, "
                  f"saving {interval_text(iv['saving_share'], '.0%')} of the frontier bill"
                  + ("." if oos.get("within_margin") else f" — **not** within {r['margin']:g} of the frontier."), ""]
        if iv["saving_share"]["point"] < 0:
            from gekro_ft.route.report import NO_SAVING

            lines += [NO_SAVING, ""]
    if not r.get("chosen"):
        lines += ["No threshold kept the margin: no route profile was written.", ""]
    return lines


def summary_markdown(summary: dict[str, Any], curve: bool) -> str:
    d, t, e, c = summary["data"], summary["training"], summary["eval"], summary["cost"]
    verdict = (e.get("verdict") or "not reached").upper()
    lines = [f"# gekro-ft pipeline `{summary['pipeline']}`", "",
             f"Verdict: **{verdict}**" + (f" on {e['examples']} held-out examples — gate `{e['gate']}`"
                                          if e.get("examples") else "")
             + (f" ({e['reason']})" if e.get("reason") else ""), ""]
    promo = e.get("promotion") or {}
    if promo.get("changed"):
        lines += [f"Promoted `{promo['name']}` version {promo['version']} to `champion`.", ""]
    lines += ["Stages: " + ", ".join(f"{k} {v}" for k, v in summary["stages"].items()), ""]
    if d.get("counts"):
        n, s = d["counts"], d.get("split", {})
        lines += ["## Data", "",
                  f"{n['rows']} rows, {n['usable_rows']} usable, {n['errors']} errors, {n['warnings']} warnings; "
                  f"{s.get('duplicates', 0)} duplicates dropped; split {s.get('train')} train / {s.get('eval')} "
                  "eval (for the training run's eval loss).", ""]
    m = t.get("metrics", {})
    if m:
        lines += ["## Training", "", f"Recipe `{t['recipe']}`, {t.get('max_steps') or 'all'} steps; "
                  f"training loss {m.get('train_loss', math.nan):.4f} (mean over the run)"
                  + (f", final eval loss {m['eval_loss']:.4f}" if "eval_loss" in m else "") + ".", ""]
        if curve:
            lines += ["![training loss](training_loss.png)", ""]
    if e.get("candidate"):
        label = "baseline" + (" (stand-in)" if e.get("baseline_is_stand_in") else "")
        lines += ["## Eval", ""]
        if e.get("baseline_is_stand_in"):
            lines += [f"The baseline (`{e['baseline_spec']}`) is a **stand-in**, not a frontier API. To judge against "
                      "one, set `eval.baseline: openai:gpt-4.1-mini` (key in `OPENAI_API_KEY`) or an "
                      "OpenAI-compatible URL with `eval.baseline_model` in the pipeline file.", ""]
        if e.get("judged"):
            lines += [f"The adapter's answers came from: {e['judged']}.", ""]
        names = [k for k in SHOWN if k in e["candidate"] or k in e["baseline"]]
        lines += [md_table(["metric", label, "adapter"], [[k, _num(e["baseline"].get(k)), _num(e["candidate"].get(k))]
                                                          for k in names]), ""]
    if c.get("full_load_usd_per_1m_output_tokens") is not None:
        lines += _cost_lines(c)
    if summary.get("route"):
        lines += _route_lines(summary["route"])
    lines += ["## Where everything is", "",
              md_table(["what", "where"], [[k, f"`{v}`"] for k, v in summary["paths"].items()]
                       + [["MLflow", f"`{summary['mlflow']['tracking_uri']}`, parent run "
                                     f"`{summary['mlflow']['parent_run_id']}`"]]), "",
              f"Time: {summary['duration_s'] / 60:.1f} minutes (this run, and the stages that earlier runs "
              "finished).", ""]
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], work: Path) -> Path:
    """summary.json, summary.md and summary.html (with the loss curve) in ``work``; returns the HTML."""
    work = Path(work)
    write_json(work / "summary.json", summary)
    curve = _loss_curve(summary, work / "training_loss.png") if summary["training"].get("metrics") else None
    _, html = write_markdown_and_html(work, "summary", summary_markdown(summary, curve is not None),
                                      f"gekro-ft pipeline {summary['pipeline']}")
    return html
