"""Cost figures recomputed by hand, the price table, and the cost report from a bench.json."""

from __future__ import annotations

import json

import pytest

from conftest import REPO


def test_worked_example_h100_at_1000_tokens_per_s():
    from gekro_ft.cost.model import compute

    f = compute(2.49, 1000, apis={"claude-3.5-haiku": (0.80, 4.00)}, input_per_output=3.0)
    # 2.49 $/h ÷ (1000 tok/s × 3600 s/h) × 1e6 = $0.691667 per 1M output tokens
    assert f.full_load_usd_per_1m_output_tokens == pytest.approx(0.6916667, rel=1e-6)
    # at 20% utilization: 0.691667 ÷ 0.2 = $3.458333
    assert f.by_utilization["0.2"] == pytest.approx(3.4583333, rel=1e-6)
    # 24/7 for a month: 2.49 × 730 = $1,817.70; capacity 1000 × 3600 × 730 = 2,628M tokens
    assert f.monthly_gpu_usd == pytest.approx(1817.70)
    assert f.capacity_tokens_per_month == pytest.approx(2.628e9)
    haiku = f.apis[0]
    # blended at 3:1 = 0.80 × 3 + 4.00 = $6.40 per 1M output tokens
    assert haiku.blended_per_m == pytest.approx(6.40)
    # output price only: 1817.70 ÷ 4.00 × 1e6 = 454.425M tokens a month; utilization 0.691667 ÷ 4 = 0.172917
    assert haiku.break_even_tokens_per_month_output_only == pytest.approx(454.425e6)
    assert haiku.break_even_utilization_output_only == pytest.approx(0.1729167, rel=1e-6)
    # blended: 1817.70 ÷ 6.40 × 1e6 = 284.016M tokens; 0.691667 ÷ 6.40 = 0.108073
    assert haiku.break_even_tokens_per_month == pytest.approx(284.015625e6)
    assert haiku.break_even_utilization == pytest.approx(0.1080729, rel=1e-6)
    assert haiku.reachable  # 284M < 2,628M


def test_overhead_success_rate_and_an_api_that_always_wins():
    from gekro_ft.cost.model import compute

    f = compute(2.49, 1000, overhead=0.3, apis={"gpt-4o-mini": (0.15, 0.60), "claude-3.5-haiku": (0.8, 4.0)},
                input_per_output=0.0, success_rate=0.8, baseline_success_rate=0.9, baseline_api="gpt-4o-mini")
    # overhead multiplies the bill: 0.691667 × 1.3 = $0.899167; monthly 1817.70 × 1.3 = $2,363.01
    assert f.full_load_usd_per_1m_output_tokens == pytest.approx(0.8991667, rel=1e-6)
    assert f.monthly_gpu_usd == pytest.approx(2363.01)
    # useful output: 0.899167 ÷ 0.8 = $1.123958 per 1M correct output tokens
    assert f.usd_per_1m_useful_output_tokens == pytest.approx(1.1239583, rel=1e-6)
    mini = f.apis[0]
    # 0.899167 ÷ 0.60 = 1.4986: above 1, the API is cheaper even at full load
    assert mini.break_even_utilization == pytest.approx(1.4986111, rel=1e-6)
    # 2363.01 ÷ 0.60 × 1e6 = 3,938.35M tokens: more than the 2,628M the GPU can make
    assert not mini.reachable
    assert mini.usd_per_useful_output_1m == pytest.approx(0.60 / 0.9)
    # the eval measured gpt-4o-mini only: haiku's success rate is unknown, so no useful-output price
    assert f.apis[1].usd_per_useful_output_1m is None


def test_bad_inputs_are_refused():
    from gekro_ft.cost.model import usd_per_1m_output

    for args in ((1.0, 0), (1.0, 10, 0), (1.0, 10, 1.5)):
        with pytest.raises(ValueError):
            usd_per_1m_output(*args)


def test_every_shipped_price_is_dated_and_sourced():
    import yaml

    from gekro_ft.cost.prices import load_prices

    table = load_prices()
    raw = yaml.safe_load((REPO / "serve" / "prices.yaml").read_text())
    assert set(table.api) == set(raw["api"]) and set(table.gpu) == set(raw["gpu"])
    for entry in [*table.api.values(), *table.gpu.values()]:
        assert entry.source.startswith("https://") and entry.as_of.year >= 2025
    assert table.api_price("Claude-3.5-Haiku").output_per_m == 4.00  # names are case-insensitive


