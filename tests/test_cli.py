"""The CLI surface: exact output and exit codes over the real library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import DATASETS, GOOD, oa, write_jsonl

TICKETS = DATASETS / "ticket-extraction"


def test_help_does_not_import_torch_or_transformers():
    code = ("import sys\nfrom gekro_ft.cli import main\n"
            "for args in (['--help'], ['data', '--help'], ['data', 'validate', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'pyarrow') if m in sys.modules)\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr


def test_no_library_module_imports_the_cli():
    # layers point down: stages and the base return objects; only the CLI prints (progress included)
    import ast

    from conftest import REPO

    offenders = []
    for path in sorted((REPO / "gekro_ft").rglob("*.py")):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names
                          if n == "gekro_ft.cli" or n.startswith("gekro_ft.cli.")]
    assert offenders == []


def test_debug_env_shows_tracebacks(tmp_path):
    missing = tmp_path / "missing.jsonl"
    cmd = [sys.executable, "-m", "gekro_ft.cli", "data", "validate", str(missing)]
    plain = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GEKRO_FT_DEBUG": "0"})
    assert plain.returncode == 2
    assert plain.stderr.strip() == f"Error (cannot read input): {missing}: no such file"
    debug = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GEKRO_FT_DEBUG": "1"})
    assert "Traceback" in debug.stderr and "InputFileError" in debug.stderr


@pytest.mark.parametrize("schema", ["openai", "alpaca", "sharegpt"])
def test_detect(cli, schema):
    result = cli("data", "detect", TICKETS / f"{schema}.jsonl")
    assert (result.exit_code, result.output) == (0, f"{schema} (100% of 200 sampled rows)\n")
    result = cli("data", "detect", TICKETS / f"{schema}.jsonl", "--json")
    assert json.loads(result.output) == {"schema": schema, "confidence": 1.0, "sampled": 200, "votes": {schema: 200}}


def test_detect_unknown_exits_1(cli, tmp_path):
    result = cli("data", "detect", write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}]))
    assert result.exit_code == 1 and result.output.startswith("unknown")


def test_validate_clean_file(cli):
    result = cli("data", "validate", TICKETS / "openai.jsonl")
    assert result.exit_code == 0
    assert result.output.endswith("OK: 300 rows, 300 usable; 0 errors, 0 warnings\n")


def test_validate_json_document(cli, tmp_path):
    rows = [GOOD, oa(("user", "q")), GOOD]
    result = cli("data", "validate", write_jsonl(tmp_path / "x.jsonl", rows), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["schema"] == "openai" and doc["detection"]["confidence"] == 1.0
    assert doc["counts"] == {"rows": 3, "usable_rows": 2, "errors": 1, "warnings": 2,
                             "by_code": {"no-assistant-turn": 1, "duplicate-row": 1, "too-few-examples": 1}}
    assert doc["findings"][0] == {"line": 2, "index": 1, "code": "no-assistant-turn", "severity": "error",
                                  "message": "the conversation has no assistant turn"}


def test_validate_text_lists_findings_and_a_summary_table(cli, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [oa(("user", "q"))] * 3)
    result = cli("data", "validate", path, "--limit", "1")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}:1: error no-assistant-turn: the conversation has no assistant turn"
    assert lines[1] == "... and 5 more findings (--json lists them all)"
    assert "Findings by code" in result.output
    assert lines[-1] == "FAIL: 3 rows, 0 usable; 3 errors, 3 warnings"


def test_validate_with_the_bundled_model(cli):
    result = cli("data", "validate", TICKETS / "sharegpt.jsonl", "-m", "smollm2-135m-instruct",
                 "--max-seq-len", "150", "--json")
    doc = json.loads(result.output)
    assert result.exit_code == 1
    assert doc["model"] == "smollm2-135m-instruct"
    assert set(doc["counts"]["by_code"]) == {"truncated-answer"}
    result = cli("data", "validate", TICKETS / "sharegpt.jsonl", "-m", "smollm2-135m-instruct", "--max-seq-len", "512")
    assert result.exit_code == 0


def test_unknown_model_is_one_line_exit_2(cli, tmp_path):
    result = cli("data", "validate", TICKETS / "openai.jsonl", "-m", "nobody/no-such-model")
    assert result.exit_code == 2
    assert result.output.startswith("Error (model not found): no tokenizer for 'nobody/no-such-model'")
    assert len(result.output.strip().splitlines()) == 1


def test_render_marks_the_trained_tokens(cli):
    result = cli("data", "render", TICKETS / "openai.jsonl", "-m", "smollm2-135m-instruct", "--row", "2")
    assert result.exit_code == 0
    row = json.loads((TICKETS / "openai.jsonl").read_text().splitlines()[2])
    answer = row["messages"][-1]["content"]
    assert f"<|im_start|>assistant\n«{answer}<|im_end|>\n»" in result.output
    assert result.output.count("«") == 1
    assert row["messages"][1]["content"] in result.output


def test_render_json_and_bad_row(cli):
    result = cli("data", "render", TICKETS / "alpaca.jsonl", "-m", "smollm2-135m-instruct", "--json")
    doc = json.loads(result.output)
    trained = "".join(t["text"] for t in doc["tokens"] if t["loss"])
    assert trained.startswith('{"customer": ') and trained.endswith("}<|im_end|>\n")
    assert doc["n_loss_tokens"] == sum(t["loss"] for t in doc["tokens"])
    result = cli("data", "render", TICKETS / "alpaca.jsonl", "-m", "smollm2-135m-instruct", "--row", "300")
    assert (result.exit_code, result.output.strip()) == (2, f"Error (data): {TICKETS / 'alpaca.jsonl'} has no row 300 (rows are numbered from 0)")


def test_stats(cli, tmp_path):
    rows = [oa(("system", "s"), ("user", "ab"), ("assistant", "cde")),
            oa(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "defg"))]
    doc = json.loads(cli("data", "stats", write_jsonl(tmp_path / "x.jsonl", rows), "--json").output)
    assert doc["rows"] == 2 and doc["roles"] == {"user": 3, "assistant": 3, "system": 1}
    assert doc["turns_per_row"] == {"min": 2, "median": 3.0, "p95": 3.9, "max": 4, "mean": 3.0}
    assert doc["chars_per_row"]["min"] == 6 and doc["chars_per_row"]["max"] == 7
    assert doc["chars_per_answer"]["max"] == 4
    assert doc["tokens_per_row"] is None


def test_stats_with_tokens(cli):
    result = cli("data", "stats", TICKETS / "openai.jsonl", "-m", "smollm2-135m-instruct", "--json")
    doc = json.loads(result.output)
    assert doc["tokens_per_row"]["min"] > 100 and doc["trained_tokens_per_row"]["max"] < doc["tokens_per_row"]["min"]


def test_convert_and_split_commands(cli, tmp_path):
    result = cli("data", "convert", TICKETS / "alpaca.jsonl", tmp_path / "o.jsonl", "--to", "openai")
    assert (result.exit_code, result.output) == (0, f"alpaca -> openai: wrote 300 of 300 rows to {tmp_path / 'o.jsonl'}; refused 0\n")
    result = cli("data", "split", tmp_path / "o.jsonl", "--eval-frac", "0.2", "--seed", "3", "-o", tmp_path / "s", "--json")
    doc = json.loads(result.output)
    assert (doc["train"], doc["eval"], doc["duplicates"]) == (240, 60, 0)
    result = cli("data", "split", tmp_path / "o.jsonl", "--eval-frac", "1.5", "-o", tmp_path / "s")
    assert result.exit_code == 2 and "1.5" in result.output


def test_convert_exit_1_when_rows_are_refused(cli, tmp_path):
    tool_row = {"messages": [{"role": "user", "content": "q"},
                             {"role": "assistant", "content": None, "tool_calls": [
                                 {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                             {"role": "tool", "tool_call_id": "c", "content": "r"},
                             {"role": "assistant", "content": "a"}]}
    src = write_jsonl(tmp_path / "x.jsonl", [GOOD, tool_row])
    result = cli("data", "convert", src, tmp_path / "o.jsonl", "--to", "alpaca")
    assert result.exit_code == 1
    assert f"{src}:2: error unconvertible: Alpaca cannot express tool calls" in result.output
    assert "wrote 1 of 2 rows" in result.output and "refused 1" in result.output


def test_cli_reference_is_current():
    from conftest import REPO

    proc = subprocess.run([sys.executable, str(REPO / "docs" / "gen_cli_reference.py"), "--check"])
    assert proc.returncode == 0, "docs/cli.md is stale: run python docs/gen_cli_reference.py"
