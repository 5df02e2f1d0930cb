"""Will this run fit? An estimate of peak accelerator (or host) memory, before loading anything.

The model's shapes come from its config on the meta device (no weights read). The
terms are the usual QLoRA accounting:

- base weights: 4-bit NF4 linears at 0.5 byte a parameter plus their block constants,
  everything else (embeddings, norms, an untied head) in the compute dtype;
- LoRA parameters in float32, their gradients, and the optimizer's state;
- activations kept for the backward pass: every layer's (no gradient checkpointing)
  or one hidden state per layer plus one layer recomputed (with checkpointing);
- the logits and their gradient in float32, which dominate for large vocabularies;
- a fixed runtime overhead (CUDA context, allocator slack, or the host process).

It is an estimate, so the refusal keeps a margin and says how to get under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

GiB = 1 << 30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_STATE_BYTES = {"adamw_torch": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0}
NF4_BYTES = 0.5 + 4 / 64  # 4 bits + one float32 absmax per 64-value block
SAFETY = 0.9  # use at most this share of what is free


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    linear: dict[str, tuple[int, int]]  # module name -> (in, out), lm_head excluded
    other_params: int  # embeddings, norms, untied head


@dataclass(frozen=True)
class Settings:
    batch_size: int
    seq_len: int
    load_in_4bit: bool
    dtype: str  # resolved: float32, bfloat16 or float16
    lora_r: int
    target_modules: list[str] | str
    optimizer: str
    gradient_checkpointing: bool


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, int]  # term -> bytes
    available: int | None
    device: str

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available * SAFETY

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in self.parts.items())
        have = f"{self.available / GiB:.1f} GiB free" if self.available is not None else "unknown free memory"
        return f"~{self.total / GiB:.2f} GiB peak on {self.device} ({parts} GiB); {have}"


def model_shape(config: Any) -> ModelShape:
    """Linear layer shapes and the other parameter count, from a config, without weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear: dict[str, tuple[int, int]] = {}
    in_linear = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear[name] = (module.in_features, module.out_features)
            in_linear += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(hidden=text.hidden_size, intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
                      layers=text.num_hidden_layers, vocab=text.vocab_size, linear=linear,
                      other_params=total - in_linear)


# Layer kinds whose tokens mix only through attention, which transformers masks per packed row.
_PACKABLE_LAYERS = {"full_attention", "sliding_attention", "chunked_attention"}
_RECURRENT_MODELS = {"mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm"}  # no attention, no layer_types


def unpackable_layers(config: Any) -> list[str]:
    """Layer kinds (linear attention, convolution) that carry state across packed rows.

    Packed rows are kept apart by a mask transformers builds from restarting position ids;
    linear-attention and convolution layers ignore it, so rows would leak into each other.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text.model_type in _RECURRENT_MODELS:
        return ["recurrent"]
    return sorted(set(getattr(text, "layer_types", None) or []) - _PACKABLE_LAYERS)


def targeted(shape: ModelShape, target_modules: list[str] | str) -> list[tuple[int, int]]:
    if target_modules == "all-linear":
        return list(shape.linear.values())
    return [io for name, io in shape.linear.items() if name.rsplit(".", 1)[-1] in target_modules]


def estimate(shape: ModelShape, s: Settings, available: int | None, device: str) -> MemoryEstimate:
    e = DTYPE_BYTES[s.dtype]
    linear_params = sum(i * o for i, o in shape.linear.values())
    weights = linear_params * (NF4_BYTES if s.load_in_4bit else e) + shape.other_params * e
    lora_params = sum(s.lora_r * (i + o) for i, o in targeted(shape, s.target_modules))
    tokens = s.batch_size * s.seq_len
    per_layer_full = e * tokens * (10 * shape.hidden + 4 * shape.intermediate)
    if s.gradient_checkpointing:
        activations = e * tokens * shape.hidden * shape.layers + per_layer_full
    else:
        activations = per_layer_full * shape.layers
    parts = {
        "weights": int(weights),
        "lora": lora_params * 4,
        "gradients": lora_params * 4,
        "optimizer": lora_params * OPTIMIZER_STATE_BYTES[s.optimizer],
        "activations": int(activations),
        "logits": tokens * shape.vocab * 4 * 2,
        "overhead": int(1.0 * GiB) if device.startswith("cuda") else int(0.75 * GiB),
    }
    return MemoryEstimate(parts, available, device)


def suggestions(shape: ModelShape, s: Settings, available: int, device: str) -> list[str]:
    """Changes that would fit, each with its estimate: the refusal's way forward."""
    tries: list[tuple[str, Settings]] = []
    if not s.gradient_checkpointing:
        tries.append(("train.gradient_checkpointing=true", replace(s, gradient_checkpointing=True)))
    b = s.batch_size
    while b > 1:
        b //= 2
        tries.append((f"train.batch_size={b} (raise train.grad_accum to keep the effective batch)",
                      replace(s, batch_size=b)))
    n = s.seq_len
    while n > 256:
        n //= 2
        tries.append((f"model.max_seq_len={n}", replace(s, seq_len=n)))
    if not s.load_in_4bit:
        tries.append(("model.load_in_4bit=true", replace(s, load_in_4bit=True)))
    out = []
    for label, t in tries:
        est = estimate(shape, t, available, device)
        if est.fits:
            out.append(f"{label} -> ~{est.total / GiB:.2f} GiB")
    return out[:3]


def available_memory(device: str) -> int | None:
    """Free bytes on ``device``: CUDA from the driver, CPU from the kernel's MemAvailable."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
