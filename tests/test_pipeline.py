"""Pipeline files, the state file that --resume reads, and the CLI's errors (no model needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gekro_ft.errors import GekroError, PipelineConfigError, PipelineError
from gekro_ft.config import shipped
from gekro_ft.pipeline.config import load_pipeline
from gekro_ft.pipeline.state import STATE_FILE, PipelineState

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(shipped("pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_pipeline_loads_and_names_real_files(path):
    from gekro_ft.pipeline.run import preflight

    p = load_pipeline(path)
    assert Path(p.data.file).is_file()
    preflight(p)  # the recipe, suite, gate, profile and price names all resolve
    assert path.read_text().startswith("# gekro-ft "), "each pipeline starts with the command that runs it"


def test_relative_paths_are_read_from_the_pipeline_files_directory(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mine.jsonl").write_text("{}\n")
    (tmp_path / "cfg" / "mine.yaml").write_text(
        "name: mine\ndata: {file: mine.jsonl}\ntrain: {recipe: smollm2-135m-cpu}\n"
        "eval: {suite: ticket-extraction, baseline: 'recording:rec/answers.jsonl'}\n")
    monkeypatch.chdir(REPO)  # not the file's directory
    p = load_pipeline(tmp_path / "cfg" / "mine.yaml")
    assert p.data.file == str(tmp_path / "cfg" / "mine.jsonl")
    assert p.train.recipe == "smollm2-135m-cpu"  # a name, left alone
    assert p.eval.suite == "ticket-extraction"
    assert p.eval.baseline == f"recording:{tmp_path / 'cfg' / 'rec' / 'answers.jsonl'}"


def test_every_bad_key_is_reported_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: 'has space'\ndata: {file: x.jsonl, eval_frac: 2}\ntrain: {recipe: r, epochs: 3}\n"
                   "bench: {requests: 0}\n")
    with pytest.raises(PipelineConfigError) as e:
        load_pipeline(bad)
    msg = str(e.value)
    for expected in ("name:", "data.eval_frac:", "train.epochs: unknown key", "eval: required", "bench.requests:"):
        assert expected in msg
    assert str(bad) in msg


def test_overrides_apply_before_validation_and_change_the_fingerprint():
    plain = load_pipeline("demo")
    short = load_pipeline("demo", ["train.set=[train.max_steps=4]", "bench.requests=2"])
    assert short.train.set == ["train.max_steps=4"] and short.bench.requests == 2
    assert plain.fingerprint() != short.fingerprint()
    assert load_pipeline("demo").fingerprint() == plain.fingerprint()
    with pytest.raises(PipelineConfigError, match="no pipeline file of that name"):
        load_pipeline("nope")


def test_a_missing_data_file_is_named(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: p\ndata: {file: missing.jsonl}\ntrain: {recipe: smollm2-135m-cpu}\n"
                   "eval: {suite: ticket-extraction}\n")
    with pytest.raises(PipelineConfigError, match=r"data\.file: .*missing\.jsonl does not exist"):
        load_pipeline(cfg)


def test_state_records_stages_and_resume_checks_it_is_the_same_pipeline(tmp_path):
    state = PipelineState.open(tmp_path, "abc", resume=False)
    state.parent_run_id = "r1"
    state.mark("data", "done", seconds=1.5, counts={"rows": 3})
    state.mark("train", "interrupted")
    saved = orjson.loads((tmp_path / STATE_FILE).read_bytes())
    assert saved["schema_version"] == 1 and saved["stages"]["data"]["counts"] == {"rows": 3}

    with pytest.raises(PipelineError, match="--resume"):
        PipelineState.open(tmp_path, "abc", resume=False)  # never silently redo or overwrite a run
    with pytest.raises(PipelineError, match="different pipeline"):
        PipelineState.open(tmp_path, "other", resume=True)
    again = PipelineState.open(tmp_path, "abc", resume=True)
    assert again.parent_run_id == "r1" and again.done("data") and not again.done("train")

    (tmp_path / STATE_FILE).write_text('{"fingerprint": "abc", "stages": {')  # torn by a crash mid-write
    with pytest.raises(PipelineError, match="not valid JSON"):
        PipelineState.open(tmp_path, "abc", resume=True)


def test_cli_errors_are_one_line_with_exit_2(cli, tmp_path):
    result = cli("pipeline", "nope")
    assert result.exit_code == 2 and "Error (pipeline file): nope: no pipeline file of that name" in result.output
    result = cli("pipeline", "demo", "--set", "bench.concurrency=[0]", "--work", tmp_path)
    assert result.exit_code == 2 and "bench.concurrency" in result.output
    assert not (tmp_path / STATE_FILE).exists()  # nothing started


def test_preflight_names_a_bad_gate_or_price_before_any_stage_runs(tmp_path):
    from gekro_ft.pipeline.run import preflight

    with pytest.raises(GekroError, match="gate"):
        preflight(load_pipeline("demo", ["eval.gate=candidate.no_such_metric >= 1"]))
    with pytest.raises(GekroError, match="no-such-gpu"):
        preflight(load_pipeline("demo", ["cost.gpu=no-such-gpu"]))


def test_an_adapter_name_the_server_would_refuse_is_refused_with_the_pipeline_file():
    with pytest.raises(PipelineConfigError,
                       match=r"serve\.adapter_name: '\.\./\.\./etc' is not a valid adapter name"):
        load_pipeline("demo", ["serve.adapter_name=../../etc"])


def test_preflight_lists_every_problem_at_once():
    from gekro_ft.pipeline.run import preflight

    p = load_pipeline("demo", ["train.set=[lora.r=0]", "eval.gate=candidate.no_such_metric >= 1",
                               "serve.adapter_name=smollm2-135m-instruct", "cost.gpu=no-such-gpu",
                               "cost.compare=[gpt-4o-mini, no-such-api]"])
    with pytest.raises(PipelineConfigError) as e:
        preflight(p)
    assert [problem.split(":")[0] for problem in e.value.problems] == [
        "train.recipe", "eval.gate", "serve.adapter_name", "cost.gpu", "cost.compare[1]"]
    said = str(e.value)
    assert said.startswith(f"{p.source}: train.recipe: ") and p.source.endswith("demo.yaml")
    for part in ("lora.r", "no_such_metric", "the name the base model answers to", "'no-such-gpu'",
                 "'no-such-api'"):
        assert part in said
    assert "--gate" not in said  # the gate came from the pipeline file, not the command line


def test_preflight_checks_a_gates_syntax_even_when_the_suite_is_broken(tmp_path):
    from gekro_ft.pipeline.run import preflight

    p = load_pipeline("demo", [f"eval.suite={tmp_path / 'missing.yaml'}", "eval.gate=candidate.x >= "])
    with pytest.raises(PipelineConfigError) as e:
        preflight(p)
    assert [problem.split(":")[0] for problem in e.value.problems] == ["eval.suite", "eval.gate"]
