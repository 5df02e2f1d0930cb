"""The fast path of ``data validate`` (typed decoding, chunks on every core) finds exactly what
the row-by-row reference finds: same codes, rows, lines, words and order."""

from __future__ import annotations

import errno
import json
import os
import random

import pytest

from conftest import GOOD, oa, write_jsonl
from gekro_ft.data import chunks, limits
from gekro_ft.data.findings import CODES
from gekro_ft.data.convert import convert_file
from gekro_ft.data.validate import validate_file
from test_findings import CASES, SCHEMA_SPECIFIC

# Codes a validation without a model can give; the rest need a tokenizer (the fast path is
# not taken then) or belong to conversion.
WITHOUT_MODEL = set(CODES) - {"truncated-answer", "no-loss-tokens", "template-error",
                              "template-mismatch", "unconvertible", "dropped-field"}


def as_sharegpt(row):
    """An OpenAI row of plain turns as ShareGPT, so both typed schemas are covered."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not all(
            isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant")
            for m in row["messages"]):
        return row
    tag = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": tag[m["role"]], "value": m["content"]} for m in row["messages"]],
            **{k: v for k, v in row.items() if k != "messages"}}


def mixed_file(path, schema: str, n_clean: int, seed: int = 0):
    """Clean rows (many duplicated, some whitespace variants) with every trigger row of
    ``test_findings`` scattered among them, and blank lines."""
    rng = random.Random(seed)
    triggers = [r for _, bad, _ in CASES.values() for r in bad]
    triggers += [r for (s, _), rows in SCHEMA_SPECIFIC.items() if s in (schema, "openai") for r in rows]
    triggers += [{"messages": [{"role": "developer", "content": "Be {{tone}}."},
                               {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]},
                 oa(("user", "x\u007b{y}}"), ("assistant", "z")), {**GOOD, "tools": [{"type": "function"}]},
                 {"conversations": [{"from": "system", "value": ""}, {"from": "human", "value": "q"},
                                    {"from": "gpt", "value": "a"}], "system": ""},
                 {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b", "weight": 0.5}]}]
    lines = []
    for i in range(n_clean):
        q = rng.choice(["", "", " "]) + f"question {rng.randrange(n_clean // 3)}" + rng.choice(
            ["", "", "", "", " ", "  \n", "\u3000", "\t"])
        row = oa(("system", "Be brief.") if i % 2 else ("user", "hi"), ("user", q), ("assistant", "answer"),
                 id=i) if i % 2 else oa(("user", q), ("assistant", "answer"), id=i)
        lines.append(row)
        if rng.random() < 0.05:
            lines.append(rng.choice(triggers))
        if rng.random() < 0.01:
            lines.append("")
    lines += triggers
    rows = [as_sharegpt(r) if schema == "sharegpt" else r for r in lines]
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def findings(report):
    return [(f.code, f.index, f.line, f.message) for f in report.findings], report.rows, report.usable_rows


@pytest.mark.parametrize("schema", ["openai", "sharegpt", None])
def test_fast_path_finds_what_the_reference_finds_in_one_chunk_and_in_many(tmp_path, monkeypatch, schema):
    path = mixed_file(tmp_path / "mixed.jsonl", schema or "openai", 3000)
    reference = validate_file(path, schema, fast=False)
    codes = {f.code for f in reference.findings}
    assert WITHOUT_MODEL - codes <= {"row-too-large", "no-rows", "too-few-examples"}, WITHOUT_MODEL - codes
    one = validate_file(path, schema)
    assert findings(one) == findings(reference)
    # small chunks in worker processes: duplicates and line numbers across chunk borders
    monkeypatch.setattr(chunks, "MIN_CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(chunks, "free_cores", lambda: 2)  # workers even on a busy machine
    for method in ("fork", "spawn"):  # spawned workers share one hash seed, forked ones the parent's
        monkeypatch.setattr(chunks, "start_method", lambda: method)
        seen = []
        many = validate_file(path, schema, on_bytes=seen.append)
        assert len(seen) > 4 and sum(seen) == path.stat().st_size
        assert findings(many) == findings(reference)
        assert many.by_code()["duplicate-row"] > 100


def test_the_file_level_codes_and_a_row_too_large_agree(tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    assert findings(validate_file(empty, "openai")) == findings(validate_file(empty, "openai", fast=False))
    few = write_jsonl(tmp_path / "few.jsonl", [GOOD, "", GOOD])
    assert findings(validate_file(few, "openai")) == findings(validate_file(few, "openai", fast=False))
    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        f.write(json.dumps(GOOD) + "\n" + '{"messages": "' + "x" * (limits.MAX_ROW_BYTES + 10) + '"}\n'
                + json.dumps(GOOD) + "\n")
    fast, ref = validate_file(big, "openai"), validate_file(big, "openai", fast=False)
    assert findings(fast) == findings(ref) and "row-too-large" in fast.by_code()


@pytest.mark.parametrize("to", ["openai", "sharegpt", "alpaca"])
@pytest.mark.parametrize("source", ["openai", "sharegpt"])
def test_convert_writes_what_the_row_by_row_reference_writes_in_one_chunk_and_in_many(tmp_path, monkeypatch,
                                                                                      source, to):
    path = mixed_file(tmp_path / "mixed.jsonl", source, 3000)
    reference = convert_file(path, tmp_path / "reference.jsonl", to, source, fast=False)
    one = convert_file(path, tmp_path / "one.jsonl", to, source)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert one.to_dict() | {"target": ""} == reference.to_dict() | {"target": ""}
    monkeypatch.setattr(chunks, "MIN_CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(chunks, "free_cores", lambda: 2)  # workers even on a busy machine
    seen = []
    many = convert_file(path, tmp_path / "many.jsonl", to, source, on_bytes=seen.append)
    assert len(seen) > 4 and sum(seen) == path.stat().st_size
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert many.to_dict() | {"target": ""} == one.to_dict() | {"target": ""}
    assert one.refused > 50 and one.findings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.jsonl", "mixed.jsonl", "one.jsonl",
                                                         "reference.jsonl"]  # no part files left
    # parts appended without the kernel's copy, and with it stopping part way
    real_copy, calls = os.copy_file_range, []

    def copy_then_fail(src, dst, count):
        calls.append(count)
        if len(calls) % 2:
            raise OSError(errno.EXDEV, "cross-device")
        return real_copy(src, dst, min(count, 1000))

    monkeypatch.setattr(os, "copy_file_range", copy_then_fail)
    convert_file(path, tmp_path / "many.jsonl", to, source)
    assert len(calls) > 4 and (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


def test_a_router_escalation_log_with_extra_top_level_fields_is_clean(tmp_path):
    """OpenAI chat rows with the router's own fields beside ``messages``: read, not refused."""
    rows = [oa(("user", f"Where is order {i}?"), ("assistant", f"Order {i} ships today."),
               escalated_at="2026-12-01T10:00:00Z", local_confidence=0.31, route={"reason": "low-logprob"})
            for i in range(12)]
    path = write_jsonl(tmp_path / "escalations.jsonl", rows)
    for fast in (True, False):
        report = validate_file(path, fast=fast)
        assert (report.schema, report.errors, report.warnings, report.usable_rows) == ("openai", 0, 0, 12)


