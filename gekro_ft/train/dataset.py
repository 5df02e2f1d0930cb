"""From a recipe's data files to token ids and labels, through the data stage's own renderer.

Both backends train on exactly this: the chat template and loss mask that
``gekro-ft data render`` shows, truncated to ``model.max_seq_len`` from the right.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.render import render
from gekro_ft.data.rows import read_rows
from gekro_ft.data.split import EVAL, TRAIN, assign_sides, example_keys
from gekro_ft.recipe import DataSource, Recipe

IGNORE = -100  # the label value PyTorch's cross-entropy skips


@dataclass
class SourceReport:
    """What one training file gave: reported before training, logged to MLflow."""

    file: str
    schema: str
    sha256: str  # of the file's bytes
    rows: int  # readable rows in the file
    train_rows: int = 0  # after the split and the weight or cap (a row drawn twice counts twice)
    eval_rows: int = 0
    train_tokens: int = 0
    weight: float | None = None
    max_rows: int | None = None
    responses_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    train: list[dict[str, list[int]]]
    eval: list[dict[str, list[int]]]
    dataset_hash: str  # sha256 of the data files' bytes: what the adapter was trained on
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    sources: list[SourceReport] = field(default_factory=list)

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
    convs = []
    for row in read_rows(path, schema):
        if row.readable:
            convs.append(row.conv)
        else:
            skipped["unreadable"] = skipped.get("unreadable", 0) + 1
    return schema, convs


def _encode(tokenizer: Any, conv, max_len: int, responses_only: bool,
            skipped: dict[str, int]) -> dict[str, list[int]] | None:
    r = render(tokenizer, conv)
    if not r.input_ids:
        skipped["template-error"] = skipped.get("template-error", 0) + 1
        return None
    ids = r.input_ids[:max_len]
    if responses_only:
        labels = [t if loss else IGNORE for t, loss in zip(ids, r.loss[:max_len])]
    else:
        labels = list(ids)
    if all(label == IGNORE for label in labels):
        skipped["no-loss-tokens"] = skipped.get("no-loss-tokens", 0) + 1
        return None
    return {"input_ids": ids, "labels": labels}


def draw(rows: list, source: DataSource, seed: int, which: int) -> list:
    """A source's share of the mix: every row ``int(weight)`` times plus a seeded sample for the
    fraction, or a seeded sample of at most ``max_rows``; file order kept within each pass."""
    rng = random.Random(f"{seed}:{which}")  # one stream per source: a change to one leaves the rest

    def sample(k: int) -> list:
        return [rows[i] for i in sorted(rng.sample(range(len(rows)), k))]

    if source.max_rows is not None:
        return sample(min(source.max_rows, len(rows)))
    weight = 1.0 if source.weight is None else source.weight
    whole, part = int(weight), weight - int(weight)
    return rows * whole + sample(round(part * len(rows)))


def prepare_data(recipe: Recipe, tokenizer: Any) -> PreparedData:
    """Tokenize train and eval rows from every source. With ``data.eval_frac``, eval is split
    off all sources together the way ``gekro-ft data split`` does it (de-duplicated across
    sources, by prompt group, seeded by ``train.seed``), so no prompt is on both sides even
    when two sources share it; then each source's train rows are weighted or capped, and
    several sources are shuffled together with the same seed."""
    d, seed, max_len = recipe.data, recipe.train.seed, recipe.model.max_seq_len
    skipped: dict[str, int] = {}
    sources = d.training_sources()
    reports, convs, origin = [], [], []
    for i, src in enumerate(sources):
        schema, rows = _convs(src.file, src.schema_, skipped)
        reports.append(SourceReport(src.file, schema, file_digest(src.file), len(rows), weight=src.weight,
                                    max_rows=src.max_rows, responses_only=not d.loss_on_prompts(src)))
        convs += rows
        origin += [i] * len(rows)
    eval_convs = _convs(d.eval, d.schema_, skipped)[1] if d.eval else []
    eval_origin = [None] * len(eval_convs)
    if d.eval_frac:
        sides, skipped["duplicate"] = assign_sides((example_keys(c) for c in convs), d.eval_frac, seed)
        eval_convs = [c for c, s in zip(convs, sides) if s == EVAL]
        eval_origin = [o for o, s in zip(origin, sides) if s == EVAL]
        convs, origin = ([x for x, s in zip(xs, sides) if s == TRAIN] for xs in (convs, origin))
    picked: list[tuple[int, Any]] = []
    for i, src in enumerate(sources):
        mine = [c for c, o in zip(convs, origin) if o == i]
        picked += [(i, c) for c in (draw(mine, src, seed, i) if len(sources) > 1 or src.weight or src.max_rows
                                    else mine)]
    if len(sources) > 1:
        random.Random(seed).shuffle(picked)
    train = []
    for i, conv in picked:
        if (row := _encode(tokenizer, conv, max_len, reports[i].responses_only, skipped)) is not None:
            train.append(row)
            reports[i].train_rows += 1
            reports[i].train_tokens += len(row["input_ids"])
    encoded_eval = []
    for o, conv in zip(eval_origin, eval_convs):
        only = d.responses_only if o is None else reports[o].responses_only
        if (row := _encode(tokenizer, conv, max_len, only, skipped)) is not None:
            encoded_eval.append(row)
            if o is not None:
                reports[o].eval_rows += 1
    files = [d.train] if d.sources is None else [s.file for s in sources]
    return PreparedData(train=train, eval=encoded_eval, dataset_hash=file_digest(*files, d.eval),
                        skipped={k: v for k, v in skipped.items() if v}, sources=reports)
