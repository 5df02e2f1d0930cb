"""The cost decision's worked examples, recomputed by hand in each test: compute-only against
with-overhead, an SLO choosing a slower level, a week of traffic sizing the fleet, buy against
rent, labour moving the break-even spend, the KV cache of a Llama-class 7B at 8k, an API bill
with cached input, the batch tier and retries — and the report, CLI and vLLM check built on them."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import REPO
from test_cost import bench_doc
from test_vllm_launcher import fake_vllm  # noqa: F401 - a fixture

MiB, GiB = 2**20, 2**30


# --- compute-only and with overhead ------------------------------------------------------------

def test_compute_only_and_with_overhead_side_by_side():
    from gekro_ft.cost.model import compute

    f = compute(2.49, 1000, overhead=0.3, utilizations=(1.0, 0.25))
    # compute only: 2.49 ÷ (1000 × 3600) × 1e6 = $0.691667 per 1M output tokens
    assert f.compute_only_usd_per_1m_output_tokens == pytest.approx(0.6916667, rel=1e-6)
    # with 30% overhead: 0.691667 × 1.3 = $0.899167
    assert f.full_load_usd_per_1m_output_tokens == pytest.approx(0.8991667, rel=1e-6)
    # at 25% utilization: 0.691667 ÷ 0.25 = $2.766667 and 0.899167 ÷ 0.25 = $3.596667
    assert f.by_utilization_compute_only["0.25"] == pytest.approx(2.7666667, rel=1e-6)
    assert f.by_utilization["0.25"] == pytest.approx(3.5966667, rel=1e-6)


# --- the SLO-bound operating point ---------------------------------------------------------------

def slo_bench():
    """Levels 1, 4, 16 at 20, 50, 80 tok/s, no errors; TTFT p95 = p50 × 1.3 and E2EL p95 = p50 × 1.3."""
    doc = bench_doc([(1, 20.0, 0), (4, 50.0, 0), (16, 80.0, 0)])
    for lv, (ttft, e2el) in zip(doc["levels"], [(100, 2000), (400, 5000), (2000, 12000)]):
        lv["ttft_ms"] = {"mean": ttft, "p50": ttft, "p90": ttft, "p95": ttft * 1.3, "p99": ttft * 1.5, "max": ttft * 2}
        lv["e2el_ms"] = {"mean": e2el, "p50": e2el, "p90": e2el, "p95": e2el * 1.3, "p99": e2el * 1.5, "max": e2el * 2}
        lv["input_tokens"], lv["output_tokens"], lv["completed"] = 3000, 1000, 10
    return doc


def test_an_slo_picks_a_slower_level_than_the_fastest():
    from gekro_ft.cost.operating_point import choose_level, parse_slo

    bench = slo_bench()
    slo = parse_slo("ttft_p95_ms=1000,e2el_p95_ms=8000")
    point = choose_level(bench, "b.json", slo=slo)
    # TTFT p95: 130, 520, 2600 ms; E2EL p95: 2600, 6500, 15600 ms. Concurrency 16 misses both,
    # 4 meets both (520 ≤ 1000, 6500 ≤ 8000): priced at 4's 50 tok/s, not 16's 80
    assert point.concurrency == 4 and point.tokens_per_s == 50.0
    assert "faster concurrency 16 misses it (ttft_p95_ms 2,600 > 1000; e2el_p95_ms 15,600 > 8000)" in point.reason
    # measured at that level: 1000 output tokens ÷ 10 requests = 100 per request; 3000 ÷ 1000 = 3 input per output
    assert point.output_tokens_per_request == 100 and point.input_tokens_per_output_token == 3
    assert [c.meets for c in point.checks] == [True, True, False]
    # no SLO: the fastest level without errors, and the report says so
    fastest = choose_level(bench, "b.json")
    assert fastest.concurrency == 16 and fastest.reason == "no SLO given: the fastest level without errors"


def test_an_slo_no_level_meets_is_an_error_naming_each_miss():
    from gekro_ft.cost.operating_point import choose_level, parse_slo
    from gekro_ft.errors import CostError

    with pytest.raises(CostError, match=r"concurrency 1: ttft_p95_ms 130 > 50"):
        choose_level(slo_bench(), "b.json", slo=parse_slo("ttft_p95_ms=50"))
    for bad in ("ttft_p97_ms=5", "ttft_ms=5", "e2el_p95_ms=-1", "latency=3"):
        with pytest.raises(CostError, match="bad SLO target"):
            parse_slo(bad)


# --- traffic → replicas and utilization ----------------------------------------------------------

def week_csv(path, busy=1000, quiet=100):
    """Weekdays 9:00–16:59 (8 h) at ``busy`` requests/h, every other hour at ``quiet``."""
    rows = ["# a test week", "day,hour,requests"]
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        rows += [f"{d},{h},{busy if d not in ('sat', 'sun') and 9 <= h < 17 else quiet}" for h in range(24)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_traffic_profile_gives_replicas_and_average_utilization(tmp_path):
    from gekro_ft.cost.traffic import fleet_for, read_traffic

    traffic = read_traffic(week_csv(tmp_path / "week.csv"), output_tokens_per_request=50)
    fleet = fleet_for(traffic, tokens_per_s=10)
    # one replica: 10 tok/s × 3600 = 36,000 tokens/h; the peak hour: 1000 × 50 = 50,000 → ⌈50,000 ÷ 36,000⌉ = 2
    assert fleet.capacity_tokens_per_hour == 36_000 and fleet.replicas == 2
    # the week: (5 × 8 × 1000 + (168 − 40) × 100) × 50 = (40,000 + 12,800) × 50 = 2,640,000 tokens
    assert fleet.weekly_output_tokens == 2_640_000
    # average utilization = 2,640,000 ÷ (2 × 36,000 × 168) = 2,640,000 ÷ 12,096,000 = 0.218254
    assert fleet.average_utilization == pytest.approx(0.2182540, rel=1e-6)
    # a month = 2,640,000 × 730 ÷ 168 = 11,471,428.6 tokens; peak-to-trough 1000 ÷ 100 = 10
    assert fleet.monthly_output_tokens == pytest.approx(11_471_428.57, rel=1e-9)
    assert traffic.peak_to_trough == 10


def test_a_stated_shape_holds_the_stated_month():
    from gekro_ft.cost.traffic import stated_traffic

    t = stated_traffic(requests_per_month=730_000, peak_to_trough=10, busy_hours=8, output_tokens_per_request=1)
    # a week holds 730,000 × 168 ÷ 730 = 168,000 requests; peak p: 168,000 = p × (40 + 128 ÷ 10) → p = 3181.8
    assert t.weekly_output_tokens == pytest.approx(168_000)
    assert t.peak_output_tokens_per_hour == pytest.approx(168_000 / 52.8)
    assert t.peak_to_trough == pytest.approx(10)


def test_a_bad_traffic_file_names_the_line_and_field(tmp_path):
    from gekro_ft.cost.traffic import SAMPLE, read_traffic
    from gekro_ft.errors import InputFileError

    bad = week_csv(tmp_path / "w.csv")
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], "mon,3,lots", *lines[6:]]))  # the 6th line of the file
    with pytest.raises(InputFileError, match=r"w\.csv:6: field requests: 'lots'"):
        read_traffic(bad, 10)
    bad.write_text("\n".join(lines[:-1]))  # sun 23:00 dropped
    with pytest.raises(InputFileError, match="1 hour\\(s\\) of the week missing, first sun 23:00"):
        read_traffic(bad, 10)
    shipped = read_traffic("business-hours", 1)  # the shipped sample, by name: office hours, weekends quiet
    assert shipped.source == str(SAMPLE) and shipped.peak_to_trough == 15 and len(shipped.output_tokens_per_hour) == 168
    with pytest.raises(InputFileError, match="no such traffic file.*shipped week: business-hours"):
        read_traffic("weekend-rush", 1)


# --- ownership: buy against rent, labour and the break-even spend --------------------------------

def test_buy_against_rent_and_each_against_an_api():
    from gekro_ft.cost.ownership import Ownership, break_even, payback_month

    rent = Ownership("rent", hourly=2.49)
    buy = Ownership("buy", purchase_price=30_000, lifetime_months=36, power_watts=700, kwh_price=0.15, pue=1.4)
    # rent: 2.49 × 730 = $1,817.70 a month; buy: power 0.7 kW × 730 h × $0.15 × 1.4 = $107.31 a month
    assert rent.running(1) == pytest.approx(1817.70) and buy.running(1) == pytest.approx(107.31)
    # buy's monthly TCO: 30,000 ÷ 36 + 107.31 = $940.643
    assert buy.monthly_tco(1) == pytest.approx(940.6433, rel=1e-6)
    # against an API billing $2,000 a month: rent is cheaper from month 1 (nothing up front);
    # buy pays back 30,000 ÷ (2,000 − 107.31) = 15.85 → month 16
    assert break_even("api", rent, 1, 2000).month == 1
    b = break_even("api", buy, 1, 2000)
    assert b.month == 16 and b.month_exact == pytest.approx(15.8505, rel=1e-4) and b.self_hosting_wins
    # buy against rent: 30,000 ÷ (1,817.70 − 107.31) = 17.54 → month 18
    month, exact = payback_month(buy.upfront(1) - rent.upfront(1), rent.running(1) - buy.running(1))
    assert month == 18 and exact == pytest.approx(17.5399, rel=1e-4)
    # an API cheaper than the running cost: never
    assert break_even("api", buy, 1, 100).month is None


def test_labour_moves_the_break_even_spend_from_hundreds_to_thousands():
    from gekro_ft.cost.ownership import Labour
    from gekro_ft.cost.plan import CostInputs, plan

    # a $0.685/h GPU: 0.685 × 730 = $500.05 a month — the "$500 of API spend" break-even
    bare = plan(CostInputs(0.685, 100))["ownership"]["rent"]
    assert bare["break_even_api_spend"] == pytest.approx(500.05)
    # + 0.2 of an engineer-year at $150k: 0.2 × 150,000 ÷ 12 = $2,500 a month → $3,000.05;
    # + 5 set-up days: 5 × 150,000 ÷ 260 = $2,884.62 once, spread over the 36-month horizon = $80.13
    staffed = plan(CostInputs(0.685, 100, labour=Labour(0.2, 150_000, 5)))["ownership"]["rent"]
    assert staffed["labour"]["monthly"] == pytest.approx(2500)
    assert staffed["break_even_api_spend"] == pytest.approx(500.05 + 2500 + 5 * 150_000 / 260 / 36)


def test_a_reserved_commitment_is_paid_even_when_the_traffic_stops():
    from gekro_ft.cost.ownership import Ownership, break_even

    reserved = Ownership("rent", hourly=1.0, commitment_months=12)
    # $730 a month, 12 months committed = $8,760 paid by month 12 whatever happens
    assert reserved.cumulative(1, 1) == pytest.approx(8760) and reserved.cumulative(1, 13) == pytest.approx(9490)
    # an API at $1,000 a month passes $8,760 in month 9 (9,000 ≥ 8,760)
    assert break_even("api", reserved, 1, 1000).month == 9


# --- the API's real bill -------------------------------------------------------------------------

def test_an_api_bill_with_cached_input_the_batch_tier_and_retries():
    from gekro_ft.cost.api_bill import TrafficMix, api_bill
    from gekro_ft.cost.prices import load_prices

    mini = load_prices().api_price("gpt-4o-mini")  # $0.15 in, $0.075 cached, $0.60 out; batch $0.075 / $0.30
    bill = api_bill("gpt-4o-mini", mini, 10e6, TrafficMix(3.0, cached_share=0.5, batch_share=0.2, retry_rate=0.05))
    # 10M output, 30M input. Batch (20%): 6M in × 0.075 + 2M out × 0.30 = 0.45 + 0.60 = $1.05
    assert bill.batch_usd == pytest.approx(1.05)
    # standard (80%): 24M in, half cached: 12M × 0.15 + 12M × 0.075 + 8M out × 0.60 = 1.80 + 0.90 + 4.80 = $7.50
    assert bill.standard_usd == pytest.approx(7.50) and bill.cached_input_tokens == pytest.approx(12e6)
    # retries: 5% of 8.55 = $0.4275; total $8.9775; blended 8.9775 ÷ 10M × 1e6 = $0.89775 per 1M output
    assert bill.retry_usd == pytest.approx(0.4275) and bill.total_usd == pytest.approx(8.9775)
    assert bill.blended_per_1m_output == pytest.approx(0.89775)
    # the sticker a calculator quotes: 10M × $0.60 = $6.00
    assert bill.sticker_usd == pytest.approx(6.0)


def test_a_batch_share_on_an_api_without_a_batch_tier_stays_standard():
    from gekro_ft.cost.api_bill import TrafficMix, api_bill
    from gekro_ft.cost.prices import ApiPrice

    p = ApiPrice(input_per_m=1, output_per_m=2, as_of="2026-01-01", source="https://example.com/p")
    bill = api_bill("x", p, 1e6, TrafficMix(1.0, batch_share=0.5))
    # no tier: 1M in × $1 + 1M out × $2 = $3, all standard, and the report says so
    assert bill.total_usd == pytest.approx(3.0) and bill.batch_usd == 0 and not bill.batch_applied


# --- serving memory ------------------------------------------------------------------------------

LLAMA_7B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_size": 4096,
            "max_position_embeddings": 4096, "torch_dtype": "float16"}


def test_the_kv_cache_of_a_llama_class_7b_at_8k():
    from gekro_ft.cost.kv_cache import capacity, shape_from_config

    shape = shape_from_config(LLAMA_7B, params=6.74e9, dtype="float16")
    # 2 × 32 layers × 32 KV heads × (4096 ÷ 32 = 128) head dim × 2 B = 524,288 B = 0.5 MiB per token
    assert shape.kv_bytes_per_token == 524_288 == MiB // 2
    # 8k tokens of context: 8192 × 0.5 MiB = 4 GiB
    assert shape.kv_bytes_per_token * 8192 == 4 * GiB
    cap = capacity(shape, gpu_memory_gib=24, context_tokens=8192, memory_utilization=0.9, overhead_gib=1)
    # weights 6.74e9 × 2 B = 13.48e9 B; KV = 24 GiB × 0.9 − 13.48e9 − 1 GiB = 23,192,823,398 − 13,480,000,000
    #   − 1,073,741,824 = 8,639,081,574 B → ⌊÷ 524,288⌋ = 16,477 tokens → ⌊÷ 8192⌋ = 2 sequences at 8k
    assert cap.kv_cache_bytes == pytest.approx(24 * GiB * 0.9 - 13.48e9 - GiB)
    assert cap.kv_cache_tokens == 16_477 and cap.max_concurrent_sequences == 2
    # grouped-query attention (8 KV heads, as Llama-3-8B): a quarter of the bytes, 131,072 B per token
    assert shape_from_config({**LLAMA_7B, "num_key_value_heads": 8}, params=8e9).kv_bytes_per_token == 131_072


def test_the_estimate_is_compared_with_what_vllm_allocated():
    from gekro_ft.cost.kv_cache import capacity, compare_with_vllm, shape_from_config

    cap = capacity(shape_from_config(LLAMA_7B, params=6.74e9), gpu_memory_gib=80, context_tokens=4096)
    # KV = 80 GiB × 0.9 − 13.48e9 − 1 GiB = 77,309,411,328 − 13,480,000,000 − 1,073,741,824
    #   = 62,755,669,504 B → ÷ 524,288 = 119,696 tokens → 119,696 ÷ 4096 = 29.22 sequences
    assert cap.kv_cache_tokens == 119_696
    # vLLM's /metrics: 7,431 blocks × 16 tokens = 118,896 tokens = 29.03x of 4,096; 119,696 ÷ 118,896 = 101%
    metrics = ('# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n'
               'vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9",'
               'num_cpu_blocks="None",num_gpu_blocks="7431"} 1.0\n')
    said = compare_with_vllm(cap, metrics)
    assert said == ("vLLM's KV cache holds 118,896 tokens, 29.03x sequences of 4,096 (its \"maximum concurrency\"); "
                    "the estimate was 119,696 tokens, 101% of vLLM's")
    # the same from its start-up log line, when /metrics does not answer
    assert compare_with_vllm(cap, "INFO [kv_cache_utils.py] GPU KV cache size: 118,896 tokens\n") == said
    assert compare_with_vllm(cap, "no such line") is None


@pytest.fixture
def gpu_of(tmp_path, monkeypatch):
    """A stand-in `nvidia-smi` first on PATH reporting one GPU of the given MiB (no GPU here)."""
    def install(mib: int) -> None:
        exe = tmp_path / "bin" / "nvidia-smi"
        exe.parent.mkdir(exist_ok=True)
        exe.write_text(f"#!{sys.executable}\nprint('NVIDIA Test GPU, {mib} MiB')\n")
        exe.chmod(0o755)
        monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    return install


def llama_dir(path):
    """A Llama-7B-shaped directory: config.json and a safetensors file whose header holds one
    fp16 tensor of 6.74e9 elements (13.48 GB, written sparse: the disk holds only the header)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(LLAMA_7B))
    n = 6_740_000_000
    header = json.dumps({"w": {"dtype": "F16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
    with open(path / "model.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 2 * n)
    return path


def test_vllm_is_refused_before_it_starts_when_the_weights_do_not_fit(tmp_path, gpu_of):
    from gekro_ft.errors import ServeError
    from gekro_ft.serve.vllm import check_capacity
    from test_vllm_launcher import vllm_profile

    model = llama_dir(tmp_path / "llama")
    gpu_of(12 * 1024)  # 12 GiB × 0.9 = 10.8 GiB < 12.55 GiB of weights
    with pytest.raises(ServeError, match=r"does not fit: 12\.0 GiB × 0\.9 − weights 12\.55 GiB"):
        check_capacity(vllm_profile({}), str(model), lambda m: None)
    gpu_of(80 * 1024)
    said = []
    estimate = check_capacity(vllm_profile({}, vllm={"max_model_len": 4096}), str(model), said.append)
    # the same arithmetic as the worked example: 119,696 tokens → ⌊119,696 ÷ 4,096⌋ = 29 sequences
    assert estimate.kv_cache_tokens == 119_696 and estimate.max_concurrent_sequences == 29
    assert said == ["capacity estimate: " + estimate.describe()]


def test_vllm_serve_stops_before_starting_vllm_when_the_model_cannot_fit(tmp_path, gpu_of, fake_vllm):
    from gekro_ft.errors import ServeError
    from gekro_ft.serve.vllm import run_vllm
    from test_vllm_launcher import vllm_profile

    gpu_of(12 * 1024)
    with pytest.raises(ServeError, match="does not fit"):
        run_vllm(vllm_profile({}), base_source=str(llama_dir(tmp_path / "llama")), say=lambda m: None)
    assert not fake_vllm.exists()  # the stand-in vllm never ran


# --- the report, the CLI and the pipeline summary ----------------------------------------------------

def test_the_report_states_every_input_and_recomputes(tmp_path, cli):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(slo_bench()))
    out = tmp_path / "cost"
    result = cli("cost", "report", "--bench", bench, "--gpu-hourly", "0.36", "--overhead", "0.25",
                 "--slo", "ttft_p95_ms=1000", "--traffic", week_csv(tmp_path / "w.csv"), "--compare", "gpt-4o-mini",
                 "--compare", "claude-3.5-haiku", "--labour", "0.1", "--buy-price", "2000", "--power-watts", "300",
                 "--kwh-price", "0.2", "--cached-share", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "cost.json").read_text())
    i = doc["inputs"]
    # priced at concurrency 4 (16's TTFT p95 2,600 ms misses 1,000): 50 tok/s, 100 output tokens a request
    assert doc["operating_point"]["concurrency"] == 4 and i["tokens_per_s"] == 50
    # compute only 0.36 ÷ (50 × 3600) × 1e6 = $2.00; with 25% overhead $2.50
    assert doc["compute_only_usd_per_1m_output_tokens"] == pytest.approx(2.0)
    assert doc["full_load_usd_per_1m_output_tokens"] == pytest.approx(2.5)
    # the week × 100 tokens: peak 100,000 tokens/h ÷ 180,000 per replica → 1 replica;
    # (40,000 + 12,800) × 100 = 5,280,000 a week ÷ (180,000 × 168) = 17.46% average
    f = doc["fleet"]
    assert f["replicas"] == 1 and f["average_utilization"] == pytest.approx(5_280_000 / (180_000 * 168))
    assert doc["effective"]["with_overhead_usd_per_1m_output_tokens"] == pytest.approx(2.5 / f["average_utilization"])
    # recomputed from the stated inputs alone: the month's tokens, the API bill, rent's TCO
    monthly = sum(doc["traffic"]["output_tokens_per_hour"]) * 730 / 168
    assert f["monthly_output_tokens"] == pytest.approx(monthly)
    mini = next(b for b in doc["api_bills"] if b["name"] == "gpt-4o-mini")
    p, ratio = i["prices"]["gpt-4o-mini"], doc["mix"]["input_per_output"]
    assert ratio == 3 and doc["mix"]["input_per_output_from"] == "measured by the bench at concurrency 4"
    by_hand = (monthly * ratio * 0.5 * p["input_per_m"] + monthly * ratio * 0.5 * p["cached_input_per_m"]
               + monthly * p["output_per_m"]) / 1e6
    assert mini["total_usd"] == pytest.approx(by_hand)
    rent = doc["ownership"]["rent"]
    assert rent["monthly_tco"] == pytest.approx(i["gpu_hourly"] * 730 * 1.25 + 0.1 * 150_000 / 12)
    buy = doc["ownership"]["buy"]
    # buy: power 0.3 kW × 730 × $0.2 × 1.0 = $43.80 × 1.25 overhead = $54.75 + labour $1,250
    assert buy["running_monthly"] == pytest.approx(43.8 * 1.25 + 1250)
    # buy against rent: 2,000 ÷ (0.36 × 730 × 1.25 − 54.75) = 2,000 ÷ 273.75 = 7.31 → month 8
    assert doc["buy_vs_rent"]["month"] == 8
    md = (out / "cost.md").read_text()
    assert "| 100% | $2.00 | $2.50 |" in md and "the faster concurrency 16 misses it" in md
    assert "Buying pays for itself against renting in **month 8**" in md
    pngs = ("throughput_latency", "cost_vs_utilization", "monthly_cost_vs_volume", "cumulative_cost", "weekly_traffic")
    for png in pngs:
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "cost.html").read_text().count("data:image/png;base64,") == len(pngs)


def test_cli_cost_memory_and_errors_in_one_line(tmp_path, cli):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_7B))
    result = cli("cost", "memory", "--config", config, "--params", "6.74e9", "--gpu-memory-gib", "24", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kv_bytes_per_token"] == 524_288 and doc["max_concurrent_sequences"] == 2  # as worked above
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(slo_bench()))
    result = cli("cost", "report", "--bench", bench, "--gpu-hourly", "1", "--slo", "ttft_p95_ms=50", "--out",
                 tmp_path / "o")
    assert result.exit_code != 0 and "no level meets the SLO" in result.output and "Traceback" not in result.output
    result = cli("cost", "--gpu-hourly", "1", "--tokens-per-s", "10", "--traffic", week_csv(tmp_path / "w.csv"))
    assert result.exit_code != 0 and "give the average output tokens per request" in result.output
    result = cli("cost", "--gpu-hourly", "1", "--tokens-per-s", "10", "--peak-to-trough", "10")
    assert result.exit_code != 0 and "--peak-to-trough shapes a volume: give --requests-per-month too" in result.output


