"""The vLLM engine: build the ``vllm serve`` command for a profile, run it, wait until it is
healthy, say how to call it, pass on signals, and load or unload adapters at run time.

The API key never goes on the command line (``ps`` would show it to every user of the
machine): the child gets it in ``VLLM_API_KEY``, which vLLM reads when ``--api-key`` is not
given. The second half of this module (waiting for ``/health``, the ready message, signal
forwarding, stopping a process group) does not depend on vLLM; the CPU engine's launcher can
use it as it is.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gekro_ft.adapter import AdapterInfo, inspect_adapter
from gekro_ft.errors import MissingDependencyError, ProfileError, ServeError
from gekro_ft.serve.adapters import name_problem, prepare_adapters, resolve_adapter

if TYPE_CHECKING:
    from gekro_ft.serve.profile import Profile

# vLLM's LoRAConfig accepts only these max_lora_rank values (vllm/config/lora.py, MaxLoRARanks).
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
KEY_VAR = "VLLM_API_KEY"
RUNTIME_LORA_VAR = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def lora_rank_for(ranks: Iterable[int]) -> int | None:
    """The smallest rank vLLM supports that holds every rank given (None for none given)."""
    ranks = list(ranks)
    if not ranks:
        return None
    largest = max(ranks)
    for supported in SUPPORTED_LORA_RANKS:
        if supported >= largest:
            return supported
    raise ProfileError("adapters", [f"rank {largest} is above {SUPPORTED_LORA_RANKS[-1]}, "
                                    "the largest LoRA rank vLLM serves"])


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
                 base_source: str | None = None) -> list[str]:
    """The ``vllm serve`` argv for ``profile`` with its adapters resolved to ``adapter_dirs``.

    ``base_source`` is where vLLM loads the base from (a local directory, e.g. the bundled
    model's; default: ``profile.base_model`` as written). The base answers to
    ``profile.served_name``. The API key is not here: see :func:`vllm_env`.
    """
    v = profile.vllm
    argv = [v.executable, "serve", base_source or profile.base_model,
            "--host", profile.host, "--port", str(profile.port),
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


def vllm_env(profile: Profile, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours, with ``VLLM_API_KEY`` set from the profile's key variable
    (and removed when the profile has no key, so what we print is what the server enforces),
    and runtime LoRA updating on or off as the profile says."""
    environ = os.environ if environ is None else environ
    env = dict(environ)
    env.pop(KEY_VAR, None)
    key = profile.api_key(environ)
    if key:
        env[KEY_VAR] = key
    if profile.vllm.allow_runtime_lora:
        env[RUNTIME_LORA_VAR] = "True"
    else:
        env.pop(RUNTIME_LORA_VAR, None)
    return env


def find_vllm(executable: str = "vllm", path: str | None = None) -> str:
    """The path of the ``vllm`` command (looked up on ``path``, default $PATH), or a
    MissingDependencyError that says how to get it."""
    found = shutil.which(executable, path=path)
    if found:
        return found
    if importlib.util.find_spec("vllm") is not None:
        hint = (f"vllm is importable here but no {executable!r} command is on PATH: "
                "activate its environment or set vllm.executable in the profile")
    else:
        hint = ("pip install 'gekro-ft[vllm]' (vLLM usually gets an environment of its own: put its "
                "bin/ on PATH or set vllm.executable), or serve with --engine cpu")
    raise MissingDependencyError(f"the vllm engine needs vLLM: no {executable!r} command found", hint=hint)


def run_vllm(profile: Profile, *, adapter_dirs: Mapping[str, str | Path] | None = None,
             base_source: str | None = None, health_timeout: float = 1200.0, grace: float = 30.0,
             log: str | Path | None = None, say: Callable[[str], None] | None = None,
             on_ready: Callable[[ServerInfo], None] | None = None,
             environ: Mapping[str, str] | None = None, poll_interval: float = 0.5) -> int:
    """Start ``vllm serve`` for ``profile``, wait until it is healthy, announce it, and serve
    until it stops; returns its exit code (128 + N when a signal N ended it).

    Before anything starts: the bind address is checked against the API key, vLLM is found,
    adapters are resolved (``adapter_dirs`` when the caller resolved them already) and checked
    against the base model and against what vLLM can serve. SIGINT/SIGTERM sent to this process
    are passed on to vLLM (a second one kills it); vLLM's log goes to ``log`` or to stderr, so
    stdout carries only the ready message (``on_ready``, default: :func:`ready_text` printed).
    """
    environ = os.environ if environ is None else environ
    say = say or _say
    profile.check_bind(environ)
    executable = find_vllm(profile.vllm.executable, environ.get("PATH"))
    wanted = profile.adapters if adapter_dirs is None else {n: str(d) for n, d in adapter_dirs.items()}
    infos = prepare_adapters(profile.base_model, wanted, check_base=profile.check_adapter_base,
                             source=profile.source)
    problems = vllm_adapter_problems(infos)
    if problems:
        raise ProfileError(profile.source, problems, hint="retrain as plain LoRA, or serve with --engine cpu")
    if base_source is None:
        from gekro_ft.models import resolve_model

        base_source = resolve_model(profile.base_model).source
    argv = vllm_command(profile, {n: i.path for n, i in infos.items()}, base_source)
    say("starting: " + shlex.join(argv) + (f"  (log: {log})" if log else ""))
    argv[0] = executable
    key = profile.api_key(environ)
    root = server_root(profile.host, profile.port)
    log_file = open(log, "ab") if log else None  # noqa: SIM115 - closed in finally
    try:
        # A session of its own: a Ctrl-C in the terminal reaches only us, and we pass it on once.
        proc = subprocess.Popen(argv, env=vllm_env(profile, environ), stdin=subprocess.DEVNULL,
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

    target = f"{_strip_v1(url)}/v1/{endpoint}"
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


# --- Engine-neutral: readiness, the ready message, signals, stopping -----------------------

@dataclass(frozen=True)
class ServerInfo:
    """What a client needs to call a server that just became ready."""

    base_url: str  # what an OpenAI client takes: http://HOST:PORT/v1
    models: list[str]  # as /v1/models lists them: the base, then the adapters
    example_model: str  # the model the examples ask for (the first adapter, else the base)
    key_env: str | None  # the variable holding the API key; None when the server wants none
    listening_on: str  # HOST:PORT as bound


def client_host(host: str) -> str:
    """The address a local client uses to reach a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def server_root(host: str, port: int) -> str:
    return f"http://{client_host(host)}:{port}"


def _strip_v1(url: str) -> str:
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None, *,
                 on_progress: Callable[[float], None] | None = None, interval: float = 0.5) -> float:
    """Poll ``URL/health`` until it answers 200; returns the seconds waited.

    ``url`` is the server's root (``http://127.0.0.1:8000``; a trailing ``/v1`` is ignored).
    Raises ServeError when ``proc`` exits first or ``timeout`` seconds pass. ``on_progress``
    gets the seconds elapsed after each failed poll.
    """
    import httpx

    health = f"{_strip_v1(url)}/health"
    start = time.monotonic()
    # trust_env off: a proxy from the environment must not stand between us and our own server.
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServeError(f"the server exited with code {proc.returncode} before {health} answered",
                                 hint="its log says why (out of GPU memory, a model it cannot find, a bad flag...)")
            try:
                if client.get(health).status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                raise ServeError(f"{health} did not answer 200 within {timeout:.0f} s",
                                 hint="a large model can take minutes to load; raise the timeout")
            if on_progress:
                on_progress(elapsed)
            time.sleep(interval)


def served_models(url: str, api_key: str | None = None) -> list[str]:
    """The model ids ``URL/v1/models`` lists."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{_strip_v1(url)}/v1/models", headers=headers, timeout=30.0, trust_env=False)
    if response.status_code != 200:
        raise ServeError(f"{_strip_v1(url)}/v1/models answered HTTP {response.status_code}: "
                         f"{_error_message(response)}")
    return [m["id"] for m in response.json().get("data", [])]


def ready_text(info: ServerInfo) -> str:
    """The endpoint and a request to paste (curl and Python), with ``$VAR`` for the key, never its value."""
    payload = json.dumps({"model": info.example_model, "max_tokens": 64,
                          "messages": [{"role": "user", "content": "Say hello in five words."}]})
    auth = f' \\\n  -H "Authorization: Bearer ${info.key_env}"' if info.key_env else ""
    key_expr = f'os.environ["{info.key_env}"]' if info.key_env else '"none"'  # the client wants some string
    lines = [
        f"Serving {', '.join(info.models)} at {info.base_url} (listening on {info.listening_on}"
        + (f", API key from ${info.key_env})" if info.key_env else ", no API key)"),
        "",
        f"curl {info.base_url}/chat/completions \\",
        f'  -H "Content-Type: application/json"{auth} \\',
        f"  -d {shlex.quote(payload)}",
        "",
        "python - <<'EOF'",
        "import os",
        "from openai import OpenAI",
        f'client = OpenAI(base_url="{info.base_url}", api_key={key_expr})',
        f"reply = client.chat.completions.create(model={info.example_model!r}, max_tokens=64,",
        '    messages=[{"role": "user", "content": "Say hello in five words."}])',
        "print(reply.choices[0].message.content)",
        "EOF",
    ]
    return "\n".join(lines)


class ForwardSignals:
    """While active, SIGINT and SIGTERM sent to this process go to ``proc`` (a second one
    kills its process group). Handlers can only be set from the main thread; elsewhere this
    does nothing and signals keep their usual effect."""

    def __init__(self, proc: subprocess.Popen, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.proc, self.signals = proc, signals
        self.signum: int | None = None  # the first signal passed on
        self.at: float | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> ForwardSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.proc.poll() is not None:
            return
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
            self.proc.send_signal(signum)
        else:
            kill_group(self.proc)

    def wait(self, grace: float) -> int:
        """Wait for ``proc`` to exit, killing it ``grace`` seconds after a signal was passed on;
        returns its exit code (128 + N when signal N ended it)."""
        while True:
            try:
                return exit_code(self.proc.wait(timeout=0.5))
            except subprocess.TimeoutExpired:
                if self.at is not None and time.monotonic() - self.at > grace:
                    kill_group(self.proc)


def exit_code(returncode: int) -> int:
    """A shell's exit status for a child's return code (Popen reports signal N as -N)."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and, when it leads a process group of its own (``start_new_session``),
    everything in that group (vLLM's engine and worker processes)."""
    try:
        if hasattr(os, "killpg") and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL to its group after ``grace`` seconds; nothing when it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()


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
