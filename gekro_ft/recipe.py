"""Training recipes: YAML validated into typed sections, with ``--set key=value`` overrides.

Unknown keys and bad values are errors that name the key, all reported at once.
A recipe is found by path, or by name in ``./recipes``, ``$GEKRO_FT_RECIPES`` and the
recipes shipped with gekro-ft. Relative paths in a recipe (data files, a chat template,
a ``./`` model directory) are relative to the recipe file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gekro_ft.config import ConfigKind
from gekro_ft.errors import RecipeError
from gekro_ft.models import DEFAULT_MODEL

RECIPES = ConfigKind("recipe", "recipes", "GEKRO_FT_RECIPES", RecipeError)
PATH_KEYS = ("data.train", "data.eval", "data.sources[].file", "model.chat_template", "model.name?",
             "train.launcher_config")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    name: str = Field(DEFAULT_MODEL, description="Base model: the bundled default's name, a local "
                      "directory, or a Hugging Face id (from the local cache when offline).")
    load_in_4bit: bool = Field(True, description="QLoRA: load the base in 4-bit NF4 (bitsandbytes).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Compute dtype; auto is bfloat16 on GPUs that have it, else float32.")
    max_seq_len: int = Field(1024, ge=16, le=262144, description="Rows are truncated (from the right) to this.")
    chat_template: str | None = Field(None, description="A Jinja chat template file replacing the model's own.")


class LoraSection(_Section):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r, or / sqrt(r) with rsLoRA).")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear.")
    use_rslora: bool = Field(False, description="Rank-stabilized LoRA scaling.")


class DataSource(_Section):
    """One training file of several; ``data.sources`` mixes them (a curated set plus, say, the
    router's escalation log)."""

    file: str = Field(description="A training file, in any schema the data stage reads.")
    schema_: Literal["openai", "alpaca", "sharegpt"] | None = Field(
        None, alias="schema", description="Its schema (default: detected).")
    weight: float | None = Field(None, gt=0, description=(
        "Rows drawn per row of the file: 1 takes each once, 0.5 a seeded half, 2 each twice. "
        "Default 1; not with max_rows."))
    max_rows: int | None = Field(None, ge=1, description="Take a seeded sample of at most this many rows.")
    responses_only: bool | None = Field(None, description="Its own loss mask (default: data.responses_only).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @model_validator(mode="after")
    def _weight_or_cap(self):
        if self.weight is not None and self.max_rows is not None:
            raise ValueError("set weight or max_rows, not both")
        return self


class DataSection(_Section):
    train: str | None = Field(None, description="Training file, in any schema the data stage reads "
                              "(or several, as data.sources).")
    sources: list[DataSource] | None = Field(None, min_length=1, description=(
        "Several training files mixed, each with its schema, weight or row cap and loss mask; "
        "the mix is seeded by train.seed, and eval_frac splits all of them by prompt at once."))
    eval: str | None = Field(None, description="Eval file; or use eval_frac to split one off train.")
    eval_frac: float | None = Field(None, gt=0, lt=1, description="Share of train held out for eval loss.")
    schema_: Literal["openai", "alpaca", "sharegpt"] | None = Field(
        None, alias="schema", description="Schema of the files (default: detected).")
    responses_only: bool = Field(True, description="Loss on assistant answers only, not on prompts.")
    packing: bool = Field(False, description=(
        "Pack rows best-fit into sequences of model.max_seq_len; each row still attends only to "
        "itself and keeps its loss mask. Pays on mixed-length data (1.8x tokens/s, "
        "benchmarks/train_packing.py)."))

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @model_validator(mode="after")
    def _one_eval_source(self):
        if self.eval is not None and self.eval_frac is not None:
            raise ValueError("set data.eval or data.eval_frac, not both")
        if (self.train is None) == (self.sources is None):
            raise ValueError("set data.train (one file) or data.sources (several), one of the two")
        return self

    def training_sources(self) -> list[DataSource]:
        """The training files as sources: ``train`` is one source with the section's settings."""
        if self.sources is not None:
            return self.sources
        return [DataSource(file=self.train, schema=self.schema_, responses_only=self.responses_only)]

    def loss_on_prompts(self, source: DataSource) -> bool:
        return not (self.responses_only if source.responses_only is None else source.responses_only)


class TrainSection(_Section):
    backend: Literal["auto", "unsloth", "hf"] = Field(
        "auto", description="auto: Unsloth on CUDA when installed, else transformers + PEFT + TRL.")
    epochs: float | None = Field(1.0, gt=0, description="Passes over the data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1, description="Rows per device per step.")
    grad_accum: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "sgd"] = "adamw_torch"
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    gradient_checkpointing: bool = True
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps.")
    eval_steps: int = Field(50, ge=1)
    logging_steps: int = Field(10, ge=1)
    processes: int = Field(1, ge=1, description="Training processes, one per GPU (DDP through accelerate "
                                                "launch; gloo on CPU). The global batch is batch_size x "
                                                "grad_accum x processes.")
    launcher_config: str | None = Field(None, description="An accelerate config file (FSDP, DeepSpeed, several "
                                                          "machines) for accelerate launch; relative to the recipe.")

    @model_validator(mode="after")
    def _has_a_length(self):
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self


class TrackingSection(_Section):
    experiment: str = Field("gekro-ft", description="MLflow experiment.")
    registered_model: str | None = Field(None, description="Register the adapter as a version of this model "
                                         "(a name the registry takes: no '/', ':', '%', '@' or '\\').")

    @field_validator("registered_model")
    @classmethod
    def _registry_takes_it(cls, name: str | None) -> str | None:
        problem = None if name is None else registered_model_problem(name)
        if problem:
            raise ValueError(problem)
        return name


# What MLflow's registry refuses (mlflow.utils.validation._validate_model_name, every store; its
# file store also refuses os.sep and '%'), what the SQL stores' name column holds (256), and '@',
# which would make models:/NAME@ALIAS ambiguous. tests/test_recipe.py checks this against MLflow.
_REGISTRY_REFUSES = ("/", ":", "%", "@", "\\")
MAX_REGISTERED_NAME = 256


def registered_model_problem(name: str) -> str | None:
    """Why the MLflow registry (or a ``models:/NAME@ALIAS`` reference) cannot take ``name``, or
    None: checked when the recipe is read, not after a night of training."""
    if not name.strip():
        return "must not be empty"
    bad = sorted({c for c in name if c in _REGISTRY_REFUSES})
    if bad:
        return f"must not contain {', '.join(repr(c) for c in bad)} (the model registry refuses them)"
    if name == "." or name.startswith(".."):
        return "must not be '.' or start with '..' (the model registry refuses path-like names)"
    if len(name) > MAX_REGISTERED_NAME:
        return f"at most {MAX_REGISTERED_NAME} characters (got {len(name)})"
    return None


class Recipe(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included: what is saved next to the adapter and logged."""
        return self.model_dump(mode="json", by_alias=True)

    def flat(self) -> dict[str, Any]:
        """``section.key -> value``, for MLflow params."""
        return {f"{s}.{k}": v for s, section in self.resolved().items() for k, v in section.items()}

    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(self.resolved(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def find_recipe(name_or_path: str | Path) -> Path:
    return RECIPES.find(name_or_path)


def list_recipes() -> list[Path]:
    return list(RECIPES.named().values())


def load_recipe(name_or_path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Load, override and validate a recipe; every problem is reported in one RecipeError."""
    return RECIPES.load(name_or_path, Recipe, overrides, PATH_KEYS)[0]
