"""Serving memory: weights + KV cache + overhead, and how many sequences fit at a context length —
the arithmetic practitioners do by hand before ``vllm serve``.

- KV bytes per token = 2 (K and V) × layers × KV heads × head dim × bytes per element.
  (Llama-class 7B, fp16: 2 × 32 × 32 × 128 × 2 = 524,288 B = 0.5 MiB; 8k tokens = 4 GiB.)
- Memory for the KV cache = GPU memory × the share vLLM may use (``gpu_memory_utilization``,
  0.9 by default) − weights − overhead (activations at the profiling run, CUDA graphs, the
  non-torch allocations: vLLM measures these; here a stated allowance).
- Concurrent sequences at context C = ⌊KV memory ÷ (KV bytes per token × C)⌋ — what vLLM logs
  as "Maximum concurrency for C tokens per request" (its KV cache in tokens ÷ C, counted in
  blocks of 16 tokens); after start-up its /metrics says how many tokens it really holds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gekro_ft.errors import CostError

GIB = 2**30
BYTES_PER_ELEMENT = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "int8": 1, "auto": 2}
VLLM_DEFAULT_UTILIZATION = 0.9
_VLLM_KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
_CACHE_CONFIG_INFO = re.compile(r"^vllm:cache_config_info\{([^}]*)\}", re.MULTILINE)


@dataclass(frozen=True)
class ModelShape:
    layers: int
    kv_heads: int
    head_dim: int
    weight_bytes: float  # what the weights take in memory at the serving dtype
    dtype: str = "float16"

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_ELEMENT[self.dtype]


def shape_from_config(config: dict[str, Any], *, weight_bytes: float | None = None, params: float | None = None,
                      dtype: str = "float16", source: str = "config") -> ModelShape:
    """A Hugging Face ``config.json``'s shape; weights from ``weight_bytes``, else ``params`` × bytes
    per element. Multimodal configs keep the language model's figures under ``text_config``."""
    config = config.get("text_config") or config
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError) as e:
        raise CostError(f"{source}: not a decoder config with num_hidden_layers, num_attention_heads and "
                        f"hidden_size ({e})") from None
    if dtype not in BYTES_PER_ELEMENT:
        raise CostError(f"dtype {dtype!r}: use one of {', '.join(BYTES_PER_ELEMENT)}")
    if weight_bytes is None:
        if params is None:
            raise CostError(f"{source}: give the weights' size or the parameter count")
        weight_bytes = params * BYTES_PER_ELEMENT[dtype]
    return ModelShape(layers, kv_heads, head_dim, float(weight_bytes), "float16" if dtype == "auto" else dtype)


def shape_from_dir(model_dir: str | Path, dtype: str = "auto") -> ModelShape:
    """The shape of a local model directory: its config.json, and its parameter count from the
    safetensors headers (no tensor is loaded) × the serving dtype's bytes. ``auto`` serves as
    vLLM does: the config's torch_dtype when it is 16-bit, else float16."""
    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CostError(f"{model_dir}/config.json: cannot read ({e})") from None
    stored = str((config.get("text_config") or config).get("torch_dtype") or config.get("torch_dtype") or "")
    serve_dtype = dtype if dtype != "auto" else (stored if stored in ("bfloat16", "float16") else "float16")
    params = _safetensors_params(sorted(model_dir.glob("*.safetensors")))
    return shape_from_config(config, params=params, dtype=serve_dtype, source=str(model_dir))


def _safetensors_params(files: list[Path]) -> float | None:
    """Elements in every tensor of ``files``, read from their headers; None without files."""
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        try:
            with safe_open(str(f), framework="numpy") as st:
                total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
        except Exception as e:  # the library raises its own untyped errors for a bad header
            raise CostError(f"{f}: not a readable safetensors file ({e})") from None
    return float(total)


@dataclass(frozen=True)
class Capacity:
    gpu_memory_bytes: float
    memory_utilization: float
    weight_bytes: float
    overhead_bytes: float
    kv_bytes_per_token: int
    kv_cache_bytes: float  # what is left for the KV cache (≤ 0: the model does not fit)
    kv_cache_tokens: int
    context_tokens: int
    max_concurrent_sequences: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.gpu_memory_bytes / GIB:.1f} GiB × {self.memory_utilization:g} − weights "
                f"{self.weight_bytes / GIB:.2f} GiB − overhead {self.overhead_bytes / GIB:.2f} GiB = KV cache "
                f"{self.kv_cache_bytes / GIB:.2f} GiB at {self.kv_bytes_per_token:,} B/token "
                f"= {self.kv_cache_tokens:,} tokens = {self.max_concurrent_sequences} sequences of "
                f"{self.context_tokens:,} tokens")


