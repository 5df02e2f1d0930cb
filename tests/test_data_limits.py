"""Hostile data files: nesting bombs and oversized rows are refused row by row within a memory
limit, and the command goes on with the other rows; a file with no rows, or no usable row, is an
error, not a success."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tracemalloc

import pytest

from conftest import GOOD, REPO, oa, write_jsonl
from gekro_ft.data import limits
from gekro_ft.data.source import iter_rows
from gekro_ft.data.split import split_file
from gekro_ft.data.validate import validate_file
from gekro_ft.errors import DataError, InputFileError

BOMB = "[" * 200_000 + "]" * 200_000  # 400 KB; every data command once grew past 20 GB on it
ROWS = [oa(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(12)]
MEMORY_LIMIT = 1 << 30  # address space of the child below: the whole CLI fits, a bomb did not


def child_env() -> dict[str, str]:
    # one BLAS thread: each one reserves address space, and the limit counts it
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# Every command in one child process (one interpreter start), under the memory limit; a
# MemoryError comes back as the command's exception instead of taking the machine down.
_RUN_COMMANDS = """
import json, sys
from click.testing import CliRunner
from gekro_ft.cli import main
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    crash = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    results.append({"code": r.exit_code, "output": r.output, "crash": repr(crash) if crash else None})
print(json.dumps(results))
"""


def run_under_memory_limit(commands: list[list[str]]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", _RUN_COMMANDS, json.dumps(commands)], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_memory, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_nesting_bombs_are_refused_row_by_row_within_a_memory_limit(tmp_path):
    good = [json.dumps(r) for r in ROWS]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text("\n".join(good + [BOMB] + good) + "\n")
    array = tmp_path / "mixed.json"
    array.write_text("[" + ",".join(good + [BOMB] + good) + "]")
    bomb = tmp_path / "bomb.json"
    bomb.write_text(BOMB)  # the file of the report: one item, 199,999 levels deep
    out = tmp_path / "out"
    commands = [["data", "validate", str(bomb)]]
    for path in (jsonl, array):
        commands += [["data", "detect", str(path)], ["data", "validate", str(path)],
                     ["data", "convert", str(path), str(out / f"{path.name}.sharegpt.jsonl"),
                      "--to", "sharegpt"],
                     ["data", "split", str(path), "-o", str(out / path.name)], ["data", "stats", str(path)]]
    results = run_under_memory_limit(commands)
    for args, r in zip(commands, results):
        assert r["crash"] is None and "Traceback" not in r["output"], (args, r)

    assert results[0]["code"] == 1 and f"{bomb}[0]: error nesting-too-deep: " in results[0]["output"]
    for path, (detect, validate, convert, split, stats) in zip((jsonl, array), (results[1:6], results[6:11])):
        where = f"{path}:13" if path is jsonl else f"{path}[12]"  # the bomb is the 13th row
        assert detect["code"] == 0 and detect["output"].startswith("openai (100% of 24 sampled rows)")
        assert validate["code"] == 1
        assert f"{where}: error nesting-too-deep: the row nests arrays/objects deeper than 128 levels" \
            in validate["output"]
        assert "25 rows, 24 usable; 1 errors" in validate["output"]
        assert convert["code"] == 1 and "wrote 24 of 25 rows" in convert["output"], convert
        assert split["code"] == 0 and "skipped 1 unreadable" in split["output"], split
        assert stats["code"] == 0 and "25 rows (24 readable)" in stats["output"], stats


def test_depth_is_counted_outside_strings_and_up_to_the_limit(tmp_path):
    deepest = {"messages": GOOD["messages"], "meta": json.loads("[" * 127 + "]" * 127)}  # 128 levels
    brackets_in_text = oa(("user", "[" * 5000), ("assistant", "{" * 5000 + '"\\"'))
    too_deep = {**deepest, "meta": [deepest["meta"]]}
    path = write_jsonl(tmp_path / "x.jsonl", [deepest, brackets_in_text, too_deep])
    report = validate_file(path, "openai")
    errors = [(f.code, f.line) for f in report.findings if f.severity.value == "error"]
    assert errors == [("nesting-too-deep", 3)]
    assert report.usable_rows == 2
    assert limits.too_deep("[" * 129 + "]" * 129) and not limits.too_deep("[" * 128 + "]" * 128)


def _same_keys_rows(schema: str, depth: int) -> list[str]:
    """Rows that share their keys (the block path decodes them in one msgspec call), three of
    them nested ``depth`` deep: in a field kept raw, in tools (typed) and as a turn's text."""
    nested = "[" * depth + "]" * depth
    if schema == "openai":
        def row(meta="0", tools="null", content='"q"'):
            return (f'{{"messages": [{{"role": "user", "content": {content}}}, '
                    f'{{"role": "assistant", "content": "a"}}], "tools": {tools}, "meta": {meta}}}')
    else:
        def row(meta="0", tools="null", content='"q"'):
            return (f'{{"conversations": [{{"from": "human", "value": {content}}}, '
                    f'{{"from": "gpt", "value": "a"}}], "tools": {tools}, "meta": {meta}}}')
    good = [row(meta=str(i)) for i in range(12)]
    return good[:6] + [row(meta=nested), row(tools=nested), row(content=nested)] + good[6:]


