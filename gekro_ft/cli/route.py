"""``gekro-ft route``: the hybrid router (local adapter first, frontier on doubt) and its calibration."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json
from gekro_ft.progress import count_progress
from gekro_ft.route import LOCAL_TIMEOUT_S


@click.group()
def route() -> None:
    """Route requests between the local adapter and a frontier API, and calibrate the policy.

    \b
    Examples:
      gekro-ft route serve tickets
      gekro-ft route calibrate ticket-extraction --local http://127.0.0.1:8000/v1 \\
          --local-model tickets --frontier openai:gpt-4.1-mini --out work/route
      gekro-ft route train-classifier -c work/route/route.json -o work/route/prompt-classifier.json
    """


@route.command("serve")
@click.argument("profile")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a profile key (repeatable).")
@click.option("--prices", type=click.Path(dir_okay=False), help="A price table adding to the shipped one.")
def serve(profile: str, overrides: tuple[str, ...], prices: str | None) -> None:
    """Run the router of PROFILE (a file or a name in serve/route/) until Ctrl-C or SIGTERM.

    Clients send OpenAI chat requests; each answer says who answered in the
    X-Gekro-Upstream header and the body's gekro_route field. Escalations are appended
    to the profile's escalation_log (OpenAI chat JSONL, ready for `gekro-ft data validate`).

    \b
    Example:
      gekro-ft route serve tickets --set port=8100
    """
    from gekro_ft.route.profile import load_route_profile
    from gekro_ft.route.run import run_router

    loaded = load_route_profile(profile, overrides)
    raise SystemExit(run_router(loaded, prices, on_ready=lambda url: err.print(f"routing on {url}")))


@route.command("calibrate")
@click.argument("suite")
@click.option("--local", "local_url", required=True, help="The local endpoint (…/v1): the CPU engine or vLLM.")
@click.option("--local-model", required=True, help="The model (adapter) name on the local endpoint.")
@click.option("--frontier", required=True, help="openai:MODEL, an OpenAI-compatible URL, or recording:FILE.")
@click.option("--frontier-model", help="The model at a --frontier URL.")
@click.option("--frontier-price", help="Price-table entry for the frontier (default: its model).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for route.json/.md/.html, the plots, route-profile.yaml and the recordings.")
@click.option("--metric", help="The quality figure kept within the margin (default: the first the suite's gate uses).")
@click.option("--margin", type=float, default=0.02, show_default=True,
              help="How far below the frontier alone the chosen policy's metric may fall.")
@click.option("--local-gpu", help="Price-table machine the local model is served on.")
@click.option("--local-tokens-per-s", type=float, help="Its output tokens/s (or --bench).")
@click.option("--bench", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A bench.json of the local endpoint: its fastest clean level's throughput.")
@click.option("--local-usd-per-1m", type=float, help="The local $ per 1M output tokens, stated directly.")
@click.option("--requests-per-month", type=float, default=1e6, show_default=True,
              help="The volume the monthly saving is stated at.")
@click.option("--prices", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A price table adding to the shipped one.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the suite's first N examples.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=LOCAL_TIMEOUT_S,
              show_default=True, help="Seconds the local upstream may take per answer (a CPU engine is slow).")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Local requests at once (default: the suite's endpoint concurrency).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Cross-validation folds for the out-of-sample figures.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the folds and the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the chosen point as JSON.")
def calibrate(suite: str, local_url: str, local_model: str, frontier: str, frontier_model: str | None,
              frontier_price: str | None, out_dir: Path, metric: str | None, margin: float, local_gpu: str | None,
              local_tokens_per_s: float | None, bench: Path | None, local_usd_per_1m: float | None,
              requests_per_month: float, prices: Path | None, limit: int | None, timeout_s: float,
              concurrency: int | None, folds: int, seed: int, as_json: bool) -> None:
    """Run SUITE through the local model and the frontier, sweep the thresholds, write the report
    and the cheapest profile whose quality stays within --margin of the frontier alone.

    The threshold is chosen on all examples (in sample); the figures to decide on are out of
    sample: --folds-fold cross-validation, with 95% bootstrap intervals. Answers are recorded in
    OUT/recordings as they arrive; a rerun, after a failure too, asks only for the missing ones.
    --frontier reference:SUITE@0.05 is a simulated frontier (the suite's references, 5% wrong).

    \b
    Example:
      gekro-ft route calibrate ticket-extraction --local http://127.0.0.1:8000/v1 --local-model tickets \\
          --frontier openai:gpt-4.1-mini --local-gpu rtx-4090 --bench work/demo/bench/bench.json --out work/route
    """
    from gekro_ft.route.calibrate import run_calibration

    doc, paths = run_calibration(suite, local_url=local_url, local_model=local_model, frontier=frontier,
                                 frontier_model=frontier_model, frontier_price=frontier_price, out_dir=out_dir,
                                 metric=metric, margin=margin, local_gpu=local_gpu,
                                 local_tokens_per_s=local_tokens_per_s, bench=bench,
                                 local_usd_per_1m=local_usd_per_1m, requests_per_month=requests_per_month,
                                 prices=prices, limit=limit, progress=count_progress, timeout_s=timeout_s,
                                 concurrency=concurrency, folds=folds, seed=seed)
    oos = doc["out_of_sample"]
    if as_json:
        print_json({"chosen": doc["chosen"], "saving": doc["saving"], "out_of_sample": {
            k: oos[k] for k in ("folds", "intervals", "within_margin")},
            "files": {k: str(v) for k, v in paths.items()}})
        return
    from gekro_ft.route.report import out_of_sample_line, policy_rule

    chosen, metric_name = doc["chosen"], doc["inputs"]["metric"]
    if chosen is None:
        out.print(f"no policy keeps {metric_name} within {margin:g} of the frontier alone; no profile written")
    else:
        out.print(f"chosen (in sample): {policy_rule(chosen)}: {chosen['escalation_rate']:.1%} escalated, "
                  f"{metric_name} {chosen['quality'][metric_name]:.4f} (frontier alone "
                  f"{doc['frontier_only']['quality'][metric_name]:.4f}), "
                  f"${doc['saving']['usd_per_month']:,.2f}/month saved at {requests_per_month:,.0f} requests")
        out.print(f"profile: {paths['profile']}")
    out.print(out_of_sample_line(doc))
    out.print(f"report: {paths['md']}, {paths['html']}")


@route.command("train-classifier")
@click.option("--calibration", "-c", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A route.json from `gekro-ft route calibrate` (repeatable).")
@click.option("--escalations", "-e", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A router's escalation log: each row a prompt that needed the frontier "
                   "(repeatable).")
@click.option("--out", "-o", "out_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The classifier artifact to write (JSON).")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="The probability the held-out figures are stated at (the profile sets the "
                   "served one).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Cross-validation folds (fewer when a label has fewer examples).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the training counts and held-out figures as JSON.")
def train_classifier(calibration: tuple[Path, ...], escalations: tuple[Path, ...], out_path: Path,
                     threshold: float, folds: int, as_json: bool) -> None:
    """Train the prompt classifier that routes before generation: from the prompt alone, will the
    local answer need the frontier? Writes a JSON artifact with its training data's hashes and
    its cross-validated figures; name it in a route profile's prompt_classifier.model.

    \b
    Example:
      gekro-ft route train-classifier -c work/route/route.json -e escalations.jsonl \\
          -o work/route/prompt-classifier.json
    """
    from gekro_ft.route.classifier_training import train_prompt_classifier

    doc = train_prompt_classifier(out_path, list(calibration), list(escalations),
                                  threshold=threshold, folds=folds)
    training, cv = doc["training"], doc["cross_validation"]
    if as_json:
        print_json({"out": str(out_path), "training": training, "cross_validation": cv})
        return
    precision = "n/a" if cv["precision"] is None else f"{cv['precision']:.1%}"
    out.print(f"trained on {training['examples']} prompts, "
              f"{training['positives']} needing escalation")
    out.print(f"held out ({cv['folds']}-fold, threshold {cv['threshold']:g}): "
              f"accuracy {cv['accuracy']:.1%} (majority class {cv['majority_accuracy']:.1%}), "
              f"recall {cv['recall']:.1%}, precision {precision}")
    out.print(f"classifier: {out_path}")