def whitespace_file(path, schema: str):
    """Rows that differ from a clean one only where the block path must hand over to the row
    path: every character Python's ``str.split`` counts as whitespace (raw and escaped), edge
    and double spaces, empty and whitespace-only texts, placeholders, CRLF and CR, blank lines,
    a system turn to lift out, tools, a turn key too many; many are duplicates of the clean row."""
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    texts = ["hello world", " hello world", "hello world ", "hello  world", "", " ", "{{name}}",
             "a {{ b }} c", "hello\\world", "tab\\tlike", "x\by"]
    texts += [f"hello{s}world" for s in spaces] + [f"{s}hello world" for s in spaces]

    def row(text, system=None, **top):
        turns = [("system", system)] if system is not None else []
        turns += [("user", text), ("assistant", "fine")]
        if schema == "openai":
            return {"messages": [{"role": r, "content": c} for r, c in turns], **top}
        tag = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": tag[r], "value": c} for r, c in turns], **top}

    nested: list = [1]
    for _ in range(30):
        nested = [nested]
    lines = []
    for i, text in enumerate(texts):
        for ascii_only in (True, False):
            lines.append(json.dumps(row(text), ensure_ascii=ascii_only))
            lines.append(json.dumps(row("hi", system=text, id=i), ensure_ascii=ascii_only, separators=(",", ":")))
    lines += [json.dumps(row("hello world")) + "\r", "", "   ", "\r", json.dumps(row("hello world", tools="")),
              json.dumps(row("hello world", tools=[{"type": "function"}])),
              json.dumps(row("hello world", system="")), json.dumps(row("hello world", system="  ")),
              json.dumps(row("a\rb")), '{"x": 1}', "[1, 2]", "nope",
              json.dumps(row("hello world")).replace('"fine"', '"fine", "extra": 1'),
              json.dumps(row("hello world")).replace("}]", "}, {}]"),
              json.dumps(row("deep", meta=[[[[[[1]]]]]] * 30)), json.dumps(row("deeper", meta=nested)),
              # for convert: fields it carries over, written as the row path writes them
              json.dumps(row("hi", messages=[1])), json.dumps(row("dup", id=1))[:-1] + ', "id": "two"}',
              json.dumps(row("x", meta={"f": 1.5e3, "u": "\u00e9\u2028", "n": None, "e": "a\"b\\c/d",
                                        "big": 12345678901234567890, "t": [True, {"k": -0.0}]})),
              json.dumps({**row("hi", system="turn"), "system": "top"}),
              json.dumps({**row("hi"), "system": "top", "tag": "\ud83d\ude00"}, ensure_ascii=False),
              # what msgspec skips unchecked in fields the structs do not read, and orjson refuses
              json.dumps(row("big"))[:-1] + ', "n": 1e400}', json.dumps(row("big"))[:-1] + ', "n": 18E+307}',
              json.dumps(row("big"))[:-1] + ', "n": 1e-400}', json.dumps(row("big"))[:-1] + ', "n": 1' + "0" * 320 + "}"]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    return path


