"""cost.md from cost.json: each section shows its figures and the inputs and formula behind them."""

from __future__ import annotations

from typing import Any

from gekro_ft.reports import md_table


def usd(v: float | None) -> str:
    return "—" if v is None else f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"


def _tokens(v: float) -> str:
    return f"{v / 1e6:,.2f}M" if v >= 1e5 else f"{v:,.0f}"


def _point(doc: dict[str, Any]) -> list[str]:
    i, p = doc["inputs"], doc.get("operating_point")
    if p is None:
        return [f"Throughput given: **{doc['tokens_per_s']:,.1f} output tokens/s** (no bench, no SLO check).", ""]
    lines = [f"Measured on **{i['engine']}** serving `{i['model']}` (bench `{i['bench']}`).", "",
             "## Operating point", "",
             f"Priced at concurrency **{p['concurrency']}**: **{p['tokens_per_s']:,.1f} output tokens/s**, "
             f"{p['output_tokens_per_request']:,.1f} output tokens per request — {p['reason']}.", ""]
    slo = list(p["slo"])
    rows = [[lv["concurrency"], lv["requests"], lv["errors"], lv["output_tokens_per_s"], lv["ttft_ms"]["p95"],
             lv["tpot_ms"]["p95"], lv["e2el_ms"]["p50"], lv["e2el_ms"]["p95"],
             *(["yes" if c["meets"] else f"no: {c['why_not']}"] if slo else [])]
            for lv, c in zip(doc["levels"], p["checks"])]
    lines += [md_table(["concurrency", "requests", "errors", "output tok/s", "TTFT p95 ms", "TPOT p95 ms",
                        "E2EL p50 ms", "E2EL p95 ms", *(["meets the SLO"] if slo else [])], rows), "",
              "![throughput and latency](throughput_latency.png)", ""]
    return lines


def _per_output(doc: dict[str, Any]) -> list[str]:
    rows = [[f"{float(u):.0%}", usd(doc["by_utilization_compute_only"][u]), usd(v)]
            for u, v in doc["by_utilization"].items()]
    lines = ["## $ per 1M output tokens", "",
             f"At ${doc['gpu_hourly']:g}/h and {doc['tokens_per_s']:,.1f} output tokens/s: compute only "
             f"**{usd(doc['compute_only_usd_per_1m_output_tokens'])}**, with overhead {doc['overhead']:.0%} "
             f"**{usd(doc['full_load_usd_per_1m_output_tokens'])}** per 1M output tokens at full load.", "",
             md_table(["utilization", "compute only", "with overhead"], rows), ""]
    if doc["usd_per_1m_useful_output_tokens"] is not None:
        lines += [f"Per 1M **useful** output tokens at full load (÷ the eval's success rate "
                  f"{doc['success_rate']:.2f}): {usd(doc['usd_per_1m_useful_output_tokens'])}.", ""]
    return lines + ["![cost vs utilization](cost_vs_utilization.png)", ""]


def _traffic(doc: dict[str, Any]) -> list[str]:
    t, f, e = doc["traffic"], doc["fleet"], doc["effective"]
    if t is None:
        return ["## Traffic", "", "No traffic stated (`--traffic FILE` or `--requests-per-month` with "
                "`--peak-to-trough` and `--busy-hours`): utilization is shown as a range above, and no fleet "
                "or API bill is sized.", ""]
    return ["## Traffic, fleet and utilization", "",
            f"Traffic: {t['source']} ({t['unit']}"
            + (f" × {t['output_tokens_per_request']:,.1f} output tokens per request" if t["unit"] == "requests" else "")
            + f"): {_tokens(t['weekly_output_tokens'])} output tokens a week, {_tokens(t['monthly_output_tokens'])} "
            f"a month (× 730 ÷ 168); peak hour {_tokens(t['peak_output_tokens_per_hour'])}, peak-to-trough "
            + (f"{t['peak_to_trough']:.1f}×." if t["peak_to_trough"] else "∞ (hours without traffic)."), "",
            md_table(["replicas at peak", "capacity per replica (tokens/h)", "average utilization", "peak-hour load",
                      "effective $/1M compute only", "with overhead", "with ownership (rent TCO)"],
                     [[f["replicas"], f"{f['capacity_tokens_per_hour']:,.0f}", f"{f['average_utilization']:.1%}",
                       f"{f['peak_utilization']:.0%}", usd(e["compute_only_usd_per_1m_output_tokens"]),
                       usd(e["with_overhead_usd_per_1m_output_tokens"]), usd(e["with_tco_usd_per_1m_output_tokens"])]]),
            "", f"Replicas = ⌈{_tokens(f['peak_output_tokens_per_hour'])} ÷ {f['capacity_tokens_per_hour']:,.0f}⌉ = "
            f"{f['replicas']}; average utilization = {_tokens(f['weekly_output_tokens'])} ÷ ({f['replicas']} × "
            f"{f['capacity_tokens_per_hour']:,.0f} × 168) = {f['average_utilization']:.2%}; effective $/1M = full-load "
            "figure ÷ average utilization.", "", "![weekly traffic](weekly_traffic.png)", ""]


