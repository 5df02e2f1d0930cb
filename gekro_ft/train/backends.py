"""The two ways to load a model for QLoRA: Unsloth (CUDA) and transformers + PEFT + bitsandbytes.

Both return a PEFT model ready for TRL's SFTTrainer; the training loop itself is shared.
GPU-only libraries are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import Any, Protocol

from gekro_ft import runtime
from gekro_ft.errors import MissingDependencyError
from gekro_ft.models import ResolvedModel
from gekro_ft.recipe import Recipe

# What "all-linear" means to Unsloth, which wants names: the attention and MLP projections.
UNSLOTH_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Backend(Protocol):
    name: str

    def load(self, model: ResolvedModel, recipe: Recipe, dtype: Any, device: str) -> Any:
        """Return a PEFT model with LoRA adapters attached, on ``device``."""


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend, why) for ``train.backend``: auto prefers Unsloth when it can run."""
    has_unsloth = runtime.is_unsloth_available()
    cuda = runtime.cuda_available()
    if requested == "hf":
        return "hf", "train.backend is hf"
    if requested == "unsloth":
        if not cuda:
            raise MissingDependencyError("train.backend is unsloth, but there is no CUDA device",
                                         hint="use train.backend=hf or auto on this machine")
        if not has_unsloth:
            raise MissingDependencyError("train.backend is unsloth, but unsloth is not installed",
                                         hint="pip install 'gekro-ft[unsloth]'")
        return "unsloth", "train.backend is unsloth"
    if cuda and has_unsloth:
        return "unsloth", "auto: CUDA device and unsloth installed"
    if not cuda:
        return "hf", "auto: no CUDA device (Unsloth needs one); transformers + PEFT + bitsandbytes"
    return "hf", "auto: unsloth not installed (pip install 'gekro-ft[unsloth]'); transformers + PEFT + bitsandbytes"


class HFBackend:
    name = "hf"

    def load(self, model: ResolvedModel, recipe: Recipe, dtype: Any, device: str) -> Any:
        import torch
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        quant = None
        if recipe.model.load_in_4bit:
            if not runtime.is_bitsandbytes_available():
                raise MissingDependencyError("model.load_in_4bit needs bitsandbytes", hint="pip install bitsandbytes")
            from transformers import BitsAndBytesConfig

            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        base = AutoModelForCausalLM.from_pretrained(model.source, quantization_config=quant, dtype=dtype,
                                                    device_map={"": device})
        gc = recipe.train.gradient_checkpointing
        if quant is not None:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=gc)
        elif gc:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base.enable_input_require_grads()
        lora = recipe.lora
        peft_model = get_peft_model(base, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
            use_rslora=lora.use_rslora, bias="none", task_type="CAUSAL_LM"))
        if dtype == torch.float32:  # keep adapters in float32 whatever prepare_model did
            for p in peft_model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        if quant is not None and device == "cpu":
            _eval_on_the_training_path(peft_model)
        return peft_model


def _eval_on_the_training_path(model: Any) -> None:
    """Keep bitsandbytes' 4-bit layers on the path training takes when the trainer evaluates.

    On a CPU with AVX512-BF16, a Linear4bit in eval mode repacks its weight for an inference
    kernel that bitsandbytes fetches from the Hugging Face Hub (kernels-community); offline,
    it falls back to a bf16 GEMV kernel. Measured on the CPU recipe (30 eval rows, batch 2,
    2-step runs one after the other): eval 25.5 s that way, 18.2 s on training's own
    dequantize-and-matmul path, which also gives the eval loss in the recipe's dtype.
    """
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


class UnslothBackend:
    name = "unsloth"

    def load(self, model: ResolvedModel, recipe: Recipe, dtype: Any, device: str) -> Any:
        from unsloth import FastLanguageModel  # must come before transformers' model code runs

        base, _tokenizer = FastLanguageModel.from_pretrained(
            model_name=model.source, max_seq_length=recipe.model.max_seq_len, dtype=dtype,
            load_in_4bit=recipe.model.load_in_4bit)
        lora = recipe.lora
        targets = UNSLOTH_ALL_LINEAR if lora.target_modules == "all-linear" else lora.target_modules
        return FastLanguageModel.get_peft_model(
            base, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
            bias="none", use_gradient_checkpointing="unsloth" if recipe.train.gradient_checkpointing else False,
            random_state=recipe.train.seed, use_rslora=lora.use_rslora)


BACKENDS: dict[str, type] = {"hf": HFBackend, "unsloth": UnslothBackend}