@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_the_block_path_hands_every_whitespace_case_to_the_row_path(tmp_path, monkeypatch, schema):
    """Texts whose whitespace only ``str.split`` can normalize, and lines over the size and
    depth limits, in small blocks (a line cut by a block's end, a line over the limit that ends
    in the block it grew into, and one skipped unread): the same findings as row by row."""
    from gekro_ft.data import line_blocks

    # what the block path relies on: printable ASCII holds one whitespace character, the space
    assert [c for c in map(chr, range(0x20, 0x7F)) if c.isspace()] == [" "]
    path = whitespace_file(tmp_path / "ws.jsonl", schema)
    reference = validate_file(path, schema, fast=False)
    assert findings(validate_file(path, schema)) == findings(reference)
    assert reference.by_code()["duplicate-row"] > 40
    assert_converts_as_the_reference(path, schema, tmp_path)
    monkeypatch.setattr(line_blocks, "BLOCK_BYTES", 700)
    monkeypatch.setattr(limits, "MAX_DEPTH", 20)
    monkeypatch.setattr(limits, "MAX_ROW_BYTES", 1000)
    with open(path, "a") as f:
        f.write(json.dumps(GOOD) + " " * 1200 + "\n" + json.dumps(GOOD) + " " * 300 + "\n")
    reference = validate_file(path, schema, fast=False)
    assert {"row-too-large", "nesting-too-deep"} <= set(reference.by_code())
    assert findings(validate_file(path, schema)) == findings(reference)
    assert_converts_as_the_reference(path, schema, tmp_path)


def assert_converts_as_the_reference(path, schema, tmp_path):
    for to in ("openai", "sharegpt"):
        reference = convert_file(path, tmp_path / "reference.jsonl", to, schema, fast=False)
        fast = convert_file(path, tmp_path / "fast.jsonl", to, schema)
        assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
        assert fast.to_dict() | {"target": ""} == reference.to_dict() | {"target": ""}
        assert fast.written > 100 and fast.refused


