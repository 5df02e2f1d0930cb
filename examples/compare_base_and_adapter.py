"""Base model vs base + adapter on the held-out tickets: valid JSON, exact match, field accuracy.

    python examples/compare_base_and_adapter.py work/train/smollm2-135m-cpu/adapter

The held-out rows are the ones the smollm2-135m-cpu recipe kept out of training
(eval_frac 0.1, seed 0, the same split `gekro-ft data split` makes). A stand-in until
`gekro-ft eval` exists (issue 4), which will score this properly against a baseline.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from gekro_ft.data.rows import read_rows
from gekro_ft.data.split import split_file
from gekro_ft.eval.local import LocalGenerator
from gekro_ft.models import resolve_model

DATA = Path(__file__).resolve().parent.parent / "datasets" / "ticket-extraction" / "openai.jsonl"
FIELDS = ["customer", "order_id", "product", "category", "urgency"]


def score(convs, outputs) -> dict:
    valid = exact = right = 0
    for conv, out in zip(convs, outputs):
        ref = json.loads(conv.turns[-1].content)
        try:
            got = json.loads(out["text"])
            valid += 1
        except ValueError:
            continue
        exact += got == ref
        if isinstance(got, dict):
            right += sum(got.get(k) == ref[k] for k in FIELDS)
    n = len(convs)
    return {"rows": n, "json_valid": valid, "exact": exact, "field_accuracy": right / (n * len(FIELDS))}


def main() -> None:
    adapter = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        split_file(DATA, tmp, 0.1, seed=0)
        convs = [r.conv for r in read_rows(Path(tmp) / "eval.jsonl", "openai")]
    base = resolve_model("smollm2-135m-instruct").source
    for name, adapter_dir in (("base", None), ("base + adapter", adapter)):
        outputs = LocalGenerator(base, adapter_dir).generate(convs, max_new_tokens=64, batch_size=10)
        print(name, json.dumps(score(convs, outputs)))
        print("  first answer:", outputs[0]["text"][:200])


if __name__ == "__main__":
    main()
