"""The cost report's plots, drawn from cost.json alone: each API keeps its colour in every plot
and every line is labelled where it ends, so a plot reads without its legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gekro_ft.reports import pyplot, save_figure

PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
           "tab:cyan")
SELF_HOSTED = {"rent": "black", "buy": "dimgray"}


def api_colours(doc: dict[str, Any]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(doc["inputs"]["prices"])}


def _label_end(ax: Any, xs: list[float], ys: list[float], text: str, colour: str) -> None:
    ax.annotate(text, (xs[-1], ys[-1]), xytext=(4, 0), textcoords="offset points", color=colour, fontsize=8,
                va="center")


def levels(doc: dict, path: Path) -> Path:
    plt = pyplot()
    lvls = [lv for lv in doc["levels"] if lv["concurrency"] is not None]
    x = [lv["concurrency"] for lv in lvls]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(x, [lv["output_tokens_per_s"] for lv in lvls], marker="o", color="black")
    point = doc.get("operating_point") or {}
    if point.get("concurrency") is not None:
        a.plot([point["concurrency"]], [point["tokens_per_s"]], "o", markersize=12, fillstyle="none", color="tab:red")
        a.annotate("priced here", (point["concurrency"], point["tokens_per_s"]), xytext=(6, -12),
                   textcoords="offset points", color="tab:red", fontsize=8)
    a.set_xlabel("concurrency")
    a.set_ylabel("output tokens/s")
    a.set_title("throughput")
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        b.plot(x, [lv["e2el_ms"][key] / 1000 for lv in lvls], style, marker="o", color="tab:purple", label=f"E2EL {key}")
        b.plot(x, [lv["ttft_ms"][key] / 1000 for lv in lvls], style, marker="x", color="tab:green", label=f"TTFT {key}")
    for name, limit in (point.get("slo") or {}).items():
        b.axhline(limit / 1000, color="tab:red", linewidth=0.8)
        b.annotate(f"SLO {name}", (x[0], limit / 1000), xytext=(0, 3), textcoords="offset points", color="tab:red",
                   fontsize=7)
    b.set_xlabel("concurrency")
    b.set_ylabel("seconds")
    b.set_title("latency percentiles (red: SLO)")
    b.legend(fontsize=7)
    return save_figure(fig, path)


def utilization(doc: dict, path: Path) -> Path:
    plt = pyplot()
    us = [u / 100 for u in range(2, 101)]
    full, bare = doc["full_load_usd_per_1m_output_tokens"], doc["compute_only_usd_per_1m_output_tokens"]
    colours = api_colours(doc)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    xs = [u * 100 for u in us]
    ax.plot(xs, [full / u for u in us], color="black", label="self-hosted, with overhead")
    _label_end(ax, xs[:1], [full / us[0]], "with overhead", "black")
    if bare != full:
        ax.plot(xs, [bare / u for u in us], color="black", linestyle="--", label="self-hosted, compute only")
    for api in doc["apis"]:
        c = colours[api["name"]]
        ax.axhline(api["blended_per_m"], color=c, linestyle="--", label=f"{api['name']} (blended)")
        ax.annotate(api["name"], (100, api["blended_per_m"]), xytext=(-4, 3), textcoords="offset points",
                    color=c, fontsize=8, ha="right")
        if api["break_even_utilization"] <= 1:
            ax.axvline(api["break_even_utilization"] * 100, color=c, linestyle=":")
    eff = doc.get("effective")
    if eff:
        ax.axvline(eff["average_utilization"] * 100, color="tab:red")
        ax.annotate(f"your traffic: {eff['average_utilization']:.1%}", (eff["average_utilization"] * 100,
                    eff["with_overhead_usd_per_1m_output_tokens"]), xytext=(4, 0), textcoords="offset points",
                    color="tab:red", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("utilization (%)")
    ax.set_ylabel("$ per 1M output tokens")
    ax.set_title("cost per output vs utilization (dotted: break-even)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def monthly_vs_volume(doc: dict, path: Path) -> Path:
    """Self-hosted stepwise by replicas, each API's real bill a line, crossings marked."""
    plt = pyplot()
    curve = doc["curve"]
    xs = [v / 1e6 for v in curve["monthly_output_tokens"]]
    colours = api_colours(doc)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    selfs = [k for k in curve if k.startswith("self-hosted")]
    for key in selfs:
        colour = SELF_HOSTED["buy" if "buy" in key else "rent"]
        ax.step(xs, curve[key], where="post", color=colour, label=key)
        _label_end(ax, xs, curve[key], key, colour)
    for name in doc["inputs"]["prices"]:
        ys = curve[name]
        ax.plot(xs, ys, color=colours[name], label=name)
        _label_end(ax, xs, ys, name, colours[name])
        for key in selfs:  # the first volume at which the API costs more than self-hosting
            cross = next((j for j in range(1, len(xs)) if ys[j] > curve[key][j]), None)
            if cross is not None:
                ax.plot([xs[cross]], [ys[cross]], "o", color=colours[name])
                ax.annotate(f"{xs[cross]:,.0f}M", (xs[cross], ys[cross]), xytext=(3, -10),
                            textcoords="offset points", color=colours[name], fontsize=7)
    if doc["traffic"]:
        stated = doc["traffic"]["monthly_output_tokens"] / 1e6
        ax.axvline(stated, color="tab:red", linestyle=":")
        ax.annotate("your traffic", (stated, 0), xytext=(3, 4), textcoords="offset points", color="tab:red",
                    fontsize=8)
    ax.set_xlabel("output tokens per month (millions)")
    ax.set_ylabel("$ per month")
    ax.set_title("monthly cost vs volume (self-hosted: TCO, steps = replicas; dots: break-even)")
    ax.legend(fontsize=7, loc="upper left")
    fig.subplots_adjust(right=0.8)
    return save_figure(fig, path)