def _apis(doc: dict[str, Any]) -> list[str]:
    if not doc["apis"]:
        return []
    m = doc["mix"]
    lines = ["## Against APIs", "",
             md_table(["API", "output $/1M (sticker)", "blended $/1M (input at "
                       f"{m['input_per_output']:.2f}:1)", "break-even utilization", "break-even output tokens/month",
                       "GPU can reach it", "useful-output $/1M"],
                      [[a["name"], usd(a["output_per_m"]), usd(a["blended_per_m"]),
                        f"{a['break_even_utilization']:.1%}" + (" (never)" if a["break_even_utilization"] > 1 else ""),
                        f"{a['break_even_tokens_per_month'] / 1e6:,.1f}M", "yes" if a["reachable"] else "no",
                        usd(a["usd_per_useful_output_1m"])] for a in doc["apis"]]), ""]
    if doc["api_bills"]:
        lines += ["### The real monthly bill at your traffic", "",
                  f"Input {m['input_per_output']:.2f} tokens per output token ({m['input_per_output_from']}); "
                  f"{m['cached_share']:.0%} of input from the prompt cache; {m['batch_share']:.0%} of requests "
                  f"through the batch tier; {m['retry_rate']:.0%} retried.", "",
                  md_table(["API", "output tokens", "input tokens", "sticker (output only)", "standard tier",
                            "batch tier", "retries", "total / month", "blended $/1M output"],
                           [[b["name"], _tokens(b["output_tokens"]), _tokens(b["input_tokens"]), usd(b["sticker_usd"]),
                             usd(b["standard_usd"]), usd(b["batch_usd"]) + ("" if b["batch_applied"] else " (no tier)"),
                             usd(b["retry_usd"]), usd(b["total_usd"]), usd(b["blended_per_1m_output"])]
                            for b in doc["api_bills"]]), ""]
    return lines


def _ownership(doc: dict[str, Any]) -> list[str]:
    lines = ["## Ownership and break-even", ""]
    rows = []
    for mode, o in doc["ownership"].items():
        how = (f"${o['hourly']:g}/h × 730" + (f", {o['commitment_months']}-month commitment"
                                               if o["commitment_months"] else "") if mode == "rent"
               else f"${o['purchase_price']:,.0f} over {o['lifetime_months']} months, {o['power_watts']:g} W × "
                    f"${o['kwh_price']:g}/kWh × PUE {o['pue']:g}")
        rows.append([mode, o["replicas"], how, usd(o["labour"]["monthly"]), usd(o["upfront"]),
                     usd(o["running_monthly"]), usd(o["monthly_tco"])])
    lines += [md_table(["option", "replicas", "machine", "labour / month", "up-front", "running / month",
                        "monthly TCO = break-even API spend"], rows), ""]
    if doc.get("buy_vs_rent"):
        m = doc["buy_vs_rent"]["month"]
        lines += [("Buying pays for itself against renting in **month " + f"{m}**" if m else
                   "Buying never pays for itself against renting (its running cost is not lower)")
                  + " (extra up-front ÷ monthly saving).", ""]
    lab = next(iter(doc["ownership"].values()))["labour"]
    lines += [f"Labour: {lab['fraction']:g} of an engineer-year at ${lab['salary']:,.0f} = "
              f"{usd(lab['monthly'])}/month; set-up {lab['setup_days']:g} days = {usd(lab['setup'])} once.", ""]
    bes = [[mode, be["name"], usd(be["api_monthly_usd"]), usd(be["self_hosted_monthly_tco"]),
            f"month {be['month']}" if be["month"] is not None else "never",
            "self-hosting" if be["self_hosting_wins"] else "the API"]
           for mode, o in doc["ownership"].items() for be in o["break_evens"]]
    if bes:
        lines += [md_table(["option", "API", "API bill / month", "self-hosted TCO / month", "break-even",
                            "cheaper per month"], bes), ""]
    return lines + ["![monthly cost vs volume](monthly_cost_vs_volume.png)", "",
                    "![cumulative cost](cumulative_cost.png)", ""]


def cost_markdown(doc: dict[str, Any]) -> str:
    i = doc["inputs"]
    lines = ["# Cost per output", ""]
    lines += _point(doc) + _per_output(doc) + _traffic(doc) + _apis(doc) + _ownership(doc)
    lines += ["## Inputs and formulas", "",
              f"- GPU: ${doc['gpu_hourly']:g}/h" + (f" ({i['gpu_name']}, {i['gpu_price_note']})" if i["gpu_name"]
                                                   else f" ({i['gpu_price_note']})")
              + f"; overhead fraction {doc['overhead']:g}; one replica up 730 h a month: "
              f"{usd(doc['monthly_gpu_usd'])}; capacity {doc['capacity_tokens_per_month'] / 1e6:,.1f}M output "
              "tokens/month at the priced rate.",
              "- $ per 1M output tokens = $/h × (1 + overhead) ÷ (output tokens/s × 3600) × 10⁶ (compute only: "
              "overhead 0), then ÷ utilization.",
              "- API bill = standard tier (cached input at the cache rate) + batch tier, × (1 + retry rate); blended "
              "$/1M output = bill ÷ output tokens × 10⁶.",
              "- Monthly TCO = replicas × (rent × 730 × (1 + overhead), or power × (1 + overhead)) + labour + up-front "
              "(purchase, set-up) ÷ lifetime (buy) or horizon (rent); break-even month = up-front ÷ (API bill − "
              "running cost), rounded up.", ""]
    for name, p in i["prices"].items():
        lines.append(f"- {name}: ${p['input_per_m']:g} in / ${p['output_per_m']:g} out"
                     + (f" / ${p['cached_input_per_m']:g} cached in" if p.get("cached_input_per_m") is not None else "")
                     + (f" / batch ${p['batch_input_per_m']:g} in, ${p['batch_output_per_m']:g} out"
                        if p.get("batch_output_per_m") is not None else "")
                     + f" per 1M tokens, as of {p['as_of']}, {p['source']}")
    if i.get("bench_command"):
        lines += ["", f"Bench command: `{' '.join(map(str, i['bench_command']))}`"]
    lines += ["", f"Made by gekro-ft {doc['gekro_ft_version']} at {doc['created']}.", ""]
    return "\n".join(lines)
