"""From a recipe's data files to token ids and labels, through the data stage's own renderer.

Both backends train on exactly this: the chat template and loss mask that
``gekro-ft data render`` shows, truncated to ``model.max_seq_len`` from the right.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.render import render
from gekro_ft.data.rows import read_rows
from gekro_ft.data.split import EVAL, TRAIN, assign_sides, example_keys
from gekro_ft.recipe import Recipe

IGNORE = -100  # the label value PyTorch's cross-entropy skips


@dataclass
class PreparedData:
    train: list[dict[str, list[int]]]
    eval: list[dict[str, list[int]]]
    dataset_hash: str  # sha256 of the data files' bytes: what the adapter was trained on
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows

    @property
    def train_tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.train)


def file_digest(*paths: str | Path | None) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _convs(path: str, schema: str | None, skipped: dict[str, int]):
    schema, _ = resolve_schema(path, schema)
    for row in read_rows(path, schema):
        if row.readable:
            yield row.conv
        else:
            skipped["unreadable"] = skipped.get("unreadable", 0) + 1


def _encode(tokenizer: Any, conv, recipe: Recipe, skipped: dict[str, int]) -> dict[str, list[int]] | None:
    r = render(tokenizer, conv)
    if not r.input_ids:
        skipped["template-error"] = skipped.get("template-error", 0) + 1
        return None
    n = recipe.model.max_seq_len
    ids = r.input_ids[:n]
    if recipe.data.responses_only:
        labels = [t if loss else IGNORE for t, loss in zip(ids, r.loss[:n])]
    else:
        labels = list(ids)
    if all(label == IGNORE for label in labels):
        skipped["no-loss-tokens"] = skipped.get("no-loss-tokens", 0) + 1
        return None
    return {"input_ids": ids, "labels": labels}


def prepare_data(recipe: Recipe, tokenizer: Any) -> PreparedData:
    """Tokenize train and eval rows. With ``data.eval_frac``, eval is split off train the way
    ``gekro-ft data split`` does it (de-duplicated, by prompt group, seeded by ``train.seed``)."""
    d = recipe.data
    skipped: dict[str, int] = {}
    train_convs = list(_convs(d.train, d.schema_, skipped))
    eval_convs = list(_convs(d.eval, d.schema_, skipped)) if d.eval else []
    if d.eval_frac:
        sides, skipped["duplicate"] = assign_sides((example_keys(c) for c in train_convs), d.eval_frac,
                                                   recipe.train.seed)
        eval_convs = [c for c, s in zip(train_convs, sides) if s == EVAL]
        train_convs = [c for c, s in zip(train_convs, sides) if s == TRAIN]
    encoded = [_encode(tokenizer, c, recipe, skipped) for c in train_convs]
    encoded_eval = [_encode(tokenizer, c, recipe, skipped) for c in eval_convs]
    return PreparedData(train=[e for e in encoded if e], eval=[e for e in encoded_eval if e],
                        dataset_hash=file_digest(d.train, d.eval),
                        skipped={k: v for k, v in skipped.items() if v})
