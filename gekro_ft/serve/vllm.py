"""The vLLM engine: build the ``vllm serve`` command for a profile, run it, wait until it is
healthy, say how to call it, pass on signals, and load or unload adapters at run time.
Which vLLM, and how it is started (its command or its environment's Python), is
:mod:`gekro_ft.serve.vllm_program`'s to find.

The API key never goes on the command line (``ps`` would show it to every user of the
machine): the child gets it in ``VLLM_API_KEY``, which vLLM reads when ``--api-key`` is not
given. Waiting for ``/health``, signal forwarding and stopping a process group are
engine-neutral (:mod:`gekro_ft.process`); so is the ready message (:mod:`gekro_ft.serve.ready`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gekro_ft.adapter import AdapterInfo, inspect_adapter
from gekro_ft.errors import ProfileError, ServeError
from gekro_ft.process import ForwardSignals, server_root, stop_process, strip_v1, wait_healthy
from gekro_ft.serve.adapters import name_problem, prepare_adapters, resolve_adapter
from gekro_ft.serve.lora import lora_rank_for
from gekro_ft.serve.ready import ServerInfo, ready_text
from gekro_ft.serve.vllm_program import (KVCACHE_VAR, THREADS_BIND_VAR, VllmProgram, cpu_env,
                                         find_vllm_program)

if TYPE_CHECKING:
    from gekro_ft.serve.profile import Profile

KEY_VAR = "VLLM_API_KEY"
RUNTIME_LORA_VAR = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def vllm_adapter_problems(adapters: Mapping[str, AdapterInfo]) -> list[str]:
    """What vLLM would refuse at start-up (vllm/lora/peft_helper.py), found before loading the base."""
    problems = []
    for name, info in adapters.items():
        if info.use_dora:
            problems.append(f"adapter {name!r} uses DoRA, which vLLM does not serve")
        if info.modules_to_save:
            problems.append(f"adapter {name!r} saves whole modules ({', '.join(info.modules_to_save)}), "
                            "which vLLM does not serve")
        if info.bias != "none":
            problems.append(f"adapter {name!r} trains biases (bias={info.bias!r}), which vLLM does not serve")
    return problems


def vllm_command(profile: Profile, adapter_dirs: Mapping[str, str | Path],
                 base_source: str | None = None, program: VllmProgram | None = None) -> list[str]:
    """The ``vllm serve`` argv for ``profile`` with its adapters resolved to ``adapter_dirs``.

    ``base_source`` is where vLLM loads the base from (a local directory, e.g. the bundled
    model's; default: ``profile.base_model`` as written). The base answers to
    ``profile.served_name``. ``program`` says how vLLM starts (default: ``vllm serve`` by the
    profile's ``vllm.executable`` or ``vllm``). The API key is not here: see :func:`vllm_env`.
    """
    v = profile.vllm
    model = base_source or profile.base_model
    start = program.argv(model) if program else [v.executable or "vllm", "serve", model]
    argv = [*start, "--host", profile.host, "--port", str(profile.port),
            "--served-model-name", profile.served_name]
    if v.dtype != "auto":
        argv += ["--dtype", v.dtype]
    if v.max_model_len is not None:
        argv += ["--max-model-len", str(v.max_model_len)]
    if v.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(v.gpu_memory_utilization)]
    if v.tensor_parallel_size is not None:
        argv += ["--tensor-parallel-size", str(v.tensor_parallel_size)]
    if adapter_dirs or v.allow_runtime_lora:
        argv.append("--enable-lora")
        if adapter_dirs:
            argv += ["--lora-modules", *(f"{name}={Path(d)}" for name, d in adapter_dirs.items())]
        ranks = {name: inspect_adapter(d).max_rank for name, d in adapter_dirs.items()}
        rank = v.max_lora_rank or lora_rank_for(ranks.values())
        too_big = [f"adapter {n!r} has rank {r}, above vllm.max_lora_rank {rank}" for n, r in ranks.items()
                   if rank is not None and r > rank]
        if too_big:
            raise ProfileError(profile.source, too_big, hint="raise vllm.max_lora_rank or leave it unset")
        if rank is not None:
            argv += ["--max-lora-rank", str(rank)]
        argv += ["--max-loras", str(v.max_loras or max(1, len(adapter_dirs)))]
        if v.max_cpu_loras is not None:
            argv += ["--max-cpu-loras", str(v.max_cpu_loras)]
    return argv + list(v.extra_args)


def vllm_env(profile: Profile, environ: Mapping[str, str] | None = None,
             program: VllmProgram | None = None) -> dict[str, str]:
    """The child's environment: ours, with ``VLLM_API_KEY`` set from the profile's key variable
    (and removed when the profile has no key, so what we print is what the server enforces),
    runtime LoRA updating on or off as the profile says, and, for vLLM's CPU build, the
    profile's KV cache size and thread binding where the environment does not set them."""
    environ = os.environ if environ is None else environ
    env = dict(environ)
    if program is not None:
        env.update(cpu_env(program, profile.vllm.cpu_kvcache_space_gib, profile.vllm.cpu_threads_bind, environ))
    env.pop(KEY_VAR, None)
    key = profile.api_key(environ)
    if key:
        env[KEY_VAR] = key
    if profile.vllm.allow_runtime_lora:
        env[RUNTIME_LORA_VAR] = "True"
    else:
        env.pop(RUNTIME_LORA_VAR, None)
    return env


def run_vllm(profile: Profile, *, adapter_dirs: Mapping[str, str | Path] | None = None,
             base_source: str | None = None, health_timeout: float = 1200.0, grace: float = 30.0,
             log: str | Path | None = None, say: Callable[[str], None] | None = None,
             on_ready: Callable[[ServerInfo], None] | None = None,
             environ: Mapping[str, str] | None = None, poll_interval: float = 0.5) -> int:
    """Start ``vllm serve`` for ``profile``, wait until it is healthy, announce it, and serve
    until it stops; returns its exit code (128 + N when a signal N ended it).

    Before anything starts: the bind address is checked against the API key, vLLM is found
    (:func:`~gekro_ft.serve.vllm_program.find_vllm_program`),
    adapters are resolved (``adapter_dirs`` when the caller resolved them already) and checked
    against the base model and against what vLLM can serve. SIGINT/SIGTERM sent to this process
    are passed on to vLLM (a second one kills it); vLLM's log goes to ``log`` or to stderr, so
    stdout carries only the ready message (``on_ready``, default: :func:`ready_text` printed).
    """
    environ = os.environ if environ is None else environ
    say = say or _say
    profile.check_bind(environ)
    program = find_vllm_program(profile.vllm.executable, environ)
    wanted = profile.adapters if adapter_dirs is None else {n: str(d) for n, d in adapter_dirs.items()}
    infos = prepare_adapters(profile.base_model, wanted, check_base=profile.check_adapter_base,
                             source=profile.source)
    problems = vllm_adapter_problems(infos)
    if problems:
        raise ProfileError(profile.source, problems, hint="retrain as plain LoRA, or serve with --engine cpu")
    if base_source is None:
        from gekro_ft.models import resolve_model

        base_source = resolve_model(profile.base_model).source
    argv = vllm_command(profile, {n: i.path for n, i in infos.items()}, base_source, program)
    estimate = check_capacity(profile, base_source, say) if not program.cpu else None
    env = vllm_env(profile, environ, program)
    say(program.describe())
    if program.cpu:  # what the child gets: the profile's values, or the user's where set
        say("CPU settings: " + ", ".join(f"{k}={env[k]}" for k in (KVCACHE_VAR, THREADS_BIND_VAR)))
    say("starting: " + shlex.join(argv) + (f"  (log: {log})" if log else ""))
    key = profile.api_key(environ)
    root = server_root(profile.host, profile.port)
    log_file = open(log, "ab") if log else None  # noqa: SIM115 - closed in finally
    try:
        # A session of its own: a Ctrl-C in the terminal reaches only us, and we pass it on once.
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file or 2, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with ForwardSignals(proc) as forwarded:
                report = _progress_every(15.0, say, "vLLM is loading")

                def progress(elapsed: float) -> None:
                    if forwarded.signum is not None:  # stopped while loading: no point waiting on
                        raise _StopWaiting
                    report(elapsed)

                try:
                    waited = wait_healthy(root, health_timeout, proc, interval=poll_interval,
                                          on_progress=progress)
                except (ServeError, _StopWaiting):
                    if forwarded.signum is None:
                        raise
                else:
                    models = served_models(root, key)
                    missing = [n for n in [profile.served_name, *infos] if n not in models]
                    if missing:
                        raise ServeError(f"vLLM is up but does not list {', '.join(map(repr, missing))} "
                                         f"in /v1/models (it lists {', '.join(map(repr, models))})")
                    say(f"vLLM healthy after {waited:.0f} s")
                    if estimate is not None:
                        said = _compare_capacity(estimate, root, key, log)
                        if said:
                            say(said)
                    info = ServerInfo(f"{root}/v1", models, next(iter(infos), profile.served_name),
                                      profile.api_key_env if key else None, f"{profile.host}:{profile.port}")
                    (on_ready or _print_ready)(info)
                code = forwarded.wait(grace)
            say(f"vLLM stopped (exit code {code})")
            return code
        finally:
            stop_process(proc, grace)
    finally:
        if log_file:
            log_file.close()


def check_capacity(profile: Profile, base_source: str, say: Callable[[str], None]) -> Any:
    """Weights + KV cache against this machine's GPU memory before vLLM loads anything
    (:mod:`gekro_ft.cost.kv_cache`): refuse when the weights alone do not fit, warn when not
    one sequence of the context fits; the estimate (None without a GPU or a local config)."""
    from gekro_ft.cost.kv_cache import before_vllm

    v = profile.vllm
    estimate = before_vllm(base_source, dtype=v.dtype, max_model_len=v.max_model_len,
                           gpu_memory_utilization=v.gpu_memory_utilization,
                           tensor_parallel_size=v.tensor_parallel_size)
    if estimate is None:
        return None
    if estimate.kv_cache_bytes <= 0:
        raise ServeError(f"the model does not fit: {estimate.describe()}",
                         hint="use a bigger GPU, more tensor_parallel_size, a narrower dtype, "
                              "or a higher vllm.gpu_memory_utilization")
    say(("warning: not one full-length sequence fits: " if estimate.max_concurrent_sequences < 1
         else "capacity estimate: ") + estimate.describe())
    return estimate


def _compare_capacity(estimate: Any, root: str, key: str | None, log: str | Path | None) -> str | None:
    """The estimate against the KV cache vLLM allocated: its /metrics, else its log."""
    import httpx

    from gekro_ft.cost.kv_cache import compare_with_vllm

    text = ""
    with contextlib.suppress(httpx.HTTPError):
        r = httpx.get(f"{root}/metrics", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10.0,
                      trust_env=False)
        text = r.text if r.status_code == 200 else ""
    if log and Path(log).exists():
        text += "\n" + Path(log).read_text(errors="replace")
    return compare_with_vllm(estimate, text)


# --- Runtime adapter changes (vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter) ---

def load_adapter(url: str, name: str, path: str | Path, api_key: str | None = None, *,
                 replace: bool = False, timeout: float = 300.0) -> str:
    """Load adapter ``path`` as ``name`` on a running server; with ``replace``, first unload
    whatever holds that name (a swap). Needs a server started with runtime LoRA updating on
    (``vllm.allow_runtime_lora: true``). Returns the server's message."""
    problem = name_problem(name)
    if problem:
        raise ProfileError("adapter name", [problem])
    local = Path(path).expanduser()
    if local.exists():  # a server on this machine: check the directory here, send it absolute
        path = str(resolve_adapter(str(local)))
    if replace:
        unload_adapter(url, name, api_key, missing_ok=True, timeout=timeout)
    return _post_lora(url, "load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, api_key, timeout)


def unload_adapter(url: str, name: str, api_key: str | None = None, *, missing_ok: bool = False,
                   timeout: float = 60.0) -> str:
    """Unload adapter ``name`` from a running server; returns the server's message."""
    try:
        return _post_lora(url, "unload_lora_adapter", {"lora_name": name}, api_key, timeout)
    except _AdapterNotFound:
        if missing_ok:
            return f"{name!r} was not loaded"
        raise


class _AdapterNotFound(ServeError):
    pass


class _StopWaiting(Exception):
    """A signal was passed on while the server was still loading."""


def _post_lora(url: str, endpoint: str, body: dict[str, str], api_key: str | None, timeout: float) -> str:
    import httpx

    target = f"{strip_v1(url)}/v1/{endpoint}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(target, json=body, headers=headers, timeout=timeout)
    except httpx.TransportError as e:
        raise ServeError(f"cannot reach {target}: {e}") from None
    if response.status_code == 200:
        return response.text.strip().strip('"')
    message = _error_message(response)
    if response.status_code == 404 and message == "Not Found":  # the route itself is missing
        raise ServeError(f"{target}: the server does not allow adapter changes at run time",
                         hint=f"start it with vllm.allow_runtime_lora: true (sets {RUNTIME_LORA_VAR}=True)")
    if response.status_code == 401:
        raise ServeError(f"{target}: the server wants an API key" + (" and refused this one" if api_key else ""))
    error = _AdapterNotFound if response.status_code == 404 else ServeError
    raise error(f"{target}: HTTP {response.status_code}: {message}")


def _error_message(response: Any) -> str:
    """The message of an OpenAI-style error body (new and old vLLM shapes), else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(body)[:500]


# --- Talking to a running server -----------------------------------------------------------

def served_models(url: str, api_key: str | None = None) -> list[str]:
    """The model ids ``URL/v1/models`` lists."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{strip_v1(url)}/v1/models", headers=headers, timeout=30.0, trust_env=False)
    if response.status_code != 200:
        raise ServeError(f"{strip_v1(url)}/v1/models answered HTTP {response.status_code}: "
                         f"{_error_message(response)}")
    return [m["id"] for m in response.json().get("data", [])]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_ready(info: ServerInfo) -> None:
    print(ready_text(info), flush=True)


def _progress_every(seconds: float, say: Callable[[str], None], what: str) -> Callable[[float], None]:
    last = [0.0]

    def progress(elapsed: float) -> None:
        if elapsed - last[0] >= seconds:
            last[0] = elapsed
            say(f"{what}... {elapsed:.0f} s")

    return progress