def test_the_sample_week_ships_in_the_wheel_config():
    text = (REPO / "pyproject.toml").read_text()
    assert '"shipped/serve/traffic/*.csv"' in text
    assert (REPO / "serve" / "traffic" / "business-hours.csv").exists()


def test_the_pipeline_summary_shows_the_point_the_utilization_and_the_break_even(tmp_path):
    from gekro_ft.cost.report import CostOptions, cost_document
    from gekro_ft.pipeline.summary import cost_decision, summary_markdown

    cost = cost_document(CostOptions(0.36, "rtx-4090", compare=["gpt-4o-mini"], slo={"ttft_p95_ms": 1000.0},
                                     traffic=week_csv(tmp_path / "w.csv")), bench=slo_bench(), bench_path="b.json")
    summary = {"pipeline": "t", "stages": {}, "data": {}, "training": {}, "eval": {}, "paths": {},
               "mlflow": {"tracking_uri": "sqlite:///x", "parent_run_id": "r"}, "duration_s": 60,
               "cost": {"gpu": "rtx-4090", "tokens_per_s": cost["tokens_per_s"], "hourly": 0.36, "overhead": 0,
                        "compute_only_usd_per_1m_output_tokens": cost["compute_only_usd_per_1m_output_tokens"],
                        "full_load_usd_per_1m_output_tokens": cost["full_load_usd_per_1m_output_tokens"],
                        "usd_per_1m_useful_output_tokens": None, "apis": cost["apis"], **cost_decision(cost)}}
    md = summary_markdown(summary, curve=False)
    # the level (4, the SLO's), compute-only beside with-overhead ($2.00 both, no overhead), the fleet
    # (1 replica at 17.5%, as in the report test) and rent's break-even spend: 0.36 × 730 = $262.80
    assert "Priced at bench concurrency 4: the highest-throughput level meeting the SLO" in md
    assert "$2.00 per 1M output tokens compute only, $2.00 with overhead" in md
    assert "need 1 replica(s) at 17.5% average utilization" in md
    assert "it wins above $262.80 of API spend a month" in md


def test_a_pipeline_names_a_bad_slo_or_traffic_before_any_stage_runs(tmp_path):
    from gekro_ft.errors import PipelineConfigError
    from gekro_ft.pipeline.config import load_pipeline
    from gekro_ft.pipeline.run import preflight

    bad = tmp_path / "week.csv"
    bad.write_text("day,hour,requests\nmon,0,5\n")
    p = load_pipeline("demo", ["cost.slo={ttft_p97_ms: 5}", f"cost.traffic={bad}"])
    with pytest.raises(PipelineConfigError) as e:
        preflight(p)
    assert [problem.split(":")[0] for problem in e.value.problems] == ["cost.slo", "cost.traffic"]
