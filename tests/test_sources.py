"""Input formats and files that cannot be read: exit 2, a message naming the file, no traceback."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import GOOD, oa, write_jsonl
from gekro_ft.data.detect import detect_schema
from gekro_ft.data.validate import validate_file

ROWS = [oa(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(12)]


def test_json_array(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(ROWS, indent=2))
    report = validate_file(path)
    assert (report.schema, report.rows, report.errors) == ("openai", 12, 0)


def test_json_array_row_findings_use_the_index(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(ROWS[:11] + [oa(("user", "q"))]))
    (f,) = validate_file(path).findings
    assert (f.code, f.index, f.line) == ("no-assistant-turn", 11, None)


def test_parquet(tmp_path):
    rows = [{"instruction": f"i{i}", "input": "", "output": f"o{i}"} for i in range(12)]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = validate_file(path)
    assert (report.schema, report.rows, report.errors) == ("alpaca", 12, 0)


def test_datasets_save_to_disk_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(12)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    report = validate_file(tmp_path / "ds")
    assert (report.schema, report.rows, report.errors) == ("sharegpt", 12, 0)


def test_gzipped_jsonl(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    assert validate_file(path).usable_rows == 12


def test_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n\n" + json.dumps(oa(("user", "q"))) + "\n")
    f = [f for f in validate_file(path).findings if f.code == "no-assistant-turn"][0]
    assert (f.line, f.index) == (4, 1)


def test_detect_reports_confidence_on_mixed_files(tmp_path):
    rows = [GOOD] * 3 + [{"instruction": "a", "output": "b"}]
    det = detect_schema(write_jsonl(tmp_path / "x.jsonl", rows))
    assert (det.schema, det.confidence, det.votes) == ("openai", 0.75, {"openai": 3, "alpaca": 1})


@pytest.mark.parametrize("name,content,expect", [
    ("missing.jsonl", None, "no such file"),
    ("broken.json", '[{"messages": [{"role": "user", "content": "a"}]}, {"messa', "malformed JSON array"),
    ("binary.dat", "\x00\x01garbage", "is not JSONL, a JSON array or Parquet"),
    ("fake.parquet", "not parquet at all", "not a readable Parquet file"),
])
def test_unreadable_files_exit_2_naming_the_file(tmp_path, cli, name, content, expect):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    for command in (["data", "validate", path], ["data", "convert", path, tmp_path / "o.jsonl", "--to", "openai"],
                    ["data", "stats", path], ["data", "split", path, "-o", tmp_path / "split"]):
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        assert str(path) in result.output and expect in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "split").exists()


def test_an_invalid_line_is_a_finding_with_its_line_not_a_crash(tmp_path, cli):
    path = write_jsonl(tmp_path / "x.jsonl", ROWS[:5] + ['{"messages": [}'] + ROWS[5:])
    result = cli("data", "validate", path)
    assert result.exit_code == 1
    assert f"{path}:6: error invalid-json: invalid JSON" in result.output
