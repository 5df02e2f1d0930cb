"""``data.packing`` without flash attention: packed sequences stay separate rows.

TRL packs rows best-fit-decreasing into sequences of at most ``max_seq_len`` tokens and
then hands the model a whole step flattened into one sequence. With a flash-attention
kernel that is free; with sdpa or eager (every CPU, and GPUs without flash-attn)
attention runs over the flattened step, quadratic in batch x length, and packing came out
slower than padding (0.65x, benchmarks/train_packing.py before this module).

Here the same best-fit-decreasing packs become the rows of a batch. Position ids restart
at every original row, and the padding at the end of a short row is one more segment,
whose labels are all -100. There is no attention mask: transformers then builds a
block-diagonal causal mask per row from the restarting position ids
(``masking_utils.find_packed_sequence_indices``), so no row attends to another or to the
padding, and attention costs (rows x max_seq_len^2) instead of (rows x max_seq_len)^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from trl import SFTTrainer
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import FLASH_ATTENTION_VARIANTS

Layout = Literal["flattened", "rows"]


def packing_layout(model: Any, backend: str) -> Layout:
    """How a packed step reaches the model: TRL's flattened sequence where a kernel makes it free, else rows."""
    attention = model.config._attn_implementation.split("@")[0].split(":")[0]
    return "flattened" if backend == "unsloth" or attention in FLASH_ATTENTION_VARIANTS else "rows"


def pack_rows(rows: list[dict], max_len: int):
    """Best-fit-decreasing packs of ``input_ids``/``labels`` rows; ``seq_lengths`` keeps the boundaries."""
    from datasets import Dataset

    columns = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    return pack_dataset(Dataset.from_list(columns), max_len, "bfd")


@dataclass
class RowPackingCollator:
    """A batch of packed rows: right-padded, position ids restarting per original row, no attention mask."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        ids, labels, positions = [], [], []
        for e in examples:
            pad = width - len(e["input_ids"])
            ids.append(list(e["input_ids"]) + [self.pad_token_id] * pad)
            row_labels = list(e["labels"]) + [-100] * pad
            row_positions = [p for n in e["seq_lengths"] for p in range(n)] + list(range(pad))
            # A segment's first label would be predicted from the last token of the segment before it.
            labels.append([-100 if p == 0 else label for p, label in zip(row_positions, row_labels)])
            positions.append(row_positions)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "position_ids": torch.tensor(positions),
                "real_tokens": torch.tensor([sum(e["seq_lengths"]) for e in examples])}


class RowPackedSFTTrainer(SFTTrainer):
    """SFTTrainer fed by :class:`RowPackingCollator`.

    TRL counts the tokens of a batch without an attention mask as the length of one
    flattened row; ours has several rows and padding, so the count (``num_tokens``, and
    tokens/s from it) is corrected to the real tokens the collator reports.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real = inputs.pop("real_tokens", None)
        counted = self._total_train_tokens
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if real is not None and self.model.training:
            self._total_train_tokens = counted + int(real.sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result
