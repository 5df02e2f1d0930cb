"""The vLLM launcher: the exact `vllm serve` command per profile, the child's environment, and
the launch -> /health -> ready -> signal -> exit path run for real against a stand-in `vllm`
executable (a small HTTP server) placed first on PATH. A `gpu` test starts real vLLM."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

import httpx
import pytest

from gekro_ft.adapter import inspect_adapter
from gekro_ft.errors import ProfileError, ServeError
from gekro_ft.process import client_host
from gekro_ft.serve.lora import lora_rank_for
from gekro_ft.serve.profile import load_profile
from gekro_ft.serve.ready import ServerInfo, ready_text
from gekro_ft.serve.vllm import (load_adapter, run_vllm, served_models, unload_adapter, vllm_adapter_problems,
                                 vllm_command, vllm_env)
from serving import free_port
from test_serve_profile import SHIPPED, fake_adapter

SMOL = {"name": "smollm2-135m-instruct", "source": "/cache/models/smollm2-135m-instruct", "kind": "bundled"}

# A stand-in for `vllm serve`: the same flags, /health, /v1/models listing the served name and
# every --lora-modules entry, the API key from VLLM_API_KEY, runtime LoRA routes only when
# VLLM_ALLOW_RUNTIME_LORA_UPDATING is on; it records its argv and the signal that stopped it.
FAKE_VLLM = r'''
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
record = {"argv": sys.argv, "pid": os.getpid(), "has_key": "VLLM_API_KEY" in os.environ,
          "runtime_lora": os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING"), "signal": None,
          "cpu_env": {k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")}}

def save():
    with open(os.environ["FAKE_VLLM_RECORD"], "w") as f:
        json.dump(record, f)

def opt(flag):
    return args[args.index(flag) + 1] if flag in args else None

save()
if os.environ.get("FAKE_VLLM_EXIT"):
    sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
served = opt("--served-model-name") or args[1]
loras = {}
if "--lora-modules" in args:
    for item in args[args.index("--lora-modules") + 1:]:
        if item.startswith("--"):
            break
        name, _, path = item.partition("=")
        loras[name] = path
key = os.environ.get("VLLM_API_KEY")
runtime = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in ("1", "true")
ready_at = time.monotonic() + float(os.environ.get("FAKE_VLLM_READY_AFTER", "0.3"))

def error(message, kind, code):
    return code, {"error": {"message": message, "type": kind, "code": code}}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if key and self.headers.get("Authorization") != "Bearer " + key:
            self.reply(*error("Unauthorized", "AuthenticationError", 401))
            return False
        return True

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200 if time.monotonic() >= ready_at else 503, "")
        if self.path == "/v1/models":
            if self.authorized():
                self.reply(200, {"object": "list", "data": [{"id": served, "object": "model"}]
                                 + [{"id": n, "object": "model", "parent": served} for n in loras]})
            return
        self.reply(404, {"detail": "Not Found"})

    def do_POST(self):
        if not runtime or self.path not in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            return self.reply(404, {"detail": "Not Found"})
        if not self.authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body["lora_name"]
        if self.path == "/v1/load_lora_adapter":
            if name in loras:
                message = f"The lora adapter '{name}' has already been loaded."
                return self.reply(*error(message, "InvalidUserInput", 400))
            loras[name] = body["lora_path"]
            return self.reply(200, f"Success: LoRA adapter '{name}' added successfully.")
        if name not in loras:
            return self.reply(*error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404))
        del loras[name]
        self.reply(200, f"Success: LoRA adapter '{name}' removed successfully.")

server = ThreadingHTTPServer((opt("--host"), int(opt("--port"))), Handler)

def stop(signum, frame):
    record["signal"] = signal.Signals(signum).name
    save()
    threading.Thread(target=server.shutdown).start()

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
server.serve_forever()
server.server_close()
'''


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """`vllm` first on PATH; returns where it records what it saw. A watchdog kills the stand-in
    after 30 s, so a broken signal path fails the test (exit 137) instead of hanging it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(f"#!{sys.executable}\n{FAKE_VLLM}")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.delenv("GEKRO_FT_VLLM", raising=False)

    def kill_stand_in() -> None:
        if record.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)

    watchdog = threading.Timer(30.0, kill_stand_in)
    watchdog.start()
    yield record
    watchdog.cancel()