def capacity(shape: ModelShape, *, gpu_memory_gib: float, context_tokens: int,
             memory_utilization: float = VLLM_DEFAULT_UTILIZATION, overhead_gib: float = 1.0) -> Capacity:
    """The formulas in the module docstring."""
    if not gpu_memory_gib > 0 or context_tokens < 1 or not 0 < memory_utilization <= 1 or overhead_gib < 0:
        raise CostError("GPU memory > 0, context ≥ 1 token, memory utilization in (0, 1], overhead ≥ 0")
    total = gpu_memory_gib * GIB
    kv = total * memory_utilization - shape.weight_bytes - overhead_gib * GIB
    tokens = max(0, math.floor(kv / shape.kv_bytes_per_token))
    return Capacity(total, memory_utilization, shape.weight_bytes, overhead_gib * GIB, shape.kv_bytes_per_token,
                    kv, tokens, context_tokens, tokens // context_tokens)


def vllm_kv_tokens(text: str) -> int | None:
    """The KV-cache size in tokens vLLM found, from its /metrics text (``vllm:cache_config_info``:
    num_gpu_blocks × block_size) or its start-up log ("GPU KV cache size: N tokens"). A regex, not
    prometheus_client: one labelled line, and that package is not a dependency of ours."""
    info = _CACHE_CONFIG_INFO.search(text)
    if info:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', info.group(1)))
        if labels.get("num_gpu_blocks", "").isdigit() and labels.get("block_size", "").isdigit():
            return int(labels["num_gpu_blocks"]) * int(labels["block_size"])
    found = _VLLM_KV_TOKENS.findall(text)
    return int(found[-1].replace(",", "")) if found else None


def compare_with_vllm(estimate: Capacity, text: str) -> str | None:
    """How close our estimate came to the KV cache vLLM allocated (None when ``text`` does not say)."""
    tokens = vllm_kv_tokens(text)
    if not tokens:
        return None
    return (f"vLLM's KV cache holds {tokens:,} tokens, {tokens / estimate.context_tokens:.2f}x sequences of "
            f"{estimate.context_tokens:,} (its \"maximum concurrency\"); the estimate was "
            f"{estimate.kv_cache_tokens:,} tokens, {estimate.kv_cache_tokens / tokens:.0%} of vLLM's")


def gpu_memory_gib_here() -> float | None:
    """The first GPU's memory on this machine, from nvidia-smi (None without one)."""
    from gekro_ft.bench.hardware import describe_host

    gpus = describe_host()["gpus"]
    m = re.search(r"\((\d+)\s*MiB\)", gpus[0]) if gpus else None
    return int(m.group(1)) / 1024 if m else None


def before_vllm(model_dir: str | Path, *, dtype: str = "auto", max_model_len: int | None = None,
                gpu_memory_utilization: float | None = None, tensor_parallel_size: int | None = None,
                gpu_memory_gib: float | None = None, overhead_gib: float = 1.0) -> Capacity | None:
    """The capacity ``vllm serve`` should find for a local model directory on this machine's GPU
    (all ``tensor_parallel_size`` GPUs together); None when there is no GPU or no local config to
    read. The context is ``max_model_len``, else the model's ``max_position_embeddings``."""
    gpu = gpu_memory_gib if gpu_memory_gib is not None else gpu_memory_gib_here()
    if gpu is None or not (Path(model_dir) / "config.json").exists():
        return None
    shape = shape_from_dir(model_dir, dtype)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    context = max_model_len or int((config.get("text_config") or config).get("max_position_embeddings") or 4096)
    gpus = tensor_parallel_size or 1
    return capacity(shape, gpu_memory_gib=gpu * gpus, context_tokens=context,
                    memory_utilization=gpu_memory_utilization or VLLM_DEFAULT_UTILIZATION,
                    overhead_gib=overhead_gib * gpus)


def read_shape(model_dir: str | Path | None, config_file: str | Path | None, params: float | None,
               dtype: str = "float16") -> ModelShape:
    """A model directory's shape, or a config.json's with the parameter count."""
    if model_dir is not None:
        return shape_from_dir(model_dir, dtype)
    if config_file is None:
        raise CostError("give a model directory, or a config.json with the parameter count")
    try:
        config = json.loads(Path(config_file).read_text())
    except (OSError, ValueError) as e:
        raise CostError(f"{config_file}: cannot read ({e})") from None
    return shape_from_config(config, params=params, dtype=dtype, source=str(config_file))