@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_lines_holding_two_rows_or_half_a_row_are_invalid_json_as_row_by_row(tmp_path, schema):
    """msgspec's ``decode_lines`` reads whitespace-separated values, not lines: two rows on one
    line beside a blank line, or one row split over two lines that each end in half of another,
    once decoded to as many values as lines and were taken as clean rows."""
    def row(i):
        return json.dumps(as_sharegpt(GOOD) if schema == "sharegpt" else GOOD)[:-1] + f', "id": {i}}}'

    whole, split = row(3), row(5)
    cut = split.index(", ") + 1
    lines = [row(0), row(1) + " " + row(2), "", "   ", whole[:-1] + "}" + row(4), "",
             split[:cut], split[cut:] + " " + row(6)] + [row(i) for i in range(7, 300)]
    path = tmp_path / "values.jsonl"
    path.write_text("\n".join(lines) + "\n")
    reference = validate_file(path, schema, fast=False)
    assert reference.by_code()["invalid-json"] == 4
    assert findings(validate_file(path, schema)) == findings(reference)
    for to in ("openai", "sharegpt"):
        expected = convert_file(path, tmp_path / "reference.jsonl", to, schema, fast=False)
        got = convert_file(path, tmp_path / "fast.jsonl", to, schema)
        assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
        assert got.refused == expected.refused == 4


def same_keys_file(path, schema: str, hostile: bool):
    """Rows that all carry the same top-level keys, so that whole blocks decode at once
    (:mod:`uniform`): texts that need normalizing (escaped, non-ASCII, every kind of space),
    placeholders, raw fields written as orjson would and not (spaces, ``1.5e3``, escapes),
    a key given twice, the keys in another order, tools, systems, CRLF. ``hostile``: also raw
    fields that only orjson refuses (a number too large, invalid UTF-8) or that nest too deep."""
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    texts = ["hello world", " hello world", "hello  world", "", " ", "{{name}}", "a {{ b }} c",
             "x\u007b{y}}", "line\nbreak", "tab\tin", "caf\u00e9", "\u00e9t\u00e9 ok"]
    texts += [f"hello{s}world" for s in spaces]
    tag = {"system": "system", "user": "human", "assistant": "gpt"}

    def row(text, meta, system=None, **top):
        turns = ([("system", system)] if system is not None else []) + [("user", text), ("assistant", "fine")]
        if schema == "openai":
            body = {"messages": [{"role": r, "content": c} for r, c in turns]}
        else:
            body = {"conversations": [{"from": tag[r], "value": c} for r, c in turns]}
        return {**body, "id": len(lines), "meta": meta, **top}

    metas = [1, "m", None, {"f": 1.5e3, "u": "\u00e9\u2028", "e": "a\"b\\c/d", "big": 12345678901234567890,
                            "t": [True, {"k": -0.0}]}, [[[[1]]]]]
    lines: list[str] = []
    for i, text in enumerate(texts):
        meta = metas[i % len(metas)]
        lines.append(json.dumps(row(text, meta), separators=(",", ":"), ensure_ascii=False))
        lines.append(json.dumps(row("hi", meta, system=text), ensure_ascii=i % 2 == 0))
        lines.append(json.dumps(row("hello world", meta)))  # a duplicate of the first
    top = {"system": "top"} if schema == "sharegpt" else {}
    lines += [json.dumps(row("hello world", 2, tools="")), json.dumps(row("hello world", 3, tools=[{"type": "function"}])),
              json.dumps({**row("hi", 4, system="turn"), **top}), json.dumps(row("hello world", 5)) + "\r",
              json.dumps(row("dup", 6))[:-1] + ', "id": "two"}',
              json.dumps(dict(reversed(row("order", 7).items()))), json.dumps(row("hello world", 8))]
    if hostile:
        nested: list = [1]
        for _ in range(30):
            nested = [nested]
        base = json.dumps(row("big", 0))[:-1]
        lines += [base.replace('"meta": 0', '"meta": 1e400') + "}", base.replace('"meta": 0', '"meta": 1' + "0" * 320) + "}",
                  json.dumps(row("deep", nested)), base.replace('"meta": 0', '"meta": "\udcff"') + "}"]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    return path


