"""Every finding code: a fixture that triggers it and one that does not."""

from __future__ import annotations

import json

import pytest

from conftest import GOOD, oa, write_jsonl
from gekro_ft.data.findings import CODES
from gekro_ft.data.validate import validate_file

SYS = ("system", "Be brief.")


def call(id_="call_1", name="get_weather", args='{"city": "Oslo"}'):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def with_msg(extra: dict, *, base=GOOD) -> dict:
    """GOOD with keys merged into its assistant message."""
    row = {"messages": [dict(m) for m in base["messages"]]}
    row["messages"][-1].update(extra)
    return row


def tool_conv(tool_call_id="call_1", args='{"city": "Oslo"}') -> dict:
    return {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call(args=args)]},
        {"role": "tool", "tool_call_id": tool_call_id, "content": "5 C"},
        {"role": "assistant", "content": "It is 5 C."}]}


# code -> (schema, rows that trigger it, rows that do not)
CASES: dict[str, tuple[str | None, list, list]] = {
    "invalid-json": (None, ['{"messages": [{"role": "user"'], [GOOD]),
    "not-an-object": ("openai", ["[1, 2]"], [GOOD]),
    # 129 levels; the good row has 128 (limits.MAX_DEPTH), brackets inside strings not counted
    "nesting-too-deep": (None, [GOOD, "[" * 129 + "]" * 129],
                         [GOOD, {**GOOD, "meta": json.loads("[" * 127 + "]" * 127), "note": "[" * 200}]),
    "unknown-schema": (None, [{"text": "hello"}], [GOOD]),
    "missing-field": ("openai", [{"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}], [GOOD]),
    "wrong-type": ("openai", [{"messages": "hi"}], [GOOD]),
    "unrecognized-key": ("openai", [with_msg({"score": 3})], [with_msg({"weight": 1})]),
    "non-string-content": ("openai", [oa(("user", 42), ("assistant", "x"))], [GOOD]),
    "empty-content": ("openai", [oa(("user", "hi"), ("assistant", "   "))], [GOOD]),
    "unknown-role": ("openai", [oa(("user", "hi"), ("bot", "x"))], [GOOD]),
    "invalid-weight": ("openai", [with_msg({"weight": 0.5})], [with_msg({"weight": 0})]),
    "invalid-tool-call": ("openai", [tool_conv(args="{not json")], [tool_conv()]),
    "no-user-turn": ("openai", [oa(SYS, ("assistant", "x"))], [oa(SYS, ("user", "q"), ("assistant", "x"))]),
    "no-assistant-turn": ("openai", [oa(("user", "hi"))], [GOOD]),
    "not-ending-on-assistant": ("openai", [oa(("user", "a"), ("assistant", "b"), ("user", "c"))], [GOOD]),
    "consecutive-same-role": ("openai", [oa(("user", "a"), ("user", "b"), ("assistant", "c"))],
                              [oa(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))]),
    "system-not-first": ("openai", [oa(("user", "a"), SYS, ("assistant", "b"))], [oa(SYS, ("user", "a"), ("assistant", "b"))]),
    "orphan-tool-result": ("openai", [tool_conv(tool_call_id="call_9")], [tool_conv()]),
    "template-placeholder": ("openai", [oa(("user", "Dear {{ customer_name }},"), ("assistant", "x"))],
                             [oa(("user", "Use {braces} and {{ in prose"), ("assistant", "x"))]),
    "duplicate-row": ("openai", [GOOD, oa(("user", "What is  2+2?\n"), ("assistant", "4"))],
                      [GOOD, oa(("user", "What is 3+3?"), ("assistant", "6"))]),
}

SCHEMA_SPECIFIC = {
    ("sharegpt", "unknown-role"): [{"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}],
    ("sharegpt", "invalid-tool-call"): [{"conversations": [
        {"from": "human", "value": "a"}, {"from": "function_call", "value": "get_weather(Oslo)"},
        {"from": "observation", "value": "5"}, {"from": "gpt", "value": "b"}]}],
    ("sharegpt", "orphan-tool-result"): [{"conversations": [
        {"from": "human", "value": "a"}, {"from": "observation", "value": "5"}, {"from": "gpt", "value": "b"}]}],
    ("sharegpt", "missing-field"): [{"conversations": [{"from": "human"}, {"from": "gpt", "value": "b"}]}],
    ("alpaca", "missing-field"): [{"instruction": "Say hi", "input": ""}, {"instruction": "x", "output": "y"}],
    ("alpaca", "non-string-content"): [{"instruction": "Add", "input": "", "output": 4}],
    ("alpaca", "empty-content"): [{"instruction": "Say hi", "input": "", "output": ""}],
}


def codes_at(report) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in report.findings:
        out.setdefault(f.code, []).append(f.line)
    return out


@pytest.mark.parametrize("code", sorted(CASES))
def test_code_is_found_where_it_is_and_not_elsewhere(tmp_path, code):
    schema, bad, good = CASES[code]
    report = validate_file(write_jsonl(tmp_path / "bad.jsonl", bad), schema)
    found = codes_at(report)
    assert code in found, f"{code} not reported; got {found}"
    assert found[code] == [len(bad)], "reported on the wrong line"
    assert report.findings[0].severity is CODES[code].severity
    report = validate_file(write_jsonl(tmp_path / "good.jsonl", good), schema)
    assert code not in codes_at(report)


@pytest.mark.parametrize("schema,code", sorted(SCHEMA_SPECIFIC))
def test_schema_specific_triggers(tmp_path, schema, code):
    report = validate_file(write_jsonl(tmp_path / "x.jsonl", SCHEMA_SPECIFIC[(schema, code)]), schema)
    assert code in codes_at(report)
    assert report.errors >= 1


def test_messages_name_the_field(tmp_path):
    report = validate_file(write_jsonl(tmp_path / "x.jsonl", [oa(("user", "hi"), ("assistant", 7))]), "openai")
    (f,) = [f for f in report.findings if f.code == "non-string-content"]
    assert f.message == "messages[1] 'content' is int, not a string"
    assert f.to_dict() == {"line": 1, "index": 0, "code": "non-string-content", "severity": "error",
                           "message": f.message}


def test_a_row_of_another_schema_is_named(tmp_path):
    rows = [oa(("user", f"q{i}"), ("assistant", "a")) for i in range(3)] + [{"instruction": "a", "output": "b"}]
    (f,) = validate_file(write_jsonl(tmp_path / "x.jsonl", rows), "openai").findings[:1]
    assert (f.code, f.line) == ("missing-field", 4)
    assert "looks like alpaca" in f.message


def test_too_few_examples_is_a_dataset_level_warning(tmp_path):
    few = validate_file(write_jsonl(tmp_path / "few.jsonl", [GOOD]), "openai")
    (f,) = [f for f in few.findings if f.code == "too-few-examples"]
    assert f.index is None and f.line is None and f.where == "file"
    rows = [oa(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(10)]
    enough = validate_file(write_jsonl(tmp_path / "enough.jsonl", rows), "openai")
    assert "too-few-examples" not in codes_at(enough)
    assert enough.errors == 0 and enough.usable_rows == 10


def test_structural_errors_do_not_cascade(tmp_path):
    """A row broken at the field level gets that finding, not a pile of shape findings after it."""
    report = validate_file(write_jsonl(tmp_path / "x.jsonl", [oa(("user", "hi"), ("assistant", None))]), "openai")
    assert set(codes_at(report)) == {"missing-field", "too-few-examples"}


def test_every_code_has_a_trigger_test():
    model_codes = {"truncated-answer", "no-loss-tokens", "template-error", "template-mismatch"}
    convert_codes = {"unconvertible", "dropped-field"}
    # tested in test_data_limits.py: file-level, or too large for a fixture row (an oversized row)
    limit_codes = {"row-too-large", "no-rows"}
    covered = (set(CASES) | {c for _, c in SCHEMA_SPECIFIC} | model_codes | convert_codes | limit_codes
               | {"too-few-examples"})
    assert covered == set(CODES)
