"""Training throughput: our hf backend against a plain TRL SFTTrainer script, side by side.

    python benchmarks/train_throughput.py [--steps 10] [--batch-size 4] [--model smollm2-135m-instruct]

Both sides train the same base model (4-bit NF4 via bitsandbytes, LoRA r=16 on all
linear layers) on the same ticket-extraction rows with the same batch size, length,
learning rate and number of steps, each in a fresh child process:

- ours: ``gekro_ft.train.run`` (preflight, our renderer's loss mask, MLflow tracking,
  checkpoints) with the smollm2-135m-cpu recipe and overrides;
- plain TRL: the script a user would write from TRL's docs: prompt/completion rows,
  ``completion_only_loss``, ``SFTTrainer``, no tracking.

Reported per side: trained tokens/s (non-padding tokens over the trainer's own
``train_runtime``) and the child's peak RSS (CPU) or peak CUDA memory. Target
(issue 3): ours/TRL tokens/s >= 0.95. With a CUDA GPU and unsloth installed, it also
runs our unsloth backend.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from child_process import run_python  # benchmarks/child_process.py, beside this script

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "datasets" / "ticket-extraction" / "openai.jsonl"


def child_ours(args, workdir: Path, backend: str) -> dict:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    from gekro_ft.train.run import preflight, train

    overrides = [f"model.name={args.model}", f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
                 f"train.backend={backend}", "data.eval_frac=null", f"data.train={DATA}",
                 f"train.save_steps={args.steps}", "train.logging_steps=1", "tracking.registered_model=null"]
    plan, tokenizer, data = preflight("smollm2-135m-cpu", overrides, workdir / f"ours-{backend}")
    result = train(plan, tokenizer, data)
    end = [h for h in result.history if "train_runtime" in h][-1]
    tokens = max(h.get("num_tokens", 0) for h in result.history)
    return {"runtime_s": end["train_runtime"], "tokens": tokens, "device": plan.device}


def child_trl(args, workdir: Path) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from gekro_ft.models import resolve_model

    source = resolve_model(args.model).source
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    rows = load_dataset("json", data_files=str(DATA), split="train")
    rows = rows.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                    remove_columns=rows.column_names)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, dtype=dtype,
                                                 device_map={"": "cuda" if cuda else "cpu"})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = SFTConfig(output_dir=str(workdir / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                       learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=1,
                       max_length=256, completion_only_loss=True, report_to="none", save_strategy="no",
                       gradient_checkpointing=False,  # SFTConfig defaults to True; the recipe has it off
                       bf16=cuda, use_cpu=not cuda, disable_tqdm=True, seed=0)
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=AutoTokenizer.from_pretrained(source),
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    out = trainer.train()
    tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
    return {"runtime_s": out.metrics["train_runtime"], "tokens": tokens, "device": "cuda" if cuda else "cpu"}


def measure(name: str, args) -> dict:
    r, _, usage = run_python(__file__, ["--child", name, "--steps", str(args.steps), "--batch-size",
                                        str(args.batch_size), "--model", args.model, "--workdir", str(args.workdir)],
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    r["tokens_per_s"] = r["tokens"] / r["runtime_s"]
    r.setdefault("peak_mib", usage.ru_maxrss / 1024)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        import torch

        if args.child == "trl":
            r = child_trl(args, args.workdir)
        else:
            r = child_ours(args, args.workdir, args.child.split(":")[1])
        if torch.cuda.is_available():
            r["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(r))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gekro-bench-train-"))
    runs = ["ours:hf", "trl"]
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("unsloth"):
        runs.append("ours:unsloth")
    results = {}
    for name in runs:
        with console.status(f"training: {name}"):
            results[name] = measure(name, args)
        r = results[name]
        console.print(f"  {name}: {r['tokens_per_s']:.1f} tokens/s, peak {r['peak_mib']:.0f} MiB ({r['device']})")
    table = Table("run", "tokens", "train s", "tokens/s", "peak MiB",
                  title=f"{args.steps} steps x batch {args.batch_size}, {args.model}, 4-bit LoRA r=16")
    for name, r in results.items():
        table.add_row(name, str(r["tokens"]), f"{r['runtime_s']:.1f}", f"{r['tokens_per_s']:.1f}", f"{r['peak_mib']:.0f}")
    console.print(table)
    ours, trl = results["ours:hf"], results["trl"]
    ratio = ours["tokens_per_s"] / trl["tokens_per_s"]
    console.print(f"ours:hf / trl tokens/s = {ratio:.3f} (target >= 0.95); peak memory ratio "
                  f"{ours['peak_mib'] / trl['peak_mib']:.3f}", soft_wrap=True)
    if "ours:unsloth" in results:
        u = results["ours:unsloth"]
        console.print(f"unsloth / hf tokens/s = {u['tokens_per_s'] / ours['tokens_per_s']:.2f}; "
                      f"peak memory ratio {u['peak_mib'] / ours['peak_mib']:.2f}")
    (args.workdir / "train_throughput.json").write_text(json.dumps({"schema_version": 1, "results": results,
                                                                     "ratio_hf_vs_trl": ratio}, indent=2))
    console.print(f"results: {args.workdir / 'train_throughput.json'}")


if __name__ == "__main__":
    main()
