"""Tool calls survive a round trip through the other schema exactly: ids that were in the
source come back, ids a conversion had to make up (OpenAI needs one per call) do not."""

from __future__ import annotations

import json
import random

import pytest

from conftest import write_jsonl
from gekro_ft.data.convert import convert_file

TOOLS = [{"type": "function", "function": {"name": name, "description": f"{name} lookup",
                                           "parameters": {"type": "object",
                                                          "properties": {"q": {"type": "string"}}}}}
         for name in ("weather", "stock", "search")]


def sharegpt_rows(n: int, with_ids: bool, seed: int = 0) -> list[dict]:
    """LLaMA-Factory-style tool rows: ``function_call`` values (one call or a parallel list),
    ``observation`` answers, ``tools`` as a JSON string; ids only when asked."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        # the system as the first turn, the spelling our writer uses (a top-level "system" comes
        # back as that turn: the canonical form does not remember which of the two it was)
        conv, k = [{"from": "system", "value": "Use the tools."}] * (i % 2), 0
        conv.append({"from": "human", "value": f"question {i}"})
        for _ in range(rng.randint(1, 3)):
            calls = []
            for _ in range(rng.randint(1, 3)):
                call = {"name": rng.choice(TOOLS)["function"]["name"], "arguments": {"q": f"x{rng.random():.3f}"}}
                if with_ids:
                    call["id"] = f"toolu_{i}_{k}"
                calls.append(call)
                k += 1
            if rng.random() < 0.5:  # a gpt turn right before its call is one assistant message
                conv.append({"from": "gpt", "value": "Let me look that up."})
            conv.append({"from": "function_call",
                         "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
            conv += [{"from": "observation", "value": f"result {j}"} for j in range(len(calls))]
        conv.append({"from": "gpt", "value": f"answer {i}"})
        rows.append({"conversations": conv, "tools": json.dumps(TOOLS, ensure_ascii=False),
                     "id": f"row-{i}"})
    return rows


def openai_rows(n: int, positional_ids: bool, seed: int = 1) -> list[dict]:
    """OpenAI tool rows; ids either the provider's own or exactly the positional ``call_N``."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        msgs, k = [{"role": "user", "content": f"question {i}"}], 0
        for _ in range(rng.randint(1, 3)):
            calls = []
            for _ in range(rng.randint(1, 3)):
                cid = f"call_{k}" if positional_ids else f"call_{rng.getrandbits(40):x}"
                calls.append({"id": cid, "type": "function",
                              "function": {"name": "weather", "arguments": json.dumps({"q": str(k)})}})
                k += 1
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            msgs += [{"role": "tool", "tool_call_id": c["id"], "content": f"result {c['id']}"} for c in calls]
        msgs.append({"role": "assistant", "content": f"answer {i}"})
        rows.append({"messages": msgs, "tools": TOOLS, "id": f"row-{i}"})
    return rows


def roundtrip(tmp_path, rows, via: str, back: str) -> tuple[list[dict], list[dict]]:
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    mid, out = tmp_path / "mid.jsonl", tmp_path / "out.jsonl"
    r1, r2 = convert_file(src, mid, via), convert_file(mid, out, back)
    assert r1.refused == r2.refused == 0 and not r1.dropped and not r2.dropped, r1.findings + r2.findings
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    return read(mid), read(out)


@pytest.mark.parametrize("with_ids", [False, True], ids=["without-ids", "with-ids"])
def test_sharegpt_to_openai_to_sharegpt_gives_back_the_same_rows(tmp_path, with_ids):
    rows = sharegpt_rows(60, with_ids)
    mid, back = roundtrip(tmp_path, rows, "openai", "sharegpt")
    assert back == rows
    # OpenAI needs an id on every call and the results must point at them
    for row in mid:
        made = [c["id"] for m in row["messages"] for c in m.get("tool_calls") or []]
        answered = [m["tool_call_id"] for m in row["messages"] if m["role"] == "tool"]
        assert made == answered and len(set(made)) == len(made) and all(made)
        assert all(i.startswith("toolu_") for i in made) is with_ids


@pytest.mark.parametrize("positional", [False, True], ids=["provider-ids", "positional-ids"])
def test_openai_to_sharegpt_to_openai_gives_back_the_same_rows(tmp_path, positional):
    rows = openai_rows(60, positional)
    mid, back = roundtrip(tmp_path, rows, "sharegpt", "openai")
    assert back == rows
    calls = [json.loads(t["value"]) for r in mid for t in r["conversations"] if t["from"] == "function_call"]
    ids = [c.get("id") for v in calls for c in (v if isinstance(v, list) else [v])]
    # the provider's ids are kept; ids equal to the position say nothing and are left out
    assert all(i is None for i in ids) if positional else all(i and i.startswith("call_") for i in ids)