@pytest.mark.parametrize("hostile", [False, True])
@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_blocks_of_rows_with_the_same_keys_find_and_write_what_the_reference_does(tmp_path, monkeypatch, schema,
                                                                                  hostile):
    from gekro_ft.data import line_blocks, uniform

    path = same_keys_file(tmp_path / "same.jsonl", schema, hostile)
    decoded = []
    real = uniform.decode

    def spy(block, schema, **kw):
        out = real(block, schema, **kw)
        decoded.append(out is not None)
        return out

    monkeypatch.setattr(uniform, "decode", spy)
    monkeypatch.setattr(limits, "MAX_DEPTH", 20)
    whole_file = line_blocks.BLOCK_BYTES  # one block: with a hostile row in it, none takes the path
    for block_bytes in (600, 2000, whole_file):
        monkeypatch.setattr(line_blocks, "BLOCK_BYTES", block_bytes)
        decoded.clear()
        reference = validate_file(path, schema, fast=False)
        assert findings(validate_file(path, schema)) == findings(reference)
        assert any(decoded) != (hostile and block_bytes == whole_file), decoded
        if hostile:
            assert {"invalid-json", "nesting-too-deep"} <= set(reference.by_code())
        for to in ("openai", "sharegpt"):
            expected = convert_file(path, tmp_path / "reference.jsonl", to, schema, fast=False)
            got = convert_file(path, tmp_path / "fast.jsonl", to, schema)
            assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
            assert got.to_dict() | {"target": ""} == expected.to_dict() | {"target": ""}


def test_free_cores_are_the_idle_share_of_the_usable_cores_over_a_window(monkeypatch):
    """Two readings of /proc/stat 0.1 s apart: one core idle throughout, one busy, one half."""
    parsed = chunks._cpu_times(None)  # this machine's, read for real
    assert parsed and all(total >= quiet >= 0 for total, quiet in parsed.values())
    readings = iter([{0: (1000, 500), 1: (1000, 500), 2: (1000, 500)},
                     {0: (1010, 510), 1: (1010, 500), 2: (1010, 505)}])
    monkeypatch.setattr(chunks, "_cpu_times", lambda usable: next(readings))
    monkeypatch.setattr(chunks, "usable_cores", lambda: 3)
    monkeypatch.setattr(chunks, "IDLE_WINDOW_S", 0)
    assert chunks.free_cores() == 2  # 1 + 0 + 0.5, rounded to even


def test_the_duplicate_key_tells_order_and_place_apart():
    from gekro_ft.data.typed import pieces_key

    turns = ["", "user", "a b", "assistant", "c"]
    assert pieces_key(turns) == pieces_key(list(turns))
    assert len({pieces_key(turns), pieces_key(["", "user", "c", "assistant", "a b"]),
                pieces_key(["a b", "user", "", "assistant", "c"]), pieces_key(turns + ["user", ""]),
                pieces_key(["", "user", "a b", "assistant", "c", "user", "x"])}) == 5
    assert -(1 << 63) <= pieces_key(turns) < (1 << 63)


@pytest.mark.parametrize("repeats", [0, 1, 300])
def test_duplicates_are_placed_after_their_first_as_a_dict_would(repeats):
    """The merge's duplicate finder against the plainest one: a dict of first places."""
    import numpy as np

    from gekro_ft.data.validate_chunks import duplicates_of

    rng = random.Random(repeats)
    keys = [rng.randrange(-(1 << 63), 1 << 63) for _ in range(2000)]
    for _ in range(repeats):  # a key again, later, and sometimes a third time
        keys.insert(rng.randrange(len(keys) + 1), rng.choice(keys))
    first: dict[int, int] = {}
    expected = []
    for i, k in enumerate(keys):
        if k in first:
            expected.append((i, first[k]))
        first.setdefault(k, i)
    later, original = duplicates_of(np.array(keys, np.int64))
    assert list(zip(later.tolist(), original.tolist())) == expected
    assert len(expected) >= repeats


def test_workers_are_forked_only_while_no_other_thread_runs():
    """In a fresh interpreter (this one may hold threads of earlier tests)."""
    import subprocess
    import sys

    script = ("import threading; from gekro_ft.data import chunks; alone = chunks.start_method(); "
              "stop = threading.Event(); t = threading.Thread(target=stop.wait); t.start(); "
              "print(alone, chunks.start_method()); stop.set(); t.join()")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == (["fork", "spawn"] if sys.platform == "linux" else ["spawn", "spawn"])


def validate_beside_the_reference(path, lines, schema, monkeypatch):
    """Writes ``lines`` and validates them row by row and on the fast path, whose findings must
    be the reference's: (the reference's report, the lines the fast path took row by row)."""
    from gekro_ft.data import validate_chunks

    path.write_text("\n".join(lines) + "\n")
    reference = validate_file(path, schema, fast=False)
    by_row = []
    real = validate_chunks.check_row
    monkeypatch.setattr(validate_chunks, "check_row", lambda raw, *a: by_row.append(raw.line) or real(raw, *a))
    assert findings(validate_file(path, schema)) == findings(reference)
    return reference, by_row