def cumulative(doc: dict, path: Path) -> Path:
    """Cumulative cost over the horizon: rent, buy (when priced) and each API at the stated volume."""
    plt = pyplot()
    months = list(range(0, doc["inputs"]["horizon_months"] + 1))
    colours = api_colours(doc)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    for mode, own in doc["ownership"].items():
        ys = [own["upfront"] + m * own["running_monthly"] for m in months]
        if mode == "rent" and own["commitment_months"]:
            floor = own["upfront"] + own["commitment_months"] * own["running_monthly"]
            ys = [max(y, floor) for y in ys]
        ax.plot(months, ys, color=SELF_HOSTED[mode], linewidth=2, label=f"self-hosted ({mode})")
        _label_end(ax, months, ys, f"{mode}", SELF_HOSTED[mode])
        for be in own["break_evens"]:
            if be["month"] is not None and be["month"] <= months[-1]:
                m = be["month"]
                ax.plot([m], [be["api_monthly_usd"] * m], "o", color=colours[be["name"]])
                ax.annotate(f"{mode}: month {m}", (m, be["api_monthly_usd"] * m), xytext=(3, 4),
                            textcoords="offset points", fontsize=7, color=colours[be["name"]])
    payback = (doc.get("buy_vs_rent") or {}).get("month")
    if payback is not None and payback <= months[-1]:
        buy = doc["ownership"]["buy"]
        y = buy["upfront"] + payback * buy["running_monthly"]
        ax.plot([payback], [y], "D", color=SELF_HOSTED["buy"])
        ax.annotate(f"buying pays back: month {payback}", (payback, y), xytext=(6, -12), textcoords="offset points",
                    fontsize=8, color=SELF_HOSTED["buy"])
    for bill in doc["api_bills"]:
        ys = [bill["total_usd"] * m for m in months]
        ax.plot(months, ys, color=colours[bill["name"]], label=bill["name"])
        _label_end(ax, months, ys, bill["name"], colours[bill["name"]])
    ax.set_xlabel("months")
    ax.set_ylabel("cumulative $")
    ax.set_title("cumulative cost at your traffic (dots: break-even month)" if doc["api_bills"]
                 else "cumulative self-hosted cost (no traffic stated: no API bill to compare)")
    ax.legend(fontsize=7, loc="upper left")
    fig.subplots_adjust(right=0.8)
    return save_figure(fig, path)


def weekly_traffic(doc: dict, path: Path) -> Path:
    plt = pyplot()
    t, fleet = doc["traffic"], doc["fleet"]
    hours = list(range(len(t["output_tokens_per_hour"])))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.fill_between(hours, [v / 1e3 for v in t["output_tokens_per_hour"]], step="post", color="tab:blue", alpha=0.5,
                    label="output tokens per hour")
    one = fleet["capacity_tokens_per_hour"] / 1e3
    ax.axhline(one * fleet["replicas"], color="tab:red", label=f"capacity, {fleet['replicas']} replica(s) at the SLO")
    ax.annotate(f"capacity: {fleet['replicas']} × {one:,.1f}k tokens/h", (hours[0], one * fleet["replicas"]),
                xytext=(4, 4), textcoords="offset points", color="tab:red", fontsize=8)
    ax.set_ylim(0, max(one * fleet["replicas"], max(t["output_tokens_per_hour"]) / 1e3) * 1.3)
    ax.set_xticks(range(0, 168, 24), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set_xlabel("hour of the week")
    ax.set_ylabel("thousand output tokens / hour")
    ax.set_title(f"weekly traffic: average utilization {fleet['average_utilization']:.1%}, "
                 f"peak {fleet['peak_utilization']:.0%}")
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path)
