"""Conversion: exact round trips, refusals with findings, whole outputs only."""

from __future__ import annotations

import json

import orjson
import pytest

from conftest import DATASETS, oa, write_jsonl
from gekro_ft.atomic import atomic_output
from gekro_ft.data.convert import convert_file

RICH_OPENAI = [
    {"messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Bergen"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "5 C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "7 C"},
        {"role": "assistant", "content": "Oslo 5 C, Bergen 7 C.", "weight": 1},
        {"role": "user", "content": "Thanks, Æsa here."},
        {"role": "assistant", "content": "You're welcome!", "weight": 0}],
     "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
     "id": "row-1", "tags": ["tools", "multi-turn"]},
    {"messages": [{"role": "user", "content": "  keep   whitespace\n"}, {"role": "assistant", "content": "ok", "name": "bot"}]},
    {"messages": [{"role": "user", "content": "only call"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}, {"role": "assistant", "content": "Done."}]},
]

RICH_ALPACA = [
    {"instruction": "Translate to French", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Say hi", "input": "", "output": "Hi!", "system": "Be warm."},
    {"instruction": "And now?", "input": "", "output": "Still here.",
     "history": [["Are you there?", "Yes."], ["Sure?", "Quite."]], "id": 7},
]


def roundtrip(tmp_path, rows, via: str, back: str) -> list[dict]:
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    mid, out = tmp_path / "mid.jsonl", tmp_path / "out.jsonl"
    r1 = convert_file(src, mid, via)
    r2 = convert_file(mid, out, back)
    assert r1.refused == r2.refused == 0, r1.findings + r2.findings
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_openai_to_sharegpt_to_openai_is_exact(tmp_path):
    assert roundtrip(tmp_path, RICH_OPENAI, "sharegpt", "openai") == RICH_OPENAI


def test_alpaca_to_openai_to_alpaca_is_exact(tmp_path):
    assert roundtrip(tmp_path, RICH_ALPACA, "openai", "alpaca") == RICH_ALPACA


def test_alpaca_to_sharegpt_to_alpaca_keeps_the_text(tmp_path):
    back = roundtrip(tmp_path, RICH_ALPACA, "sharegpt", "alpaca")
    # ShareGPT has no instruction/input split: the input comes back joined to the instruction.
    assert back[0] == {"instruction": "Translate to French\n\nGood morning", "input": "", "output": "Bonjour"}
    assert back[1:] == RICH_ALPACA[1:]


@pytest.mark.parametrize("schema", ["openai", "sharegpt", "alpaca"])
@pytest.mark.parametrize("target", ["openai", "sharegpt", "alpaca"])
def test_shipped_dataset_converts_without_loss_of_rows(tmp_path, schema, target):
    out = tmp_path / "out.jsonl"
    result = convert_file(DATASETS / "ticket-extraction" / f"{schema}.jsonl", out, target)
    # ShareGPT cannot keep Alpaca's instruction/input apart: that, and only that, is reported.
    dropped = {"content parts (joined into one value)": 300} if (schema, target) == ("alpaca", "sharegpt") else {}
    assert (result.rows, result.written, result.refused, dict(result.dropped)) == (300, 300, 0, dropped)
    assert len(out.read_text().splitlines()) == 300


def test_sharegpt_uses_function_call_and_observation(tmp_path):
    out = tmp_path / "out.jsonl"
    convert_file(write_jsonl(tmp_path / "src.jsonl", RICH_OPENAI[:1]), out, "sharegpt")
    row = orjson.loads(out.read_bytes())
    tags = [t["from"] for t in row["conversations"]]
    assert tags == ["system", "human", "gpt", "function_call", "observation", "observation", "gpt", "human", "gpt"]
    calls = json.loads(row["conversations"][3]["value"])
    assert calls[0] == {"name": "weather", "arguments": {"city": "Oslo"}, "id": "call_a"}
    assert calls[1]["arguments"] == '{"city":"Bergen"}'  # kept as text: re-dumping would change it
    assert json.loads(row["tools"])[0]["function"]["name"] == "weather"


def test_alpaca_uses_history_for_multi_turn(tmp_path):
    rows = [oa(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))]
    out = tmp_path / "out.jsonl"
    convert_file(write_jsonl(tmp_path / "src.jsonl", rows), out, "alpaca")
    assert orjson.loads(out.read_bytes()) == {"instruction": "c", "input": "", "output": "d", "history": [["a", "b"]]}


