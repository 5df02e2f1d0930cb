"""The calibration report (``route.json`` → ``route.md`` and ``route.html`` with two plots) and
the route profile it chooses (``route-profile.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.intervals import interval_text
from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html


def write_calibration(doc: dict[str, Any], out_dir: Path, *, checks: dict[str, Any],
                      frontier_url: str, frontier_model: str | None) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": write_json(out_dir / "route.json", doc)}
    paths["quality_vs_cost"] = _plot_quality_vs_cost(doc, out_dir / "quality_vs_cost.png")
    paths["escalation"] = _plot_escalation(doc, out_dir / "escalation_rate.png")
    paths["md"], paths["html"] = write_markdown_and_html(out_dir, "route", markdown(doc), "Route calibration")
    if doc["chosen"] is not None:
        paths["profile"] = out_dir / "route-profile.yaml"
        write_bytes_atomic(paths["profile"], profile_yaml(doc, checks, frontier_url, frontier_model).encode())
    return paths


def profile_yaml(doc: dict[str, Any], checks: dict[str, Any], frontier_url: str, frontier_model: str | None) -> str:
    chosen, inputs = doc["chosen"], doc["inputs"]
    profile: dict[str, Any] = {
        "local": {"url": inputs["local"]["url"], "model": inputs["local"]["model"]},
        "frontier": {"url": frontier_url, **({"model": frontier_model} if frontier_model else {}),
                     "price": inputs["frontier_price"]["name"]},
    }
    if checks:
        profile["checks"] = checks
    if chosen["threshold"] is not None:
        profile["confidence"] = {"score": chosen["score"], "threshold": float(chosen["threshold"])}
    head = (f"# gekro-ft route serve route-profile.yaml\n#\n# Chosen by gekro-ft route calibrate on {inputs['suite']} "
            f"({inputs['examples']} examples): the cheapest policy with {inputs['metric']} within "
            f"{inputs['margin']:g} of the frontier alone.\n# Escalation rate {chosen['escalation_rate']:.1%}, "
            f"{inputs['metric']} {chosen['quality'][inputs['metric']]:.4f} (frontier alone "
            f"{doc['frontier_only']['quality'][inputs['metric']]:.4f}).\n")
    return head + yaml.safe_dump(profile, sort_keys=False)


def _plot_quality_vs_cost(doc: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    metric = doc["inputs"]["metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in sorted({p["score"] for p in doc["curve"]}):
        pts = [p for p in doc["curve"] if p["score"] == name and p["checks"]]
        ax.plot([p["usd_per_1m_output_tokens"] for p in pts], [p["quality"][metric] for p in pts],
                marker=".", linewidth=1, label=f"{name} (with checks)")
    for key, marker in (("frontier_only", "s"), ("local_only", "^")):
        p = doc[key]
        ax.scatter([p["usd_per_1m_output_tokens"]], [p["quality"][metric]], marker=marker, s=80, zorder=3,
                   label=key.replace("_", "-"))
    if doc["chosen"] is not None:
        c = doc["chosen"]
        ax.scatter([c["usd_per_1m_output_tokens"]], [c["quality"][metric]], marker="*", s=220, zorder=4,
                   color="black", label="chosen")
    ax.set_xlabel("blended $ per 1M output tokens")
    ax.set_ylabel(metric)
    ax.set_title("quality vs cost")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _plot_escalation(doc: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name in sorted({p["score"] for p in doc["curve"]}):
        pts = [p for p in doc["curve"] if p["score"] == name and p["checks"] and p["threshold"] is not None]
        ax.step([p["threshold"] for p in pts], [p["escalation_rate"] for p in pts], where="post", label=name)
    ax.set_xlabel("threshold (log-probability)")
    ax.set_ylabel("escalation rate")
    ax.set_title("escalation rate against the threshold")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _usd(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"${v:,.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    inputs, metric = doc["inputs"], doc["inputs"]["metric"]
    success = "success_rate"

    def row(label: str, p: dict[str, Any]) -> list[Any]:
        return [label, f"{p['escalation_rate']:.1%}", round(p["quality"][metric], 4), round(p["quality"][success], 4),
                _usd(p["usd_per_1m_output_tokens"]), _usd(p["usd_per_1m_useful_output_tokens"]),
                _usd(p["usd_per_request"], 6)]

    headers = ["policy", "escalated", metric, "success rate", "$ / 1M output", "$ / 1M useful output", "$ / request"]
    rows = [row("frontier only", doc["frontier_only"]), row("local only", doc["local_only"])]
    if doc["chosen"]:
        rows.append(row(f"chosen: {policy_rule(doc['chosen'])}", doc["chosen"]))
    lines = [f"# Route calibration: {inputs['suite']}", "",
             f"{inputs['examples']} examples through the local model `{inputs['local']['model']}` "
             f"({inputs['local']['url']}) and the frontier `{inputs['frontier'].get('spec')}`. "
             f"Frontier priced as `{inputs['frontier_price']['name']}` "
             f"(${inputs['frontier_price']['input_per_m']:g} in / ${inputs['frontier_price']['output_per_m']:g} out "
             f"per 1M, as of {inputs['frontier_price']['as_of']}); local at "
             f"{_usd(inputs['local_usd_per_1m_output_tokens'])} per 1M output tokens ({inputs['local_cost_basis']}).",
             "", f"Rule: the cheapest policy with `{metric} >= frontier_only.{metric} - {inputs['margin']:g}`.", "",
             *_out_of_sample_lines(doc),
             "## In sample: the threshold chosen and scored on the same examples", "",
             md_table(headers, rows), ""]
    if doc["chosen"] and doc["saving"]:
        s = doc["saving"]
        lines += [f"**Saving against frontier-only at that quality:** {_usd(s['usd_per_month'], 2)} a month at "
                  f"{s['requests_per_month']:,.0f} requests a month "
                  f"({s['share_of_frontier_bill']:.0%} of the frontier-only bill).", ""]
        if s["usd_per_request"] < 0:
            lines += [NO_SAVING, ""]
    else:
        lines += ["**No policy stays within the margin**: every threshold loses too much quality; no profile written.", ""]
    lines += ["![quality vs cost](quality_vs_cost.png)", "", "![escalation rate](escalation_rate.png)", "",
              "Every figure is recomputed from `route.json`'s `per_example` rows and `inputs` "
              "(see `gekro_ft/route/calibrate.py` for the formulas).", ""]
    return "\n".join(lines)


NO_SAVING = ("**Routing does not pay at this margin**: the local model answers every request first, and "
             "keeping the quality takes so many escalations that the frontier alone costs less.")


def out_of_sample_line(doc: dict[str, Any]) -> str:
    """One line of the figures to decide on, for the CLI."""
    oos, metric = doc["out_of_sample"], doc["inputs"]["metric"]
    iv = oos["intervals"]
    pct = f"{iv['saving_share']['confidence']:.0%}"
    return (f"out of sample ({oos['folds']}-fold, {pct} intervals): {metric} "
            f"{interval_text(iv[metric], '.4f')} vs frontier alone {interval_text(iv['frontier_' + metric], '.4f')}; "
            f"saving {interval_text(iv['saving_share'], '.1%')} of the frontier bill; escalated "
            f"{interval_text(iv['escalation_rate'], '.1%')}"
            + ("" if oos["within_margin"] else f"; NOT within the margin of {doc['inputs']['margin']:g}")
            + ("; routing costs more than the frontier alone" if iv["saving_share"]["point"] < 0 else ""))


def _out_of_sample_lines(doc: dict[str, Any]) -> list[str]:
    oos, inputs = doc["out_of_sample"], doc["inputs"]
    metric, iv = inputs["metric"], oos["intervals"]
    pct = f"{iv['saving_share']['confidence']:.0%}"
    rows = [[f"{metric}, routed", interval_text(iv[metric], ".4f")],
            [f"{metric}, frontier alone", interval_text(iv["frontier_" + metric], ".4f")],
            [f"{metric}, routed − frontier alone (paired)", interval_text(iv["delta_" + metric], "+.4f")],
            ["escalated", interval_text(iv["escalation_rate"], ".1%")],
            ["$ / request, routed", interval_text(iv["usd_per_request"], ".6f")],
            ["saving, share of the frontier-only bill", interval_text(iv["saving_share"], ".1%")]]
    policies = [[f["fold"], f["examples"], policy_rule(f["policy"]) if f["policy"] else "none within the margin: "
                 "all to the frontier", f["escalated"]] for f in oos["per_fold"]]
    verdict = ("within" if oos["within_margin"] else "**not** within")
    return ["## Out of sample: the figures to decide on", "",
            f"{oos['folds']}-fold cross-validation (seed {oos['seed']}): each fold routed by the policy chosen on "
            f"the other folds, then all held-out decisions scored as one blend. Intervals: {pct}, seeded paired "
            f"bootstrap over the {inputs['examples']} examples ({oos['resamples']} resamples). The routed "
            f"{metric} is {verdict} {inputs['margin']:g} of the frontier alone.", "",
            md_table(["figure", f"value [{pct} interval]"], rows), "",
            md_table(["fold", "examples", "policy chosen on the other folds", "escalated"], policies), ""]


def policy_rule(policy: dict[str, Any]) -> str:
    parts = [*(["a check fails"] if policy["checks"] else []),
             *([f"{policy['score']} < {policy['threshold']:.4g}"] if policy["threshold"] is not None else [])]
    return "escalate when " + (" or ".join(parts) or "never")
