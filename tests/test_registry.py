"""The registry on a real MLflow store: promotion with history, rollback, adapter download."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import GOOD, write_jsonl


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store holding versions 1-3 of ``tickets``, built once: creating an MLflow database
    (its tables and migrations) takes seconds, copying the file takes none."""
    root = tmp_path_factory.mktemp("registry")
    env = pytest.MonkeyPatch()
    env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        from gekro_ft.tracking import register_adapter, setup

        mlflow = setup("tests")  # artifacts beside the database, where every copy finds them
        versions = []
        for i in range(3):
            adapter = root / f"adapter{i}"
            adapter.mkdir()
            (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "tag": i}))
            with mlflow.start_run() as run:
                mlflow.log_artifacts(str(adapter), artifact_path="adapter")
            versions.append(register_adapter(run.info.run_id, "adapter", "tickets", {}))
    finally:
        env.undo()
    return root / "mlflow.db", versions


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    """A fresh copy of the template store for each test, so promotions do not leak between them."""
    db, versions = template
    shutil.copyfile(db, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    return versions


def test_promote_records_history_and_rollback_walks_it_back(store, cli):
    from gekro_ft import registry

    assert store == ["1", "2", "3"]
    assert cli("promote", "tickets/1").output.strip() == "tickets@champion -> version 1"
    assert cli("promote", "models:/tickets/3").output.strip() == "tickets@champion -> version 3 (was version 1)"
    assert cli("promote", "tickets/3").output.strip() == "tickets@champion is already version 3"
    v3 = registry.resolve_version("models:/tickets@champion")
    assert str(v3.version) == "3" and v3.tags["gekro_ft.champion.replaced"] == "1"
    assert v3.tags["gekro_ft.champion.promoted_by"] == "ci-bot"

    assert cli("promote", "--rollback", "tickets").output.strip() == "tickets@champion -> version 1 (was version 3)"
    result = cli("promote", "--rollback", "tickets")
    assert result.exit_code == 2 and "no earlier holder" in result.output

    rows = {r.version: r for r in registry.list_versions("tickets")}
    assert rows["1"].aliases == ["champion"] and rows["3"].aliases == []


def test_errors_name_the_model(store, cli):
    result = cli("promote", "tickets/9")
    assert result.exit_code == 2 and "models:/tickets/9 is not in the registry" in result.output
    result = cli("promote", "--rollback", "nothing")
    assert result.exit_code == 2 and "Error" in result.output
    assert cli("promote", "tickets").exit_code == 2  # no version: a usage error, not a traceback
    for bad in ("tickets@champion", "models:/tickets@champion", "tickets/x", "/3", "a/b/3"):
        result = cli("promote", bad)
        assert result.exit_code == 2 and f"{bad!r} is not NAME/VERSION" in result.output
    result = cli("models", "list", "nothing")
    assert result.exit_code == 2 and "no registered model named 'nothing'" in result.output


def test_download_adapter_resolves_the_alias_at_call_time(store):
    from gekro_ft import registry

    registry.promote("tickets", "2")
    got = registry.download_adapter("models:/tickets@champion")
    assert json.loads((got / "adapter_config.json").read_text())["tag"] == 1  # version 2 = adapter1
    assert got.parts[-2:] == ("tickets", "2")
    registry.promote("tickets", "3")
    assert json.loads((registry.download_adapter("models:/tickets@champion") / "adapter_config.json")
                      .read_text())["tag"] == 2
    with pytest.raises(registry.RegistryError, match="not a registry reference"):
        registry.download_adapter("models:/tickets")


def test_an_eval_records_its_verdict_and_report_path_on_the_version(store, tmp_path, monkeypatch):
    import contextlib

    from gekro_ft import registry
    from gekro_ft.eval import runner
    from gekro_ft.eval.providers import Answer
    from gekro_ft.eval.suite import load_suite

    class Answers:  # a candidate that answers "4": what the registry records is under test, not generation
        kind = "stub"

        def __init__(self, spec):
            self.spec = spec

        def describe(self):
            return {"kind": self.kind, "spec": self.spec}

        def generate(self, convs, gen, progress=None):
            progress(len(convs))
            return [Answer("4", 5, 1, 0.1) for _ in convs]

    shown = []

    @contextlib.contextmanager
    def progress(label, total):
        shown.append([label, total, 0])
        yield lambda n: shown[-1].__setitem__(2, shown[-1][2] + n)

    monkeypatch.setattr(runner, "make_provider", lambda spec, *args: Answers(spec))
    write_jsonl(tmp_path / "d.jsonl", [GOOD])
    (tmp_path / "s.yaml").write_text("name: s\ndata: d.jsonl\nmetrics: [exact_match]\n"
                                     "gate: candidate.exact_match >= 1\n")
    outcome = runner.run_eval(load_suite(tmp_path / "s.yaml"), "models:/tickets/2", out_dir=tmp_path / "out",
                              promote=True, progress=progress)
    assert outcome.verdict == "pass" and outcome.report["promotion"]["changed"]
    assert shown == [["candidate: models:/tickets/2", 1, 1]]
    tags = registry.resolve_version("models:/tickets@champion").tags
    assert tags["gekro_ft.eval.verdict"] == "pass"
    assert tags["gekro_ft.eval.run_id"] == outcome.report["mlflow"]["run_id"]
    assert tags["gekro_ft.eval.report"] == str(outcome.paths["json"]) == str(tmp_path / "out" / "report.json")