def test_tool_use_into_alpaca_is_refused_per_row_and_counted(tmp_path):
    plain = oa(("user", "q"), ("assistant", "a"))
    out = tmp_path / "out.jsonl"
    result = convert_file(write_jsonl(tmp_path / "src.jsonl", [plain, RICH_OPENAI[2], plain]), out, "alpaca")
    assert (result.rows, result.written, result.refused) == (3, 2, 1)
    (f,) = result.findings
    assert (f.code, f.line, f.message) == ("unconvertible", 2, "Alpaca cannot express tool calls")
    assert len(out.read_text().splitlines()) == 2


def test_dropped_fields_are_counted(tmp_path):
    weighted = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0},
                             {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}
    result = convert_file(write_jsonl(tmp_path / "src.jsonl", [weighted]), tmp_path / "o.jsonl", "alpaca")
    assert dict(result.dropped) == {"weight": 1}
    assert [f.code for f in result.findings] == ["dropped-field"]
    plain = oa(("user", "q"), ("assistant", "a"))
    result = convert_file(write_jsonl(tmp_path / "src2.jsonl", [plain]), tmp_path / "o2.jsonl", "alpaca")
    assert not result.dropped and not result.findings


def test_unreadable_rows_are_refused_not_half_converted(tmp_path):
    rows = ['{"messages": [', oa(("user", 5), ("assistant", "x")), oa(("user", "q"), ("assistant", "a"))]
    result = convert_file(write_jsonl(tmp_path / "src.jsonl", rows), tmp_path / "o.jsonl", "sharegpt", "openai")
    assert (result.written, result.refused) == (1, 2)
    assert {(f.code, f.line) for f in result.findings} == {("invalid-json", 1), ("non-string-content", 2)}


def test_a_failure_mid_file_leaves_no_output(tmp_path):
    import gzip

    src = tmp_path / "src.jsonl.gz"
    data = gzip.compress(b"".join(orjson.dumps(oa(("user", f"q{i}"), ("assistant", "a"))) + b"\n" for i in range(5000)))
    src.write_bytes(data[: len(data) // 2])  # a truncated download
    out = tmp_path / "out.jsonl"
    out.write_text("previous good output\n")
    from gekro_ft.errors import InputFileError

    with pytest.raises(InputFileError, match="src.jsonl.gz"):
        convert_file(src, out, "sharegpt", "openai")
    assert out.read_text() == "previous good output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "src.jsonl.gz"]


def test_atomic_output_survives_an_interrupt(tmp_path):
    target = tmp_path / "t.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_is_a_one_line_error(cli, tmp_path):
    src = write_jsonl(tmp_path / "src.jsonl", [oa(("user", "q"), ("assistant", "a"))])
    (tmp_path / "adir").mkdir()
    from gekro_ft.errors import OutputError

    with pytest.raises(OutputError, match="adir is a directory; give a file name"):
        convert_file(src, tmp_path / "adir", "alpaca")
    result = cli("data", "convert", src, tmp_path / "adir", "--to", "alpaca")
    assert result.exit_code == 2 and "is a directory" in result.output  # click's own check
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("data", "convert", src, blocker / "sub" / "o.jsonl", "--to", "alpaca")
    assert result.exit_code == 2 and "cannot write" in result.output


def test_the_prompt_is_the_conversation_up_to_its_last_assistant_turn():
    from gekro_ft.data.schemas.openai import read

    conv, _ = read(RICH_OPENAI[0])
    messages = conv.messages()
    # system, user, assistant (tool calls), tool, tool, assistant, user | assistant (the answer)
    assert conv.prompt_messages() == messages[:-1]
    assert conv.prompt().tools == conv.tools and conv.prompt().extra == conv.extra
    no_answer, _ = read({"messages": [{"role": "user", "content": "hi"}]})
    assert no_answer.prompt_messages() == no_answer.messages()  # nothing to leave out
