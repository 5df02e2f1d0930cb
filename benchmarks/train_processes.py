"""Training in one process against several (accelerate launch, DDP), same global batch, side by side.

    python benchmarks/train_processes.py [--steps 8] [--global-batch 8] [--processes 2]

Each side is the command a user runs, ``gekro-ft train smollm2-135m-cpu --processes N``, with
``batch_size = global batch ÷ N`` so both sides see the same rows per optimizer step, the
same seed and the same number of steps, one after the other on this machine. Reported per
side: the trainer's own ``train_runtime`` (training only), the command's wall clock (model
loading in every process and the launch included), trained samples/s, and the final
training loss; then the ratios. On a CPU, each process gets cores ÷ N threads, so the
speed-up is bounded by how well one process used all cores to begin with; on GPUs each
process has a device of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "datasets" / "ticket-extraction" / "openai.jsonl"


def run_side(processes: int, args, root: Path) -> dict:
    work = root / f"p{processes}"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gekro_ft.cli", "train", "smollm2-135m-cpu", "-o", str(work / "run"),
           "--processes", str(processes)]
    for o in [f"train.max_steps={args.steps}", f"train.batch_size={args.global_batch // processes}",
              f"train.save_steps={args.steps}", "train.logging_steps=1", "data.eval_frac=null",
              f"data.train={DATA}", "tracking.registered_model=null", "tracking.experiment=bench"]:
        cmd += ["--set", o]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True,
                          text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("bench").experiment_id])[0]
    m = run.data.metrics
    return {"processes": processes, "train_runtime_s": m["train_runtime"], "wall_s": wall,
            "samples_per_s": args.steps * args.global_batch / m["train_runtime"], "final_loss": m["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    if args.global_batch % args.processes:
        sys.exit("--global-batch must be a multiple of --processes")
    with tempfile.TemporaryDirectory() as tmp:
        sides = [run_side(1, args, Path(tmp)), run_side(args.processes, args, Path(tmp))]
    print(f"{'processes':>9} {'train s':>8} {'wall s':>8} {'samples/s':>10} {'final loss':>11}")
    for s in sides:
        print(f"{s['processes']:>9} {s['train_runtime_s']:>8.1f} {s['wall_s']:>8.1f} {s['samples_per_s']:>10.2f} "
              f"{s['final_loss']:>11.4f}")
    one, many = sides
    print(f"speed-up, training only: {many['samples_per_s'] / one['samples_per_s']:.2f}x; wall clock: "
          f"{one['wall_s'] / many['wall_s']:.2f}x; final loss difference: "
          f"{abs(many['final_loss'] - one['final_loss']):.4f} ({os.cpu_count()} cores, "
          f"{args.steps} steps of {args.global_batch} rows)")


if __name__ == "__main__":
    main()
