"""Test helpers for real server processes: free ports, readiness, and a small LoRA adapter."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import httpx

from gekro_ft.process import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(args: list[str], port: int, env: dict | None = None, timeout: float = 180,
                   log: Path | None = None):
    """Run ``gekro-ft ARGS`` as a child process until /health answers; stop it with SIGTERM after."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "gekro_ft.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: "
                                   + (log.read_text()[-2000:] if log else ""))
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not healthy after {timeout} s")
            time.sleep(0.5)
        yield proc
    finally:
        stop_process(proc, grace=30)
        if log:
            out.close()


def make_adapter(path: Path, seed: int = 0, r: int = 8) -> Path:
    """A LoRA adapter for the bundled model with random (non-zero) weights, so its answers
    differ from the base's; with the manifest our training writes."""
    import orjson
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gekro_ft.models import resolve_model

    base = resolve_model("smollm2-135m-instruct")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base.source, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base.source).save_pretrained(path)
    (path / "gekro_ft.json").write_bytes(orjson.dumps(
        {"schema_version": 1, "base_model": {"name": "smollm2-135m-instruct", "source": base.source,
                                              "kind": "bundled"}}))
    return path


@contextlib.contextmanager
def adapter_server(adapter: Path, log_dir: Path, name: str = "tickets"):
    """The CPU engine serving ``adapter`` as ``name`` (and the bundled base) on a free port; yields its root URL."""
    port = free_port()
    with server_process(["serve", "--engine", "cpu", "--port", str(port), "--adapter", f"{name}={adapter}"],
                        port, log=log_dir / "server.log"):
        yield f"http://127.0.0.1:{port}"


class FakeServer(NamedTuple):
    proc: subprocess.Popen
    port: int
    url: str  # root, without /v1


@contextlib.contextmanager
def fake_openai(*args: str):
    """``tests/fake_openai_server.py ARGS`` as a real process on a free port; yields a FakeServer."""
    import tempfile
    import threading

    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server cannot fill it and stall
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_openai_server.py")), "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=errors, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    try:
        if not line or not line[0].startswith("PORT "):
            errors.seek(0)
            raise RuntimeError(f"the fake server did not start: {errors.read()[-2000:]}")
        port = int(line[0].split()[1])
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        yield FakeServer(proc, port, url)
    finally:
        stop_process(proc, grace=10)
        errors.close()


def streamed(client, **create) -> tuple[str, object]:
    """A streamed chat completion through the ``openai`` client: its whole text and the usage
    of its final chunk."""
    parts, usage = [], None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **create):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    return "".join(parts), usage
