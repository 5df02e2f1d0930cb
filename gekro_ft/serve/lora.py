"""The LoRA ranks vLLM serves. Its own module so that the profile (which validates
``vllm.max_lora_rank``) and the vLLM launcher (which picks a rank) both import it without
importing each other."""

from __future__ import annotations

from collections.abc import Iterable

from gekro_ft.errors import ProfileError

# vLLM's LoRAConfig accepts only these max_lora_rank values (vllm/config/lora.py, MaxLoRARanks).
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_for(ranks: Iterable[int]) -> int | None:
    """The smallest rank vLLM supports that holds every rank given (None for none given)."""
    ranks = list(ranks)
    if not ranks:
        return None
    largest = max(ranks)
    for supported in SUPPORTED_LORA_RANKS:
        if supported >= largest:
            return supported
    raise ProfileError("adapters", [f"rank {largest} is above {SUPPORTED_LORA_RANKS[-1]}, "
                                    "the largest LoRA rank vLLM serves"])
