"""``data.packing``: packed sequences keep each row's loss mask and do not attend across rows.

Two layouts (``gekro_ft/train/packing.py``). Without flash attention (the CPU), packs stay
separate rows of a batch, position ids restarting at each original row and a padding
segment at the end of short rows, with no attention mask; with a flash kernel (GPU, Unsloth)
TRL flattens a step into one sequence. Either way what keeps rows apart is transformers
building a block-diagonal mask from the restarting position ids, which it does only without
an attention mask and without a KV cache (TRL passes ``use_cache=False``). These tests hold
that chain to account.
"""

from __future__ import annotations

from types import SimpleNamespace

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
    """Split one row of a packed batch where the position ids restart."""
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(ids)]
    return [(ids[s:e], labels[s:e]) for s, e in zip(starts, starts[1:])]


def _batch_segments(batch) -> list[tuple[list, list]]:
    return [seg for ids, labels, pos in zip(*(batch[k].tolist() for k in ("input_ids", "labels", "position_ids")))
            for seg in _segments(ids, labels, pos)]


def _assert_every_row_once_with_its_mask(segments, ours: dict, pad_id: int) -> None:
    real = [(ids, labels) for ids, labels in segments if tuple(ids) in ours]
    padding = [(ids, labels) for ids, labels in segments if tuple(ids) not in ours]
    assert sorted(tuple(ids) for ids, _ in real) == sorted(ours)  # every row once, whole, none cut
    for ids, labels in real:
        # A row's first token would be predicted from the row before; it is a prompt token,
        # which our mask leaves out anyway.
        assert labels[0] == -100 and ours[tuple(ids)][0] == -100
        assert labels[1:] == ours[tuple(ids)][1:]
    for ids, labels in padding:  # what is left is padding that trains nothing
        assert set(ids) == {pad_id} and set(labels) == {-100}


def test_trl_flattened_batches_keep_each_rows_loss_mask(tokenizer, tmp_path):
    """The GPU layout: TRL's own bfd packing and padding-free collator."""
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
    _assert_every_row_once_with_its_mask(_batch_segments(batch), ours, tokenizer.pad_token_id)


def test_row_packing_keeps_packs_as_rows_with_each_rows_loss_mask(tokenizer, tmp_path):
    """The CPU layout: the same packs as rows of one batch, padded by a segment of their own."""
    from gekro_ft.train.packing import RowPackingCollator, pack_rows

    data = _prepared(tokenizer, tmp_path)
    ours = {tuple(r["input_ids"]): r["labels"] for r in data.train}
    packed = list(pack_rows(data.train, MAX_LEN))
    assert len(packed) < len(data.train) and all(len(p["input_ids"]) <= MAX_LEN for p in packed)

    batch = RowPackingCollator(tokenizer.pad_token_id)(packed)
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape
    assert batch["input_ids"].shape[0] == len(packed) > 1  # rows, not one flattened sequence
    assert int(batch["real_tokens"].sum()) == sum(len(r["input_ids"]) for r in data.train)
    segments = _batch_segments(batch)
    _assert_every_row_once_with_its_mask(segments, ours, tokenizer.pad_token_id)
    assert len(segments) > len(data.train)  # at least one short row ended in a padding segment


def test_packing_layout_follows_the_attention_kernel():
    from gekro_ft.train.packing import packing_layout

    def model(attention):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention))

    assert packing_layout(model("sdpa"), "hf") == "rows"
    assert packing_layout(model("eager"), "hf") == "rows"
    assert packing_layout(model("flash_attention_2"), "hf") == "flattened"
    assert packing_layout(model("kernels-community/flash-attn3@main"), "hf") == "flattened"
    assert packing_layout(model("sdpa"), "unsloth") == "flattened"  # Unsloth packs with its own kernels


@pytest.mark.slow
def test_packed_training_step_matches_the_rows_trained_apart(tokenizer, tmp_path, monkeypatch):
    """The loss of a real packed step (our hf backend, 4-bit, through TRL's trainer, on the CPU:
    row layout) equals the loss of the same rows run one at a time: no row saw another or the
    padding. The trainer's token count is the real tokens, not the padded positions."""
    import mlflow
    import torch
    from trl import SFTTrainer

    from gekro_ft.train.run import preflight, train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    seen = []
    compute_loss = SFTTrainer.compute_loss

    def checking_compute_loss(self, model, inputs, *a, **kw):
        loss = compute_loss(self, model, inputs, *a, **kw)
        if self.model.training and not seen:
            segments = [s for s in _batch_segments(inputs) if any(label != -100 for label in s[1])]
            total, count = 0.0, 0
            with torch.no_grad():
                for seg_ids, seg_labels in segments:
                    out = model(input_ids=torch.tensor([seg_ids]), labels=torch.tensor([seg_labels]), use_cache=False)
                    n = sum(label != -100 for label in seg_labels[1:])
                    total, count = total + out.loss.item() * n, count + n
            seen.append({"inputs": sorted(inputs), "use_cache": inputs.get("use_cache"),
                         "shape": inputs["input_ids"].shape,
                         "rows": len(segments), "real": sum(len(ids) for ids, _ in segments),
                         "packed": loss.item(), "apart": total / count})
        return loss

    monkeypatch.setattr(SFTTrainer, "compute_loss", checking_compute_loss)
    path = write_jsonl(tmp_path / "mixed.jsonl", _rows())
    plan, tok, data = preflight("smollm2-135m-cpu", [
        f"data.train={path}", "data.eval_frac=null", "data.packing=true", f"model.max_seq_len={MAX_LEN}",
        "train.backend=hf", "train.max_steps=1", "train.batch_size=2", "train.save_steps=1", "train.logging_steps=1",
        "tracking.registered_model=null", "tracking.experiment=tests"], tmp_path / "run")
    result = train(plan, tok, data)

    step = seen[0]
    assert "attention_mask" not in step["inputs"] and "position_ids" in step["inputs"]
    assert step["use_cache"] is False  # with a cache, transformers would not build the per-row mask
    assert step["shape"][0] == 2 and step["shape"][1] <= MAX_LEN  # two packed rows, not one flattened sequence
    assert step["rows"] > 2  # more rows than the batch size: packed
    assert step["packed"] == pytest.approx(step["apart"], rel=1e-4)
    assert max(h.get("num_tokens", 0) for h in result.history) == step["real"]
    assert mlflow.get_run(result.run_id).data.tags["gekro_ft.packing"] == "rows"
