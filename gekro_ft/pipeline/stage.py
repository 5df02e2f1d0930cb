"""The one entry for pipeline stages that need a process of their own:

    python -m gekro_ft.pipeline.stage NAME REQUEST.json RESULT.json

A stage that loads a model (train, eval) or serves one (serve) runs here, so its memory —
a GPU's included — is given back when it ends, and a signal reaches it alone. REQUEST holds
the resolved config (nothing is looked up again by name); RESULT is written whole when the
stage finishes: what it produced, or ``{"error": {...}}`` with the one-line message a user
reads. The exit code is 0, the error's own code (2), or 130 when a signal stopped it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.errors import GekroError, one_line


def train(req: dict[str, Any]) -> dict[str, Any]:
    """QLoRA training from the resolved recipe; continues from the newest checkpoint."""
    from gekro_ft.progress import err, training_progress
    from gekro_ft.recipe import Recipe
    from gekro_ft.train.run import latest_checkpoint, preflight, train as run_training

    out = Path(req["output_dir"])
    recipe = Recipe.model_validate(req["recipe"])
    with err.status("preflight") as spinner:
        plan, tokenizer, data = preflight(recipe, output_dir=out, name=req["name"],
                                          data_validated=req.get("data_validated", False),
                                          status=lambda s: spinner.update(f"preflight: {s}"))
    for line in plan.summary_lines():
        err.print(line, markup=False)
    resume = latest_checkpoint(out) is not None
    if resume:
        err.print(f"resuming from {latest_checkpoint(out).name}")
    with training_progress(err) as on_progress:
        result = run_training(plan, tokenizer, data, resume=resume, on_progress=on_progress)
    return {"adapter": str(result.adapter_dir), "run_id": result.run_id,
            "registered_version": result.registered_version, "metrics": result.metrics}


def eval(req: dict[str, Any]) -> dict[str, Any]:  # noqa: A001 - the stage's name
    """The candidate against the baseline on the suite; promotion when the gate passes."""
    from gekro_ft.eval.runner import run_eval
    from gekro_ft.eval.suite import load_suite, with_gate
    from gekro_ft.progress import count_progress

    suite = load_suite(req["suite"])
    if req.get("gate"):
        suite = with_gate(suite, req["gate"])
    if req.get("limit"):
        suite = suite.model_copy(update={"limit": req["limit"]})
    outcome = run_eval(suite, req["candidate"], req.get("baseline"), out_dir=Path(req["out_dir"]),
                       baseline_model=req.get("baseline_model"), recordings_dir=Path(req["recordings"]),
                       promote=req.get("promote", False), progress=count_progress,
                       served_at=req.get("served_at"), candidate_model=req.get("candidate_model"),
                       candidate_key_env=req.get("candidate_key_env"))
    return {"verdict": outcome.verdict, "reason": outcome.report["gate"]["reason"],
            "report": str(outcome.paths["json"]), "promotion": outcome.report.get("promotion")}


def serve(req: dict[str, Any]) -> dict[str, Any]:
    """Serve a profile until SIGTERM/SIGINT."""
    from gekro_ft.serve.launch import serve as run_server
    from gekro_ft.serve.profile import load_profile

    code = run_server(load_profile(req.get("profile"), req.get("overrides") or {}))
    return {"exit_code": code}


STAGES = {"train": train, "eval": eval, "serve": serve}


def main(argv: list[str]) -> int:
    name, request, result = argv
    try:
        out = STAGES[name](orjson.loads(Path(request).read_bytes()))
    except GekroError as e:
        print(one_line(e), file=sys.stderr, flush=True)
        write_bytes_atomic(result, orjson.dumps({"error": {"kind": e.kind, "message": one_line(e),
                                                           "exit_code": e.exit_code}}))
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, nothing to report
        return 130
    write_bytes_atomic(result, orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