@pytest.mark.parametrize("same_keys", [True, False])
@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_texts_to_normalize_stay_on_the_block_path(tmp_path, monkeypatch, schema, same_keys):
    """Multi-line answers, non-ASCII, tabs and spaces at the edges are what real texts hold;
    none of them is a finding, so their rows are checked with their block (the texts normalized
    one by one for the duplicate key) and only empty texts and placeholders go row by row."""
    def row(question, answer, **top):
        turns = [("user", question), ("assistant", answer)]
        if schema == "openai":
            return {"messages": [{"role": r, "content": c} for r, c in turns], **top}
        tag = {"user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": tag[r], "value": c} for r, c in turns], **top}

    variants = ["plain {i}", "line one {i}\n\n- point\n- other", "caf\u00e9 \u201cquoted\u201d {i}",
                " lead {i}", "trail {i} ", "tab\t{i}", "two  spaces {i}", "wide\u3000{i}", "\u00a0nbsp {i}"]
    lines = []
    for i in range(60):
        for v, text in enumerate(variants):
            top = {"id": len(lines)} | ({"source": "mixed"} if not same_keys and i % 3 == 0 else {})
            lines.append(json.dumps(row(f"q {i} {v}", text.format(i=i), **top), ensure_ascii=i % 2 == 0))
    lines += [json.dumps(row("q  7\n1", "line one 7 - point - other", id=-1)),  # row 7 * 9 + 1, normalized
              json.dumps(row("q", "{{name}}", id=-2)), json.dumps(row("q", "\t\n ", id=-3))]
    reference, by_row = validate_beside_the_reference(tmp_path / "texts.jsonl", lines, schema, monkeypatch)
    assert [(f.code, f.line) for f in reference.findings] == [
        ("duplicate-row", len(lines) - 2), ("template-placeholder", len(lines) - 1), ("empty-content", len(lines))]
    assert by_row == [len(lines) - 1, len(lines)]  # the placeholder row and the empty one


def test_ranges_shrink_towards_the_end_and_cover_the_file(tmp_path, monkeypatch):
    from gekro_ft.data.source import line_spans

    lengths = list(chunks.steps(810_000_000, 2))
    assert lengths[0] == 810_000_000 // 4 and lengths == sorted(lengths, reverse=True)
    assert min(lengths) == chunks.MIN_CHUNK_BYTES // 8 and sum(lengths) >= 810_000_000
    assert sum(lengths[:-1]) < 810_000_000
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD] * 2000)
    monkeypatch.setattr(chunks, "MIN_CHUNK_BYTES", 16 << 10)
    spans = line_spans(path, chunks.steps(path.stat().st_size, 2))
    data = path.read_bytes()
    assert spans[0][0] == 0 and spans[-1][1] == len(data) and len(spans) > 5
    assert all(a[1] == b[0] and data[b[0] - 1:b[0]] == b"\n" for a, b in zip(spans, spans[1:]))
    assert [b - a for a, b in spans[:3]] == sorted([b - a for a, b in spans[:3]], reverse=True)


