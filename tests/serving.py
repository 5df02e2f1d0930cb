"""Test helpers for real server processes: free ports, readiness, and a small LoRA adapter."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


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
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
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
def fake_openai_server():
    """tests/fake_openai_server.py as a real process on a free port; yields its root URL."""
    import threading

    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_openai_server.py")), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    try:
        if not line or not line[0].startswith("PORT "):
            raise RuntimeError(f"the fake server did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        url = f"http://127.0.0.1:{int(line[0].split()[1])}"
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
