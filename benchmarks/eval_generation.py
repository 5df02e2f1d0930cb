"""Local eval generation: batched (what `gekro-ft eval` does) vs one example at a time.

    python benchmarks/eval_generation.py [--adapter DIR] [--examples 32] [--batch-size 8] [--max-tokens 64]

Both sides run in this process on the same examples, greedy, with the same model
object; the script prints examples/s and output tokens/s for each, the speed-up, and
whether the answers are identical (left padding must not change a greedy answer).
Without --adapter it measures the bundled base model alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gekro_ft.data.rows import read_rows
from gekro_ft.eval.local import LocalGenerator
from gekro_ft.models import resolve_model

EVAL = Path(__file__).resolve().parent.parent / "eval" / "ticket-extraction" / "openai.jsonl"


def timed(generator: LocalGenerator, convs, batch_size: int, max_tokens: int):
    t0 = time.perf_counter()
    outs = generator.generate(convs, max_new_tokens=max_tokens, batch_size=batch_size)
    return outs, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    convs = [r.conv for r in read_rows(EVAL, "openai")][:args.examples]
    generator = LocalGenerator(resolve_model("smollm2-135m-instruct").source, args.adapter)
    timed(generator, convs[:2], 2, 4)  # warm-up: first-call allocations are not generation speed
    batched, t_batched = timed(generator, convs, args.batch_size, args.max_tokens)
    single, t_single = timed(generator, convs, 1, args.max_tokens)
    tokens = sum(o["output_tokens"] for o in batched)
    same = sum(a["text"] == b["text"] for a, b in zip(batched, single))
    print(f"{len(convs)} examples, {args.max_tokens} max new tokens, adapter: {args.adapter or 'none'}")
    print(f"{'mode':<22}{'seconds':>9}{'examples/s':>12}{'out tok/s':>11}")
    for name, t in ((f"batched (batch {args.batch_size})", t_batched), ("one by one", t_single)):
        print(f"{name:<22}{t:>9.1f}{len(convs) / t:>12.2f}{tokens / t:>11.1f}")
    print(f"speed-up batched / one by one: {t_single / t_batched:.2f}x")
    print(f"identical answers: {same}/{len(convs)}")


if __name__ == "__main__":
    main()