def findings_of(report):
    return [(f.code, f.index, f.line, f.message) for f in report.findings]


@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_rows_nested_past_the_recursion_limit_in_a_block_are_findings(tmp_path, schema):
    """msgspec, decoding a block of same-key rows whole, raised RecursionError on a row nested
    thousands deep (a traceback from `data validate`): now the block goes to the per-line path,
    and the fast path finds and writes what the row-by-row reference does."""
    from click.testing import CliRunner

    from gekro_ft.cli import main
    from gekro_ft.data.convert import convert_file

    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(_same_keys_rows(schema, 5000)) + "\n")
    reference = validate_file(path, schema, fast=False)
    fast = validate_file(path, schema)
    assert findings_of(fast) == findings_of(reference)
    assert [f.line for f in fast.findings if f.code == "nesting-too-deep"] == [7, 8, 9]
    assert (fast.rows, fast.usable_rows) == (15, 12)
    expected = convert_file(path, tmp_path / "reference.jsonl", "alpaca", schema, fast=False)
    got = convert_file(path, tmp_path / "fast.jsonl", "alpaca", schema)
    assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert got.to_dict() | {"target": ""} == expected.to_dict() | {"target": ""}
    for args in (["data", "validate", str(path)],
                 ["data", "convert", str(path), str(tmp_path / "cli.jsonl"), "--to", "alpaca"]):
        r = CliRunner().invoke(main, args)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert "RecursionError" not in r.output
    assert "nesting-too-deep" in CliRunner().invoke(main, ["data", "validate", str(path)]).output


def test_json_inside_a_row_is_bounded_too(tmp_path):
    """Tool arguments and ShareGPT tools/function calls are JSON inside strings: json.loads on a bomb
    there raised RecursionError (a traceback), now it is a finding."""
    openai = {"messages": [{"role": "user", "content": "q"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"id": "c", "type": "function",
                                "function": {"name": "f", "arguments": BOMB}}]},
                           {"role": "tool", "tool_call_id": "c", "content": "r"},
                           {"role": "assistant", "content": "a"}]}
    sharegpt = [{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": BOMB},
                                   {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]},
                {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                 "tools": BOMB}]
    found = validate_file(write_jsonl(tmp_path / "o.jsonl", [openai]), "openai").findings
    assert ("invalid-tool-call", "messages[1] tool_calls[0] arguments are nested deeper than 128 levels") in \
        [(f.code, f.message) for f in found]
    found = validate_file(write_jsonl(tmp_path / "s.jsonl", sharegpt), "sharegpt").findings
    messages = {(f.code, f.message) for f in found}
    assert ("invalid-tool-call",
            "conversations[1] function_call value is nested deeper than 128 levels") in messages
    assert ("wrong-type", "row 'tools' is a string but nested deeper than 128 levels") in messages


