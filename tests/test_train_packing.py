"""``data.packing``: packed sequences keep each row's loss mask and do not attend across rows.

TRL packs our pre-tokenized rows (``input_ids`` + ``labels``) best-fit-decreasing and, for
that strategy, turns on padding-free batches: a step's packed sequences are flattened into
one, with position ids restarting at each row and no attention mask. On a non-flash
attention (sdpa or eager, what the CPU runs) TRL warns that this "may lead to
cross-contamination"; what keeps rows apart is transformers building a block-diagonal
mask from those position ids, which it does only without an attention mask and without a
KV cache (TRL passes ``use_cache=False``). These tests hold that chain to account.
"""

from __future__ import annotations

import pytest

from conftest import oa, write_jsonl

MAX_LEN = 192


def _rows() -> list[dict]:
    """Mixed lengths: one-turn rows and multi-turn rows whose every answer carries loss."""
    rows = []
    for i in range(12):
        turns = [("system", "Answer with one word.")]
        for t in range(1 + i % 4):
            turns += [("user", f"Question {i}.{t}: " + "why " * (3 * (i % 5))), ("assistant", f"Answer {i}.{t}")]
        rows.append(oa(*turns))
    return rows


def _prepared(tokenizer, tmp_path, *overrides):
    from gekro_ft.recipe import load_recipe
    from gekro_ft.train.dataset import prepare_data

    path = write_jsonl(tmp_path / "mixed.jsonl", _rows())
    recipe = load_recipe("smollm2-135m-cpu", [f"data.train={path}", "data.eval_frac=null", "data.packing=true",
                                              f"model.max_seq_len={MAX_LEN}", *overrides])
    return prepare_data(recipe, tokenizer)


def _segments(ids, labels, position_ids):
    """Split a flattened padding-free sequence where the position ids restart."""
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(ids)]
    return [(ids[s:e], labels[s:e]) for s, e in zip(starts, starts[1:])]


def test_packed_batches_keep_each_rows_loss_mask(tokenizer, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    data = _prepared(tokenizer, tmp_path)
    ours = {tuple(r["input_ids"]): r["labels"] for r in data.train}
    assert len(ours) == len(data.train) == 12 and max(map(len, ours)) <= MAX_LEN

    config = SFTConfig(output_dir=str(tmp_path / "out"), packing=True, max_length=MAX_LEN, use_cpu=True,
                       report_to="none")
    assert config.packing_strategy == "bfd"  # the strategy run.py gets, which implies padding-free batches
    packed = pack_dataset(Dataset.from_list(data.train), MAX_LEN, config.packing_strategy, {})
    assert len(packed) < len(data.train)  # rows really were packed together

    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    batch = collate(list(packed))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    segments = _segments(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(),
                         batch["position_ids"][0].tolist())
    assert sorted(tuple(ids) for ids, _ in segments) == sorted(ours)  # every row once, whole, none cut
    for ids, labels in segments:
        # The collator masks each row's first token (it would be predicted from the row before);
        # it is a prompt token, which our mask leaves out anyway.
        assert labels[0] == -100 and ours[tuple(ids)][0] == -100
        assert labels[1:] == ours[tuple(ids)][1:]


@pytest.mark.slow
def test_packed_training_step_matches_the_rows_trained_apart(tokenizer, tmp_path, monkeypatch):
    """The loss of a real packed step (our hf backend, 4-bit, through TRL's trainer) equals the
    loss of the same rows run one at a time: no row saw another."""
    import torch
    from trl import SFTTrainer

    from gekro_ft.train.run import preflight, train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    seen = []
    compute_loss = SFTTrainer.compute_loss

    def checking_compute_loss(self, model, inputs, *a, **kw):
        loss = compute_loss(self, model, inputs, *a, **kw)
        if self.model.training and not seen:
            ids, labels, pos = (inputs[k][0].tolist() for k in ("input_ids", "labels", "position_ids"))
            total, count = 0.0, 0
            with torch.no_grad():
                for seg_ids, seg_labels in _segments(ids, labels, pos):
                    out = model(input_ids=torch.tensor([seg_ids]), labels=torch.tensor([seg_labels]), use_cache=False)
                    n = sum(label != -100 for label in seg_labels[1:])
                    total, count = total + out.loss.item() * n, count + n
            seen.append({"inputs": sorted(inputs), "use_cache": inputs.get("use_cache"),
                         "rows": len(_segments(ids, labels, pos)), "packed": loss.item(), "apart": total / count})
        return loss

    monkeypatch.setattr(SFTTrainer, "compute_loss", checking_compute_loss)
    path = write_jsonl(tmp_path / "mixed.jsonl", _rows())
    plan, tok, data = preflight("smollm2-135m-cpu", [
        f"data.train={path}", "data.eval_frac=null", "data.packing=true", f"model.max_seq_len={MAX_LEN}",
        "train.backend=hf", "train.max_steps=1", "train.batch_size=2", "train.save_steps=1", "train.logging_steps=1",
        "tracking.registered_model=null", "tracking.experiment=tests"], tmp_path / "run")
    train(plan, tok, data)

    step = seen[0]
    assert "attention_mask" not in step["inputs"] and "position_ids" in step["inputs"]
    assert step["use_cache"] is False  # with a cache, transformers would not build the per-row mask
    assert step["rows"] > 2  # more rows than the batch size: packed
    assert step["packed"] == pytest.approx(step["apart"], rel=1e-4)
