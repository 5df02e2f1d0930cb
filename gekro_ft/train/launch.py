"""Training in several processes: ``gekro-ft train`` hands itself to ``accelerate launch``.

One command for one process or many: with ``train.processes`` > 1 the CLI re-runs the same
``gekro-ft train`` arguments under ``accelerate launch`` (PyTorch DDP: NCCL on GPUs, gloo on
CPU), and each process trains its shard of every global batch. The main process alone writes
the files, talks to MLflow and saves the adapter; every process takes part in checkpoints,
which hold each one's RNG state, so ``--resume`` works the same.

Decisions that change the course of training (stop on a signal, stop because the tracking
server went away) are agreed on by all processes, or the ones that stop would leave the
others waiting forever in the next gradient all-reduce.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAUNCHED_ENV = "GEKRO_FT_LAUNCHED"  # set in the processes accelerate starts for us


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def process_device(device: str) -> str:
    """The device this process trains on: in a launch over several GPUs, its own one."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def inside_launch() -> bool:
    """Whether this process was started by ``accelerate launch``/``torchrun`` (ours or the user's)."""
    return "LOCAL_RANK" in os.environ


def agree(flag: bool) -> bool:
    """True in every process when it is true in any (an all-reduce MAX); ``flag`` alone when
    there is one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def allow_indexed_cpu_devices() -> None:
    """Let ``torch.load`` map onto ``cpu:N``. In a launch on CPUs each process's device is
    ``cpu:RANK``, and transformers' Trainer loads the optimizer state of a checkpoint with
    ``map_location=args.device`` when there are several processes; torch knows only ``cpu``,
    so ``--resume`` would fail in every process without this."""
    import torch.serialization as ts

    ts.register_package(11, lambda obj: None,
                        lambda obj, location: obj.cpu() if location.startswith("cpu:") else None)


def launch_command(processes: int, cli_args: list[str], config_file: Path | None = None,
                   port: int | None = None) -> list[str]:
    """``accelerate launch`` running ``gekro-ft CLI_ARGS`` in ``processes`` processes.

    ``--multi_gpu`` is accelerate's name for its torch.distributed launcher; it is the one that
    starts several processes on a machine without GPUs too (each then trains on the CPU with
    gloo). A config file (FSDP, DeepSpeed, several machines) replaces these defaults."""
    cmd = [sys.executable, "-m", "gekro_ft.train.launch"]  # accelerate launch, see main() below
    if config_file is not None:
        cmd += ["--config_file", str(config_file)]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(processes)]
    if port is not None:
        cmd += ["--main_process_port", str(port)]
    return cmd + ["-m", "gekro_ft.cli", *cli_args]


def run_launched(processes: int, cli_args: list[str], config_file: Path | None = None) -> int:
    """Run ``gekro-ft CLI_ARGS`` under ``accelerate launch`` and return its exit code (the first
    failing process's: 2 for an error it has already reported in one line). SIGINT and SIGTERM
    go to the launcher, which passes them to every process: each saves the checkpoint of the
    step it agreed to stop at, and the launch ends with 130."""
    from gekro_ft.process import ForwardSignals

    env = {**os.environ, LAUNCHED_ENV: "1",
           # one thread per process per core: two processes each using every core only contend
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // processes))}
    proc = subprocess.Popen(launch_command(processes, cli_args, config_file, _free_port()), env=env)
    with ForwardSignals(proc) as forwarded:
        code = forwarded.wait(grace=120)
    # torch's launcher ends itself with the signal it passed on (143 for SIGTERM) once the
    # processes have saved and stopped; what the user asked for happened: an interrupted run.
    return 130 if forwarded.signum is not None and code != 0 else code


def _free_port() -> int:
    """A port for the processes' rendezvous: accelerate's fixed default (29500) would make two
    launches on one machine collide."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    """``accelerate launch ARGV``, ending with the first failed process's exit code instead of
    the launcher's ChildFailedError traceback: each process has already said why in one line
    (or shown its own traceback, for a bug)."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        accelerate_launch(launch_command_parser().parse_args(argv))
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
    except SignalException:
        return 130  # the launcher was stopped by a signal after passing it to the processes
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