def test_a_user_table_overrides_by_name_and_bad_tables_name_the_field(tmp_path, cli):
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.errors import PriceError

    mine = tmp_path / "prices.yaml"
    mine.write_text("api:\n  gpt-4o-mini: {input_per_m: 0.1, output_per_m: 0.5, as_of: 2026-01-01, "
                    "source: https://example.com/p}\n  in-house: {input_per_m: 0, output_per_m: 0.2, "
                    "as_of: 2026-01-01, source: https://example.com/q}\n")
    table = load_prices(mine)
    assert table.api_price("gpt-4o-mini").output_per_m == 0.5 and table.api_price("in-house").output_per_m == 0.2
    assert table.api_price("gpt-4o").output_per_m == 10.0  # the shipped entries stay
    mine.write_text("api:\n  x: {input_per_m: 1, output_per_m: 2, source: https://example.com/p}\n")
    with pytest.raises(PriceError, match=r"api\.x\.as_of"):
        load_prices(mine)
    result = cli("cost", "--gpu-hourly", "1", "--tokens-per-s", "10", "--compare", "gpt-5-ultra")
    assert result.exit_code == 2 and "no API price for 'gpt-5-ultra'" in result.output


def test_cli_json_gives_the_worked_figures(cli):
    result = cli("cost", "--gpu", "h100", "--tokens-per-s", "1000", "--compare", "claude-3.5-haiku",
                 "--utilization", "1,0.2", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["gpu_hourly"] == 2.49  # the table's H100 price
    assert doc["by_utilization"]["0.2"] == pytest.approx(3.4583333, rel=1e-6)
    assert doc["apis"][0]["break_even_tokens_per_month"] == pytest.approx(284.015625e6)
    assert cli("cost", "--gpu-hourly", "1").exit_code == 2  # no throughput: a usage error


def bench_doc(levels):
    def lat(p50):
        return {"mean": p50, "p50": p50, "p90": p50 * 1.2, "p95": p50 * 1.3, "p99": p50 * 1.5, "max": p50 * 2}

    return {"schema_version": 1, "command": ["gekro-ft", "bench", "--url", "http://x"], "engine": "cpu",
            "settings": {"model": "tickets"}, "hardware": {"cpu": "test"},
            "levels": [{"concurrency": c, "rate": None, "requests": 10, "completed": 10 - e, "errors": e,
                        "error_rate": e / 10, "duration_s": 1.0, "request_throughput": 1.0,
                        "output_tokens_per_s": tps, "total_tokens_per_s": tps * 2, "input_tokens": 1,
                        "output_tokens": 1, "ttft_ms": lat(100), "tpot_ms": lat(20), "itl_ms": lat(20),
                        "e2el_ms": lat(1000), "goodput_rps": None} for c, tps, e in levels]}


def test_cost_report_picks_the_fastest_clean_level_and_writes_everything(tmp_path, cli):
    bench = tmp_path / "bench.json"
    # concurrency 16 is fastest but had an error: 4 (50 tok/s) is used
    bench.write_text(json.dumps(bench_doc([(1, 20.0, 0), (4, 50.0, 0), (16, 80.0, 1)])))
    evalr = tmp_path / "report.json"
    evalr.write_text(json.dumps({"sides": {"candidate": {"success_rate": 0.5}, "baseline": {"success_rate": 1.0}}}))
    out = tmp_path / "cost"
    result = cli("cost", "report", "--bench", bench, "--gpu-hourly", "0.36", "--compare", "gpt-4o-mini",
                 "--eval", evalr, "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "cost.json").read_text())
    assert doc["operating_point"]["concurrency"] == 4
    assert doc["operating_point"]["reason"] == "no SLO given: the fastest level without errors"
    # 0.36 $/h ÷ (50 × 3600) × 1e6 = $2.00 per 1M; ÷ success 0.5 = $4.00 per 1M useful
    assert doc["full_load_usd_per_1m_output_tokens"] == pytest.approx(2.0)
    assert doc["usd_per_1m_useful_output_tokens"] == pytest.approx(4.0)
    md = (out / "cost.md").read_text()
    assert "| 100% | $2.00 | $2.00 |" in md and "gpt-4o-mini" in md and "https://openai.com/api/pricing/" in md
    pngs = ("throughput_latency.png", "cost_vs_utilization.png", "monthly_cost_vs_volume.png", "cumulative_cost.png")
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "cost.html").read_text().count("data:image/png;base64,") == len(pngs)


def test_cost_report_refuses_a_bad_bench_naming_the_field(tmp_path, cli):
    bench = tmp_path / "bench.json"
    doc = bench_doc([(1, 20.0, 0)])
    del doc["levels"][0]["e2el_ms"]
    bench.write_text(json.dumps(doc))
    result = cli("cost", "report", "--bench", bench, "--gpu-hourly", "1", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "levels[0].e2el_ms" in result.output
    bench.write_text(json.dumps({**bench_doc([(1, 20.0, 0)]), "schema_version": 7}))
    result = cli("cost", "report", "--bench", bench, "--gpu-hourly", "1", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "schema_version 7" in result.output
    assert not (tmp_path / "o").exists()


def test_an_eval_prices_its_self_hosted_side_as_the_cost_report_does(tmp_path):
    from gekro_ft.cost.model import compute
    from gekro_ft.eval.pricing import price_sides
    from gekro_ft.eval.suite import Suite

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_doc([(1, 20.0, 0), (4, 50.0, 0), (16, 80.0, 1)])))
    suite = Suite.model_validate({"name": "x", "data": "d.jsonl", "metrics": ["exact_match"],
                                  "gate": "candidate.exact_match >= 1", "cost": {"candidate_gpu": "rtx-4090"}})
    side = {"provider": {"kind": "local"}, "answered": 4, "correct": 2, "output_tokens": 1_000_000}
    cost = price_sides(suite, {"candidate": side}, bench, None)["candidate"]
    # the level the cost report picks: 50 tok/s (16 is faster but had an error); 0.44 $/h (rtx-4090)
    # ÷ (50 × 3600) × 1e6 = $2.4444 per 1M, the cost report's full-load figure without overhead
    assert cost["usd_per_1m_output_tokens"] == pytest.approx(0.44 / (50 * 3600) * 1e6)
    assert cost["usd_per_1m_output_tokens"] == compute(0.44, 50.0).full_load_usd_per_1m_output_tokens
    assert "50 output tokens/s measured" in cost["basis"]
    assert cost["total_usd"] == pytest.approx(cost["usd_per_1m_output_tokens"])  # 1M output tokens
    assert cost["usd_per_correct_output"] == pytest.approx(cost["total_usd"] / 2)
    bench.write_text(json.dumps(bench_doc([(1, 20.0, 1)])))
    assert price_sides(suite, {"candidate": side}, bench, None)["candidate"] == {
        "basis": "not priced", "reason": f"{bench}: no level finished without errors"}


def test_api_bill_prices_cached_input_and_the_batch_tier_by_hand():
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.errors import PriceError

    table = load_prices()
    mini = table.api_price("gpt-4o-mini")
    # 1M input of which 400k cached, 200k output, standard tier:
    # 600k × $0.15 + 400k × $0.075 + 200k × $0.60 = $0.09 + $0.03 + $0.12 = $0.24
    assert mini.bill(1_000_000, 200_000, cached_input_tokens=400_000) == pytest.approx(0.24)
    # batch tier: 1M × $0.075 + 200k × $0.30 = $0.075 + $0.06 = $0.135 (cache rate not stacked)
    assert mini.bill(1_000_000, 200_000, batch=True) == pytest.approx(0.135)
    assert mini.rate_limits["tier-1"].requests_per_min == 500
    with pytest.raises(PriceError, match="within the input"):
        mini.bill(100, 10, cached_input_tokens=200)


def test_every_shipped_api_says_where_to_ask_it_and_a_bad_ask_is_named(tmp_path, monkeypatch):
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.errors import PriceError
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint

    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    asked = {}
    for name, price in load_prices().api.items():
        provider = make_provider(price.ask, None, Endpoint(), tmp_path)
        asked[name] = (provider.base_url, provider.key_env)
    assert asked["gpt-4o-mini"] == ("https://api.openai.com/v1", "OPENAI_API_KEY")
    assert asked["claude-3.5-haiku"] == ("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY")
    mine = tmp_path / "p.yaml"
    mine.write_text("api:\n  x: {ask: gemini:flash, input_per_m: 1, output_per_m: 2, as_of: 2026-01-01, "
                    "source: https://example.com/p}\n")
    with pytest.raises(PriceError, match="api.x.ask: .*give PROVIDER:MODEL with PROVIDER one of openai, anthropic"):
        load_prices(mine)


def test_a_batch_price_needs_both_rates(tmp_path):
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.errors import PriceError

    mine = tmp_path / "p.yaml"
    mine.write_text("api:\n  x: {input_per_m: 1, output_per_m: 2, batch_input_per_m: 0.5, as_of: 2026-01-01, "
                    "source: https://example.com/p}\n")
    with pytest.raises(PriceError, match="batch_input_per_m and batch_output_per_m"):
        load_prices(mine)
    mine.write_text("api:\n  x: {input_per_m: 1, output_per_m: 2, as_of: 2026-01-01, source: https://example.com/p}\n")
    with pytest.raises(PriceError, match="no batch tier"):
        load_prices(mine).api_price("x").bill(10, 10, batch=True)