def vllm_profile(adapters: dict, **overrides):
    return load_profile(None, {"engine": "vllm", "adapters": {n: str(d) for n, d in adapters.items()}, **overrides})


# --- the command, per shipped profile --------------------------------------------------------

def expected_argv(stem: str, d: Path) -> list[str]:
    """Written out by hand from each profile's YAML (adapter rank 16 in these fakes)."""
    common = ["--host", "127.0.0.1", "--port", "8000"]
    if stem == "cpu-default":  # the CPU profile run with --engine vllm: nothing but the LoRA flags
        return ["vllm", "serve", "/models/smollm2", *common, "--served-model-name", "smollm2-135m-instruct",
                "--enable-lora", "--lora-modules", f"tickets={d}", "--max-lora-rank", "16", "--max-loras", "1"]
    if stem == "vllm-cpu":  # the bundled model on vLLM's CPU build
        return ["vllm", "serve", "/models/smollm2", *common, "--served-model-name", "smollm2-135m-instruct",
                "--dtype", "bfloat16", "--max-model-len", "1024", "--enable-lora", "--lora-modules", f"tickets={d}",
                "--max-lora-rank", "16", "--max-loras", "2", "--max-cpu-loras", "4"]
    base = {"vllm-llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
            "vllm-qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct"}[stem]
    rank = {"vllm-llama-3.1-8b": "16", "vllm-qwen2.5-7b": "64"}[stem]  # derived from r=16 / set in the file
    return ["vllm", "serve", base, *common, "--served-model-name", base, "--dtype", "bfloat16",
            "--max-model-len", "8192", "--gpu-memory-utilization", "0.9", "--tensor-parallel-size", "1",
            "--enable-lora", "--lora-modules", f"tickets={d}", "--max-lora-rank", rank,
            "--max-loras", "4", "--max-cpu-loras", "8"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_vllm_command_for_each_shipped_profile(path, tmp_path):
    profile = load_profile(str(path), {"engine": "vllm"})
    d = fake_adapter(tmp_path / "tickets", r=16)
    base_source = "/models/smollm2" if path.stem in ("cpu-default", "vllm-cpu") else None
    assert vllm_command(profile, {"tickets": d}, base_source) == expected_argv(path.stem, d)


def test_every_shipped_profile_has_its_command_written_out(tmp_path):
    for path in SHIPPED:
        expected_argv(path.stem, tmp_path)  # a KeyError here: add the new profile's argv above


@pytest.mark.parametrize("ranks, supported", [([1], 1), ([4], 8), ([8], 8), ([9], 16), ([16, 33], 64),
                                              ([300], 320), ([321], 512), ([], None)])
def test_rank_rounds_up_to_one_vllm_supports(ranks, supported):
    assert lora_rank_for(ranks) == supported


def test_rank_above_what_vllm_serves():
    with pytest.raises(ProfileError, match="rank 513 is above 512"):
        lora_rank_for([513])


def test_rank_and_lora_count_come_from_the_adapters(tmp_path):
    a = fake_adapter(tmp_path / "a", r=4)
    b = fake_adapter(tmp_path / "b", r=24)
    c = fake_adapter(tmp_path / "c", r=8, rank_pattern={"model.layers.3.mlp.down_proj": 40})
    argv = vllm_command(vllm_profile({"a": a, "b": b}), {"a": a, "b": b}, "/m")
    # ranks 4 and 24 -> largest 24 -> next supported 32; two adapters -> --max-loras 2
    assert argv[argv.index("--max-lora-rank") + 1] == "32" and argv[argv.index("--max-loras") + 1] == "2"
    assert argv[argv.index("--lora-modules") + 1: argv.index("--max-lora-rank")] == [f"a={a}", f"b={b}"]
    argv = vllm_command(vllm_profile({"c": c}), {"c": c}, "/m")
    assert argv[argv.index("--max-lora-rank") + 1] == "64"  # rank_pattern's 40, not r=8, decides


def test_an_explicit_rank_below_an_adapters_rank_is_refused(tmp_path):
    a = fake_adapter(tmp_path / "a", r=32)
    profile = vllm_profile({"a": a}, vllm={"max_lora_rank": 16})
    with pytest.raises(ProfileError, match="adapter 'a' has rank 32, above vllm.max_lora_rank 16"):
        vllm_command(profile, {"a": a}, "/m")


def test_no_adapters_no_lora_flags_unless_loaded_at_run_time():
    assert vllm_command(load_profile(None, {"engine": "vllm"}), {}, "/m") == [
        "vllm", "serve", "/m", "--host", "127.0.0.1", "--port", "8000", "--served-model-name", "smollm2-135m-instruct"]
    runtime = load_profile(None, {"engine": "vllm", "vllm": {"allow_runtime_lora": True, "max_lora_rank": 64,
                                                             "extra_args": ["--enforce-eager"]}})
    assert vllm_command(runtime, {}, "/m")[9:] == ["--enable-lora", "--max-lora-rank", "64", "--max-loras", "1",
                                                   "--enforce-eager"]


def test_the_key_goes_through_the_environment_never_argv(tmp_path):
    a = fake_adapter(tmp_path / "a")
    profile = vllm_profile({"a": a}, api_key_env="MY_KEY", served_model_name="base")
    argv = vllm_command(profile, {"a": a}, "/m")
    assert "sk-7f3e" not in " ".join(argv) and "--api-key" not in argv
    env = vllm_env(profile, {"MY_KEY": "sk-7f3e", "PATH": "/bin", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})
    assert env == {"MY_KEY": "sk-7f3e", "PATH": "/bin", "VLLM_API_KEY": "sk-7f3e"}  # runtime updating off: removed
    # No key variable in the profile: a stale VLLM_API_KEY is not passed on either.
    keyless = vllm_profile({"a": a}, vllm={"allow_runtime_lora": True})
    assert vllm_env(keyless, {"VLLM_API_KEY": "old", "PATH": "/bin"}) == {
        "PATH": "/bin", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_what_vllm_would_refuse_is_found_first(tmp_path):
    infos = {"d": inspect_adapter(fake_adapter(tmp_path / "d", use_dora=True)),
             "m": inspect_adapter(fake_adapter(tmp_path / "m", modules_to_save=["lm_head"])),
             "b": inspect_adapter(fake_adapter(tmp_path / "b", bias="lora_only")),
             "ok": inspect_adapter(fake_adapter(tmp_path / "ok"))}
    assert vllm_adapter_problems(infos) == [
        "adapter 'd' uses DoRA, which vLLM does not serve",
        "adapter 'm' saves whole modules (lm_head), which vLLM does not serve",
        "adapter 'b' trains biases (bias='lora_only'), which vLLM does not serve"]


# --- the ready message --------------------------------------------------------------------------

def test_ready_text_is_pasteable_and_names_the_key_variable_only(monkeypatch):
    monkeypatch.setenv("GEKRO_FT_API_KEY", "sk-never-printed")
    text = ready_text(ServerInfo("http://127.0.0.1:8000/v1", ["base", "tickets"], "tickets",
                                 "GEKRO_FT_API_KEY", "0.0.0.0:8000"))
    assert "sk-never-printed" not in text
    assert text.splitlines()[0] == ("Serving base, tickets at http://127.0.0.1:8000/v1 "
                                    "(listening on 0.0.0.0:8000, API key from $GEKRO_FT_API_KEY)")
    curl = text[text.index("curl"): text.index("\n\npython")].replace("\\\n", " ")
    words = shlex.split(curl)
    assert words[:2] == ["curl", "http://127.0.0.1:8000/v1/chat/completions"]
    assert words[words.index("-H", 3) + 1] == "Authorization: Bearer $GEKRO_FT_API_KEY"
    assert json.loads(words[words.index("-d") + 1])["model"] == "tickets"
    script = text[text.index("<<'EOF'\n") + 8: text.rindex("\nEOF")]
    compile(script, "ready-example", "exec")  # the Python example is valid Python
    assert 'api_key=os.environ["GEKRO_FT_API_KEY"]' in script and "model='tickets'" in script


def test_ready_text_without_a_key_sends_no_authorization():
    text = ready_text(ServerInfo("http://127.0.0.1:8000/v1", ["base"], "base", None, "127.0.0.1:8000"))
    assert "Authorization" not in text and 'api_key="none"' in text and "no API key)" in text


@pytest.mark.parametrize("host, client", [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"),
                                          ("10.0.0.5", "10.0.0.5"), ("localhost", "localhost")])
def test_client_host(host, client):
    assert client_host(host) == client


# --- the real launch path against the stand-in vllm ------------------------------------------------

def test_launch_wait_ready_and_sigint_forwarding(fake_vllm, tmp_path):
    adapter = fake_adapter(tmp_path / "tickets", r=16, manifest_base=SMOL)
    port = free_port()
    profile = vllm_profile({"tickets": adapter}, port=port, api_key_env="TEST_SERVE_KEY")
    environ = {**os.environ, "TEST_SERVE_KEY": "sk-launch-31337"}
    seen, messages = {}, []

    def on_ready(info: ServerInfo) -> None:
        seen["info"] = info
        root = f"http://127.0.0.1:{port}"
        seen["no_key"] = httpx.get(f"{root}/v1/models", trust_env=False).status_code
        seen["models"] = served_models(root, "sk-launch-31337")
        with pytest.raises(ServeError, match="does not allow adapter changes at run time") as e:
            load_adapter(root, "other", adapter, "sk-launch-31337")
        seen["hint"] = e.value.hint
        os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal would

    code = run_vllm(profile, base_source="/models/smollm2", environ=environ, on_ready=on_ready,
                    say=messages.append, log=tmp_path / "vllm.log", poll_interval=0.1)

    assert code == 0  # the stand-in exits 0 after a clean shutdown
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handlers are gone
    record = json.loads(fake_vllm.read_text())
    assert record["signal"] == "SIGINT" and record["has_key"] and record["runtime_lora"] is None
    assert record["argv"][1:] == ["serve", "/models/smollm2", "--host", "127.0.0.1", "--port", str(port),
                                  "--served-model-name", "smollm2-135m-instruct", "--enable-lora",
                                  "--lora-modules", f"tickets={adapter.resolve()}", "--max-lora-rank", "16",
                                  "--max-loras", "1"]
    assert seen["no_key"] == 401 and seen["models"] == ["smollm2-135m-instruct", "tickets"]
    assert seen["info"] == ServerInfo(f"http://127.0.0.1:{port}/v1", ["smollm2-135m-instruct", "tickets"],
                                      "tickets", "TEST_SERVE_KEY", f"127.0.0.1:{port}")
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in seen["hint"]
    exe = os.environ["PATH"].split(os.pathsep)[0] + "/vllm"
    assert messages[0] == f"vLLM: {exe}, from PATH"  # not the CPU build: no CPU settings
    assert messages[1].startswith(f"starting: {exe} serve /models/smollm2 --host 127.0.0.1")
    assert record["cpu_env"] == {"VLLM_CPU_KVCACHE_SPACE": None, "VLLM_CPU_OMP_THREADS_BIND": None}
    assert messages[-1] == "vLLM stopped (exit code 0)"
    assert not any("sk-launch-31337" in m for m in messages)


def test_adapters_load_and_swap_at_run_time(fake_vllm, tmp_path):
    first = fake_adapter(tmp_path / "first", manifest_base=SMOL)
    second = fake_adapter(tmp_path / "second", manifest_base=SMOL)
    port = free_port()
    profile = vllm_profile({"tickets": first}, port=port, vllm={"allow_runtime_lora": True, "max_lora_rank": 64})
    steps = []

    def on_ready(info: ServerInfo) -> None:
        root = info.base_url  # the /v1 form is accepted too
        steps.append(load_adapter(root, "support", second))
        steps.append(served_models(root))
        with pytest.raises(ServeError, match="HTTP 400: The lora adapter 'support' has already been loaded"):
            load_adapter(root, "support", second)
        steps.append(load_adapter(root, "support", first, replace=True))  # a swap: unload, then load
        steps.append(unload_adapter(root, "support"))
        with pytest.raises(ServeError, match="HTTP 404: The lora adapter 'support' cannot be found"):
            unload_adapter(root, "support")
        steps.append(unload_adapter(root, "support", missing_ok=True))
        with pytest.raises(ProfileError, match="'../x' is not a valid adapter name"):
            load_adapter(root, "../x", second)
        os.kill(os.getpid(), signal.SIGTERM)

    assert run_vllm(profile, base_source="/m", on_ready=on_ready, say=lambda m: None,
                    log=tmp_path / "vllm.log", poll_interval=0.1) == 0
    assert steps == ["Success: LoRA adapter 'support' added successfully.",
                     ["smollm2-135m-instruct", "tickets", "support"],
                     "Success: LoRA adapter 'support' added successfully.",
                     "Success: LoRA adapter 'support' removed successfully.",
                     "'support' was not loaded"]
    record = json.loads(fake_vllm.read_text())
    assert record["signal"] == "SIGTERM" and record["runtime_lora"] == "True" and not record["has_key"]


def test_a_server_that_dies_while_loading_is_an_error(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_EXIT", "3")
    with pytest.raises(ServeError, match=r"the server exited with code 3 before http://127.0.0.1:\d+/health answered"):
        run_vllm(vllm_profile({}, port=free_port()), base_source="/m", say=lambda m: None,
                 log=tmp_path / "vllm.log", poll_interval=0.1)
    assert json.loads(fake_vllm.read_text())["signal"] is None


def test_a_server_that_never_gets_healthy_is_stopped(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_READY_AFTER", "600")
    with pytest.raises(ServeError, match=r"/health did not answer 200 within 1 s"):
        run_vllm(vllm_profile({}, port=free_port()), base_source="/m", say=lambda m: None, health_timeout=1.0,
                 grace=10, log=tmp_path / "vllm.log", poll_interval=0.1)
    assert json.loads(fake_vllm.read_text())["signal"] == "SIGTERM"  # stopped, not left running


def test_nothing_starts_when_checks_fail(fake_vllm, tmp_path):
    qwen = fake_adapter(tmp_path / "q", base="Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(ProfileError, match="was trained on 'Qwen/Qwen2.5-7B-Instruct'"):
        run_vllm(vllm_profile({"q": qwen}), base_source="/m", say=lambda m: None)
    with pytest.raises(ProfileError, match="refusing to listen on 0.0.0.0 without an API key"):
        run_vllm(vllm_profile({}, host="0.0.0.0"), base_source="/m", say=lambda m: None)
    dora = fake_adapter(tmp_path / "d", manifest_base=SMOL, use_dora=True)
    with pytest.raises(ProfileError, match="uses DoRA"):
        run_vllm(vllm_profile({"d": dora}), base_source="/m", say=lambda m: None)
    assert not fake_vllm.exists()  # the stand-in never ran


# --- real vLLM -------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.slow
def test_real_vllm_serves_the_bundled_model_and_an_adapter(tmp_path):
    import torch

    if shutil.which("vllm") is None:  # vLLM lives in an environment of its own: look for its command
        pytest.skip("needs the vllm command on PATH (pip install 'gekro-ft[vllm]')")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import openai

    from serving import make_adapter

    adapter = make_adapter(tmp_path / "adapter", r=8)  # random non-zero LoRA weights, with our manifest
    port = free_port()
    profile = load_profile(None, {"engine": "vllm", "port": port, "adapters": {"tickets": str(adapter)},
                                  "vllm": {"max_model_len": 1024, "gpu_memory_utilization": 0.3,
                                           "extra_args": ["--enforce-eager"]}})
    answers = {}

    def on_ready(info: ServerInfo) -> None:
        assert info.models == ["smollm2-135m-instruct", "tickets"]
        client = openai.OpenAI(base_url=info.base_url, api_key="none")
        for model in info.models:
            reply = client.chat.completions.create(
                model=model, max_tokens=16, temperature=0,
                messages=[{"role": "user", "content": "Name three colours."}])
            answers[model] = reply.choices[0].message.content
        os.kill(os.getpid(), signal.SIGTERM)

    code = run_vllm(profile, on_ready=on_ready, log=tmp_path / "vllm.log", health_timeout=900)
    assert code in (0, 128 + signal.SIGTERM), (tmp_path / "vllm.log").read_text()[-3000:]
    assert answers["smollm2-135m-instruct"] and answers["tickets"]
    assert answers["tickets"] != answers["smollm2-135m-instruct"]  # the adapter changes the output