def _rows_and_peak(path):
    """The rows read from ``path`` and the peak of Python memory allocated while reading them."""
    tracemalloc.start()
    try:
        rows = list(iter_rows(path))
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_oversized_jsonl_line_is_skipped_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ROW_BYTES", 1 << 20)
    big = json.dumps(oa(("user", "x" * (20 << 20)), ("assistant", "a")))
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join([json.dumps(ROWS[0]), big, json.dumps(ROWS[1])]) + "\n")
    del big
    rows, peak = _rows_and_peak(path)
    assert [(r.line, r.code if r.error else None) for r in rows] == \
        [(1, None), (2, "row-too-large"), (3, None)]
    assert rows[1].error == "the row is larger than 1 MiB; it was not read"
    assert peak < 8 << 20, f"held {peak} bytes for a 20 MB line"  # the line whole would be 20 MB


def test_an_oversized_array_item_is_dropped_as_it_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ROW_BYTES", 1 << 20)
    big = {"messages": GOOD["messages"], "blob": ["x" * 1000] * 20_000}  # 20 MB
    path = tmp_path / "x.json"
    path.write_text(json.dumps([ROWS[0], big, ROWS[1], 7]))
    del big
    rows, peak = _rows_and_peak(path)
    assert [(r.index, r.code if r.error else r.value) for r in rows] == \
        [(0, ROWS[0]), (1, "row-too-large"), (2, ROWS[1]), (3, 7)]
    assert peak < 8 << 20, f"held {peak} bytes building a 20 MB row"  # the row whole would be 20 MB


def test_one_value_larger_than_a_row_stops_the_array_with_a_one_line_error(tmp_path, monkeypatch, cli):
    monkeypatch.setattr(limits, "MAX_ROW_BYTES", 1 << 20)
    path = tmp_path / "x.json"
    path.write_text(json.dumps([ROWS[0], oa(("user", "x" * (4 << 20)), ("assistant", "a"))]))
    with pytest.raises(InputFileError, match=r"x\.json: a single value in item 1 is larger than 1 MiB"):
        list(iter_rows(path))
    result = cli("data", "validate", path, "--from", "openai")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_json_arrays_read_as_before(tmp_path):
    """The array reader builds items from ijson's events now: every JSON type comes back as it was."""
    rows = [{"messages": GOOD["messages"], "meta": {"n": 1, "x": 1.5, "ok": True, "none": None,
                                                    "nested": [[], {}, [{"a": ["b"]}]], "k": {"k": "v"}}},
            "a string", 3, None, [], {}]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(rows))
    assert [r.value for r in iter_rows(path)] == rows


# --- no usable rows ---------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["", "  \n\n \t\n", "[]", " [ ]\n"],
                         ids=["empty", "whitespace", "[]", "[ ]"])
def test_validate_fails_on_a_file_without_rows(tmp_path, cli, content):
    path = tmp_path / ("x.json" if "[" in content else "x.jsonl")
    path.write_text(content)
    result = cli("data", "validate", path)
    assert result.exit_code == 1, result.output
    assert f"{path}: error no-rows: the file holds no rows" in result.output
    report = validate_file(path)
    assert [f.code for f in report.findings] == ["no-rows"]  # not also "too few examples"


def test_no_rows_is_not_said_of_a_file_with_rows(tmp_path):
    report = validate_file(write_jsonl(tmp_path / "x.jsonl", ['{"messages": [']), "openai")
    assert [f.code for f in report.findings] == ["invalid-json", "too-few-examples"]


@pytest.mark.parametrize("rows", [["{oops", oa(("user", 1)), BOMB], []], ids=["all-unreadable", "empty"])
def test_split_with_no_usable_row_is_an_error_and_writes_nothing(tmp_path, cli, rows):
    src = write_jsonl(tmp_path / "src.jsonl", rows) if rows else tmp_path / "src.jsonl"
    src.touch()
    with pytest.raises(DataError, match="nothing to split"):
        split_file(src, tmp_path / "out", 0.1, schema="openai")
    result = cli("data", "split", src, "-o", tmp_path / "out", "--from", "openai")
    assert result.exit_code == 2, result.output
    said = "none of its 3 rows is usable" if rows else "it holds no rows"
    assert result.output.startswith(f"Error (data): {src}: nothing to split: {said}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
