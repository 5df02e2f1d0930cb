"""One training run, top to bottom: setup -> preflight -> train -> save -> cleanup.

Output directory:

    OUT/recipe.yaml            the resolved recipe, written before training starts
    OUT/run.json               the MLflow run id, so --resume continues the same run
    OUT/checkpoints/checkpoint-N/   every train.save_steps (optimizer, scheduler, RNG, data position)
    OUT/adapter/               the result: PEFT files, tokenizer + chat template, gekro_ft.json
"""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import yaml

from gekro_ft.adapter import template_record, write_manifest
from gekro_ft.atomic import atomic_directory, write_bytes_atomic
from gekro_ft.errors import PreflightError, TrainingError, TrainingInterrupted
from gekro_ft.process import StopOnSignal
from gekro_ft.recipe import Recipe, find_recipe, load_recipe


@dataclass
class Plan:
    """What preflight decided; ``--dry-run`` prints this and stops."""

    recipe: Recipe
    recipe_name: str
    output_dir: Path
    model_source: str
    model_kind: str
    backend: str
    backend_reason: str
    device: str
    dtype: str
    train_rows: int
    eval_rows: int
    train_tokens: int
    skipped: dict[str, int]
    memory: Any  # preflight.MemoryEstimate
    dataset_hash: str
    sources: list = field(default_factory=list)  # dataset.SourceReport per training file

    def summary_lines(self) -> list[str]:
        """What preflight decided, as the lines printed before training starts."""
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items()) or "none"
        t = self.recipe.train
        lines = [f"backend: {self.backend} ({self.backend_reason}); device {self.device}, {self.dtype}",
                 f"data: {self.train_rows} train rows ({self.train_tokens} tokens), {self.eval_rows} eval rows; "
                 f"skipped: {skipped}",
                 *(f"  {Path(s.file).name}: {s.train_rows} train rows ({s.train_tokens} tokens), "
                   f"{s.eval_rows} eval rows, of {s.rows} read; sha256 {s.sha256[:12]}"
                   for s in self.sources if len(self.sources) > 1),
                 f"memory: {self.memory.describe()}"]
        if t.processes > 1:
            lines.append(f"processes: {t.processes} (accelerate launch, DDP); global batch {t.batch_size} x "
                         f"{t.grad_accum} accumulated x {t.processes} = {t.batch_size * t.grad_accum * t.processes}")
        return lines


@dataclass
class TrainResult:
    adapter_dir: Path
    run_id: str
    metrics: dict[str, float]
    registered_version: str | None
    plan: Plan
    history: list[dict[str, float]] = field(default_factory=list)


def latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = [p for p in (output_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def preflight(recipe_name: str | Recipe, overrides: list[str] = (), output_dir: Path | None = None,
              status: Callable[[str], None] = lambda s: None, *, name: str | None = None,
              data_validated: bool = False) -> tuple[Plan, Any, Any]:
    """Validate data and memory before anything heavy; return the plan, tokenizer and prepared data.

    ``recipe_name`` is a recipe name or file (loaded with ``overrides``), or a loaded Recipe
    with its ``name``. ``data_validated``: the caller has just validated these files against
    this model's chat template and length (the pipeline's data stage), so they are rendered
    once more only to build the training rows, not a second time to check them."""
    from gekro_ft.data.validate import validate_file
    from gekro_ft.models import load_tokenizer, resolve_model
    from gekro_ft.runtime import best_device, resolve_dtype
    from gekro_ft.train.backends import choose_backend
    from gekro_ft.train.dataset import prepare_data
    from gekro_ft.train.preflight import (Settings, available_memory, estimate, model_shape, suggestions,
                                          unpackable_layers)

    if isinstance(recipe_name, Recipe):
        recipe, stem = recipe_name, name or "recipe"
    else:
        recipe, stem = load_recipe(recipe_name, overrides), find_recipe(recipe_name).stem
    output_dir = Path(output_dir or Path("work") / "train" / stem)
    data_files = _data_files(recipe)
    for key, path, _ in data_files:
        if not Path(path).exists():
            raise PreflightError(f"{key}: no such file {path}")

    status(f"resolving {recipe.model.name}")
    model = resolve_model(recipe.model.name)
    template = Path(recipe.model.chat_template).read_text() if recipe.model.chat_template else None
    tokenizer = load_tokenizer(model.source, template)

    status("validating the data against the chat template")
    for key, path, schema in data_files:
        if data_validated:
            continue
        report = validate_file(path, schema, tokenizer=tokenizer, model=recipe.model.name,
                               max_seq_len=recipe.model.max_seq_len)
        if report.errors:
            codes = ", ".join(f"{c} x{n}" for c, n in report.by_code().items())
            raise PreflightError(f"{key} ({path}) has {report.errors} errors: {codes}",
                                 hint=f"see gekro-ft data validate {path} --model {recipe.model.name} "
                                      f"--max-seq-len {recipe.model.max_seq_len}")
    data = prepare_data(recipe, tokenizer)
    if not data.train:
        raise PreflightError(f"{data_files[0][0]} ({data_files[0][1]}) has no trainable rows"
                             if len(data.sources) == 1 else "data.sources have no trainable rows")

    backend, reason = choose_backend(recipe.train.backend)
    device = "cuda" if backend == "unsloth" else best_device()
    dtype = resolve_dtype(recipe.model.dtype, device)
    if recipe.model.load_in_4bit is False and device == "cpu" and dtype != "float32":
        raise PreflightError(f"model.dtype={dtype} on CPU: use float32")

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model.source)
    if recipe.data.packing and (layers := unpackable_layers(config)):
        raise PreflightError(f"data.packing: {recipe.model.name} has {', '.join(layers)} layers, which would carry "
                             "state from one packed row into the next", hint="set data.packing=false")
    shape = model_shape(config)
    longest = max(len(r["input_ids"]) for r in data.train)
    seq_len = recipe.model.max_seq_len if recipe.data.packing else min(recipe.model.max_seq_len, longest)
    settings = Settings(batch_size=recipe.train.batch_size, seq_len=seq_len, load_in_4bit=recipe.model.load_in_4bit,
                        dtype=dtype, lora_r=recipe.lora.r, target_modules=recipe.lora.target_modules,
                        optimizer=recipe.train.optimizer, gradient_checkpointing=recipe.train.gradient_checkpointing)
    memory = estimate(shape, settings, available_memory(device), device)
    if not memory.fits:
        tips = suggestions(shape, settings, memory.available, device)
        raise PreflightError(f"this run will not fit: {memory.describe()}",
                             hint="try " + "; or ".join(tips) if tips else "use a smaller model or a larger device")
    plan = Plan(recipe, stem, output_dir, model.source, model.kind, backend, reason, device, dtype,
                len(data.train), len(data.eval), data.train_tokens, data.skipped, memory, data.dataset_hash,
                data.sources)
    return plan, tokenizer, data


def _data_files(recipe: Recipe) -> list[tuple[str, str, str | None]]:
    """(recipe key, path, schema) of every data file the recipe names."""
    d = recipe.data
    files = [("data.train", d.train, d.schema_)] if d.sources is None else \
        [(f"data.sources[{i}].file", s.file, s.schema_) for i, s in enumerate(d.sources)]
    return files + ([("data.eval", d.eval, d.schema_)] if d.eval else [])


def peak_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("gekro-ft", "torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "mlflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _callbacks(stopper: StopOnSignal, mlflow: Any, device: str, history: list, lost: list, stop: list,
               on_progress: Callable[[dict], None] | None):
    from transformers import TrainerCallback

    from gekro_ft import tracking
    from gekro_ft.train.launch import agree

    class Track(TrainerCallback):
        def __init__(self):
            self.last_tokens = None
            self.last_time = None

        def on_step_end(self, args, state, control, **kw):
            if agree(stopper.received is not None):  # every process stops at the same step
                stop.append("signal")
                control.should_save = True
                control.should_training_stop = True
            if on_progress:
                on_progress({"step": state.global_step, "max_steps": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kw):
            logs = dict(logs or {})
            now = time.perf_counter()
            tokens = logs.get("num_tokens")
            if tokens is not None and self.last_tokens is not None and now > self.last_time:
                logs["tokens_per_s"] = (tokens - self.last_tokens) / (now - self.last_time)
            if tokens is not None:
                self.last_tokens, self.last_time = tokens, now
            logs["peak_memory_mb"] = peak_memory_bytes(device) / 2**20
            metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            history.append({"step": state.global_step, **metrics})
            try:
                mlflow.log_metrics(metrics, step=state.global_step)
            except Exception as e:
                if not tracking.lost_server(e):
                    raise
                lost.append(e)
            # Stop like on a signal: save a checkpoint now, so --resume loses nothing. Every
            # process logs at the same steps, so all of them take part in this vote.
            if agree(bool(lost)):
                stop.append("tracking")
                control.should_save = True
                control.should_training_stop = True
            if on_progress:
                on_progress({"step": state.global_step, "max_steps": state.max_steps, **metrics})

    return [Track()]


def train(plan: Plan, tokenizer: Any, data: Any, resume: bool = False,
          on_progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train per ``plan``; write the adapter directory; track everything in MLflow."""
    import torch
    import datasets
    from transformers import PrinterCallback
    from trl import SFTConfig

    from gekro_ft import tracking
    from gekro_ft.train.backends import BACKENDS
    from gekro_ft.train.launch import allow_indexed_cpu_devices, is_main_process, process_device, world_size

    datasets.disable_progress_bars()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    recipe, out = plan.recipe, plan.output_dir
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise TrainingError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    if not resume and latest_checkpoint(out) is not None:
        raise TrainingError(f"{out} already has checkpoints from an earlier run",
                         hint="add --resume to continue it, or choose another --output-dir")
    main = is_main_process()  # in a multi-process launch only the main one writes files and tracks
    if world_size() > 1 and plan.device == "cpu":
        allow_indexed_cpu_devices()
    if main:
        write_bytes_atomic(out / "recipe.yaml", yaml.safe_dump(recipe.resolved(), sort_keys=False).encode())

    mlflow = tracking.setup(recipe.tracking.experiment) if main else _NotTracking()
    run_file = out / "run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if resume and run_file.exists() else None
    dtype = getattr(torch, plan.dtype)
    history: list[dict[str, float]] = []
    lost: list[Exception] = []  # the tracking server went away during training
    stop: list[str] = []  # why all processes agreed to stop early
    resume_hint = f"when the server is back, run the same command with --resume (work kept in {out})"
    doing = "starting the run"
    try:
        run = mlflow.start_run(run_id=run_id, run_name=None if run_id else plan.recipe_name,
                               log_system_metrics=True, tags=None if run_id else tracking.parent_tags())
    except Exception as e:
        if tracking.lost_server(e):
            raise tracking.lost_error(e, doing, hint=resume_hint) from None
        raise
    status = "FAILED"
    try:
        run_id = run.info.run_id
        if main:
            write_bytes_atomic(run_file, orjson.dumps({"run_id": run_id, "tracking_uri": tracking.shown_uri()}))
        doing = "logging the recipe"
        if checkpoint is None:
            mlflow.log_params(recipe.flat())
            mlflow.log_dict(recipe.resolved(), "recipe.json")
            mlflow.set_tags({"gekro_ft.backend": plan.backend, "gekro_ft.backend_reason": plan.backend_reason,
                             "gekro_ft.device": plan.device, "gekro_ft.base_model": recipe.model.name,
                             "gekro_ft.dataset_hash": plan.dataset_hash, "gekro_ft.recipe_hash": recipe.digest(),
                             "gekro_ft.git_commit": tracking.git_commit() or "none",
                             **{f"gekro_ft.source.{i}.sha256": src.sha256 for i, src in enumerate(plan.sources)}})
            mlflow.log_dict({"sources": [src.to_dict() for src in plan.sources]}, "data_sources.json")

        model = BACKENDS[plan.backend]().load(_model_ref(plan), recipe, dtype, process_device(plan.device))
        train_set, eval_set, collator, trainer_class, layout = _datasets(model, plan, tokenizer, data)
        if layout:
            mlflow.set_tag("gekro_ft.packing", layout)
        t = recipe.train
        args = SFTConfig(
            output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
            per_device_eval_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
            learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
            optim=t.optimizer, weight_decay=t.weight_decay, seed=t.seed, data_seed=t.seed,
            num_train_epochs=t.epochs or 1, max_steps=t.max_steps or -1,
            logging_steps=t.logging_steps, save_steps=t.save_steps, save_total_limit=2,
            eval_strategy="steps" if data.eval else "no", eval_steps=t.eval_steps,
            max_length=recipe.model.max_seq_len, packing=layout == "flattened",
            bf16=plan.dtype == "bfloat16", fp16=plan.dtype == "float16", use_cpu=plan.device == "cpu",
            gradient_checkpointing=False,  # the backend already set it up its own way
            report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            # LoRA leaves the base frozen: nothing is unused, and searching for it costs a graph walk
            ddp_find_unused_parameters=False if world_size() > 1 else None)
        trainer = trainer_class(model=model, args=args, processing_class=tokenizer, data_collator=collator,
                                train_dataset=train_set, eval_dataset=eval_set)
        trainer.remove_callback(PrinterCallback)  # our progress bar shows the logs
        doing = "training"
        with StopOnSignal() as stopper:
            for cb in _callbacks(stopper, mlflow, plan.device, history, lost, stop,
                                 on_progress if main else None):
                trainer.add_callback(cb)
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step, saved = trainer.state.global_step, latest_checkpoint(out)
        if lost:
            raise tracking.lost_error(lost[0], f"logging step {step}",
                                      hint=f"checkpoint saved in {saved}; {resume_hint}")
        if stop:  # a signal here, or to (or a lost server in) another process of the launch
            status = "KILLED"
            cause = f"signal {stopper.received}" if stopper.received is not None else f"another process ({stop[0]})"
            raise TrainingInterrupted(f"stopped by {cause} at step {step}; checkpoint saved in {saved}",
                                      hint="run the same command with --resume to continue")
        metrics = {"train_loss": float(result.training_loss)}
        if data.eval:
            metrics.update(_final_eval(trainer))
        metrics["peak_memory_mb"] = peak_memory_bytes(plan.device) / 2**20
        if not main:
            status = "FINISHED"
            return TrainResult(out / "adapter", run_id, metrics, None, plan, history)

        doing = "logging the final metrics"
        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})

        adapter_dir = _save_adapter(trainer.model, tokenizer, plan, run_id, metrics)
        doing = "uploading the adapter"
        mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
        version = None
        doing = "registering the adapter"
        if recipe.tracking.registered_model:
            version = tracking.register_adapter(run_id, "adapter", recipe.tracking.registered_model,
                                                {"recipe_hash": recipe.digest(), "dataset_hash": plan.dataset_hash})
            mlflow.set_tag("gekro_ft.registered_version", f"{recipe.tracking.registered_model}/{version}")
        status = "FINISHED"
        return TrainResult(adapter_dir, run_id, metrics, version, plan, history)
    except Exception as e:
        if tracking.lost_server(e):
            raise tracking.lost_error(e, doing, hint=resume_hint) from None
        raise
    finally:
        _end_run(mlflow, status)


class _NotTracking:
    """What the processes other than the main one track with: nothing (the main one logs the
    run, and DDP keeps every process's metrics the same)."""

    class _Run:
        class info:
            run_id = None

    def start_run(self, **kw: Any) -> Any:
        return self._Run()

    def _nothing(self, *a: Any, **kw: Any) -> None:
        pass

    log_metrics = log_params = log_dict = set_tag = set_tags = end_run = _nothing


def _end_run(mlflow: Any, status: str) -> None:
    """End the MLflow run; a server that is gone cannot hear it, and must not hide why we stopped."""
    from gekro_ft import tracking

    try:
        mlflow.end_run(status=status)
    except Exception as e:
        if not tracking.lost_server(e):
            raise
        if status == "FINISHED":
            raise tracking.lost_error(e, "ending the run", hint="the adapter is saved; the run shows as "
                                      "RUNNING in MLflow until it is ended there") from None


def _final_eval(trainer: Any) -> dict[str, float]:
    """The eval metrics at the last step. The trainer evaluates there itself whenever
    ``eval_steps`` lands on it or training ends (transformers' flow callback); evaluating again
    would cost a whole eval pass (half of a short CPU run), so its logged figures are used."""
    step = trainer.state.global_step
    logged = [h for h in trainer.state.log_history if h.get("step") == step and "eval_loss" in h]
    values = {k: v for k, v in logged[-1].items() if k != "step"} if logged else trainer.evaluate()
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}


def _datasets(model: Any, plan: Plan, tokenizer: Any, data: Any) -> tuple[Any, Any, Any, Any, str | None]:
    """Train and eval sets, collator, trainer class and packing layout (picked from the attention kernel)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from gekro_ft.train import packing

    layout = packing.packing_layout(model, plan.backend) if plan.recipe.data.packing else None
    if layout != "rows":  # unpacked, or TRL packs and flattens each step itself
        return (Dataset.from_list(data.train), Dataset.from_list(data.eval) if data.eval else None, None,
                SFTTrainer, layout)
    max_len = plan.recipe.model.max_seq_len
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return (packing.pack_rows(data.train, max_len), packing.pack_rows(data.eval, max_len) if data.eval else None,
            packing.RowPackingCollator(pad), packing.RowPackedSFTTrainer, layout)


def _model_ref(plan: Plan):
    from gekro_ft.models import ResolvedModel

    return ResolvedModel(plan.recipe.model.name, plan.model_source, plan.model_kind)


def _save_adapter(model: Any, tokenizer: Any, plan: Plan, run_id: str, metrics: dict) -> Path:
    """PEFT files + tokenizer + manifest, built beside the target and renamed into place."""
    target = plan.output_dir / "adapter"
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "schema_version": 1,
            "base_model": {"name": plan.recipe.model.name, "source": plan.model_source, "kind": plan.model_kind},
            "recipe": plan.recipe.resolved(), "recipe_hash": plan.recipe.digest(),
            "dataset_hash": plan.dataset_hash, "data_sources": [src.to_dict() for src in plan.sources],
            "chat_template": template_record(tokenizer), "backend": plan.backend, "device": plan.device,
            "versions": _versions(), "mlflow_run_id": run_id, "metrics": metrics,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_manifest(tmp, manifest)
    return target