@pytest.mark.parametrize("schema", ["openai", "sharegpt"])
def test_systems_are_normalized_and_lifted_as_row_by_row(tmp_path, monkeypatch, schema):
    """Systems on the block path: a system turn first is lifted out (and normalized) as the
    readers do, a top-level ShareGPT system too; whitespace-only ones are none for the key; a
    placeholder in a system or texts of Unicode whitespace only go row by row, and so does a
    blank lifted system turn (the readers say nothing of it; only the row path lifts it)."""
    def row(turns, system=None):
        tag = {"system": "system", "user": "human", "assistant": "gpt"}
        if schema == "openai":
            return {"messages": [{"role": r, "content": c} for r, c in turns]}
        return {"conversations": [{"from": tag[r], "value": c} for r, c in turns], "system": system}

    qa = [("user", "q"), ("assistant", "a")]
    lines = [json.dumps(row([("user", f"q {i}"), ("assistant", f"a {i}")])) for i in range(300)]
    cases = [
        (row([("system", "sys\nwith  breaks")] + qa), None),
        (row([("system", "sys with breaks")] + qa), "duplicate-row"),  # of the one above
        (row([("system", "syst\u00e8me\tok"), ("user", "q2"), ("assistant", "a2")]), None),
        (row([("system", "syst\u00e8me ok"), ("user", "q2"), ("assistant", "a2")]), "duplicate-row"),
        (row([("system", "{{persona}}"), ("user", "q3"), ("assistant", "a3")]), "template-placeholder"),
        (row([("user", "open {"), ("assistant", "{ close")]), None),  # '{' '{' across two texts
        (row([("user", "\x1c"), ("assistant", "a4")]), "empty-content"),
        (row([("user", "q5"), ("assistant", "\x85\u3000")]), "empty-content"),
        (row([("system", " \u3000"), ("user", "q6"), ("assistant", "a6")]), "blank lifted"),
    ]
    if schema == "sharegpt":
        cases += [(row([("user", "q7"), ("assistant", "a7")], system=" "), None),
                  (row([("user", "q7"), ("assistant", "a7")]), "duplicate-row"),  # a blank system is none
                  (row([("user", "q8"), ("assistant", "a8")], system="top\nlevel"), None),
                  (row([("system", "top level"), ("user", "q8"), ("assistant", "a8")]), "duplicate-row"),
                  (row([("user", "q9"), ("assistant", "a9")], system="{{x}}"), "template-placeholder")]
    first = len(lines) + 1
    lines += [json.dumps(r, ensure_ascii=k % 2 == 0) for k, (r, _) in enumerate(cases)]
    reference, by_row = validate_beside_the_reference(tmp_path / "systems.jsonl", lines, schema, monkeypatch)
    expected = [(code, first + k) for k, (_, code) in enumerate(cases) if code and code != "blank lifted"]
    assert [(f.code, f.line) for f in reference.findings] == expected
    assert by_row == [first + k for k, (_, code) in enumerate(cases)
                      if code in ("template-placeholder", "empty-content", "blank lifted")]


def test_no_more_workers_than_ranges_worth_one_and_ranges_at_most_256_mib(tmp_path, monkeypatch):
    assert max(chunks.steps(10 << 30, 2)) == chunks.MAX_CHUNK_BYTES
    monkeypatch.setattr(chunks, "MIN_CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(chunks, "free_cores", lambda: 8)
    monkeypatch.setattr(chunks, "usable_cores", lambda: 8)
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD] * 520)  # 99 bytes a row
    assert 3 * (16 << 10) <= path.stat().st_size < 4 * (16 << 10)
    assert chunks.spans_for(path).workers == 3


def _worker_signals(path, span, on_bytes):
    import signal

    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_forked_workers_leave_signals_to_the_parent(tmp_path, monkeypatch):
    """A forked worker inherits the CLI's SIGTERM handler (it raises in the parent); in the
    worker it is set back to the default, and Ctrl-C is ignored there."""
    import signal
    import sys

    if sys.platform != "linux":
        pytest.skip("workers are forked on Linux only")
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD] * 10)
    monkeypatch.setattr(chunks, "start_method", lambda: "fork")
    before = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        got = chunks.in_workers(_worker_signals, str(path), chunks.Cut([(0, 1), (1, 2)], 2), None)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert got == [(signal.SIG_DFL, signal.SIG_IGN)] * 2


def test_the_file_progress_bar_runs_no_thread_and_draws_a_finished_range_at_once(tmp_path, monkeypatch):
    """The data stage forks its workers only while no other thread runs, so the CLI's bar is
    drawn from the progress callback, not by rich's refresh thread; a worker's range (one
    call for many MiB) is drawn when it is reported, not at the next due time."""
    import io
    import threading

    from rich.console import Console

    from gekro_ft.cli import output

    path = tmp_path / "data.jsonl"
    path.write_bytes(b"x" * (6 << 20))
    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=100))
    threads = threading.active_count()
    with output.file_progress(path, "validating") as on_bytes:
        assert threading.active_count() == threads
        on_bytes(2 << 20)
        on_bytes(4 << 20)  # a second range, reported within microseconds of the first
        drawn = screen.getvalue()
    assert "6.3/6.3 MB" in drawn, drawn[-300:]
