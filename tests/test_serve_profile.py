"""Serving profiles and adapter checks: parsing, overrides, safe binding, names, paths, base models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gekro_ft.adapter import inspect_adapter
from gekro_ft.cli.errors import exit_for
from gekro_ft.errors import InputFileError, ProfileError
from gekro_ft.models import cache_root
from gekro_ft.config import shipped
from gekro_ft.serve.adapters import (check_adapters_match, parse_adapter_option, prepare_adapters,
                                     resolve_adapter)
from gekro_ft.serve.profile import is_loopback, list_profiles, load_profile

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (REPO / "serve").glob("*.yaml") if p.name != "prices.yaml")


def fake_adapter(path: Path, r: int = 8, base: str | None = "HuggingFaceTB/SmolLM2-135M-Instruct",
                 manifest_base: dict | None = None, **config) -> Path:
    """The two files a LoRA adapter directory must hold (weights empty: nothing loads them here)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"],
         "base_model_name_or_path": base, **config}))
    (path / "adapter_model.safetensors").write_bytes(b"")
    if manifest_base is not None:
        (path / "gekro_ft.json").write_text(json.dumps({"schema_version": 1, "base_model": manifest_base}))
    return path


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- shipped profiles ---------------------------------------------------------------------

def test_shipped_profiles_are_found_where_the_package_says():
    assert shipped("serve") == REPO / "serve"  # the checkout's own folder, through gekro_ft/shipped
    assert {p.stem for p in SHIPPED} >= {"cpu-default", "vllm-llama-3.1-8b", "vllm-qwen2.5-7b"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_parses_and_starts_with_its_command(path):
    profile = load_profile(str(path))
    assert profile.source == str(path)
    assert path.read_text().splitlines()[0] == f"# gekro-ft serve {path.stem}"
    assert profile.host == "127.0.0.1"  # safe by default: loopback only
    assert profile.api_key_env == "GEKRO_FT_API_KEY"
    assert profile.engine == ("cpu" if path.stem.startswith("cpu") else "vllm")


def test_profiles_by_name_are_the_shipped_files_without_the_price_table(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./serve here: only the shipped directory counts
    assert [p.stem for p in list_profiles()] == [p.stem for p in SHIPPED]
    assert load_profile("vllm-qwen2.5-7b").source == str(REPO / "serve" / "vllm-qwen2.5-7b.yaml")
    with pytest.raises(ProfileError, match=r"no serving profile of that name \(known: cpu-default, "):
        load_profile("prices")


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem.startswith("vllm-")], ids=lambda p: p.stem)
def test_vllm_profiles_serve_what_the_recipes_register(path):
    """Each adapter reference names a model that a recipe registers, trained on this base."""
    profile = load_profile(str(path))
    recipes = [yaml.safe_load(r.read_text()) for r in (REPO / "recipes").glob("*.yaml")]
    registered = {r["tracking"]["registered_model"]: r["model"]["name"] for r in recipes}
    for uri in profile.adapters.values():
        name = uri.removeprefix("models:/").split("@")[0]
        assert registered[name] == profile.base_model
    cpu_default = load_profile("cpu-default")
    assert registered["ticket-extraction-smollm2"] == cpu_default.base_model


# --- validation: every problem at once, naming the key -------------------------------------

def test_all_problems_are_reported_at_once_naming_each_key(tmp_path):
    path = write(tmp_path, "engine: tpu\nport: 0\nadaptors: {}\n"
                           "vllm:\n  max_lora_rank: 24\n  gpu_memory_utilization: 1.5\n")
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert e.value.source == str(path)
    assert e.value.problems == [
        "engine: Input should be 'cpu' or 'vllm' (got 'tpu')",
        "port: Input should be greater than or equal to 1 (got 0)",
        "vllm.gpu_memory_utilization: Input should be less than or equal to 1 (got 1.5)",
        "vllm.max_lora_rank: vLLM accepts one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (got 24)",
        "adaptors: unknown key (did you mean 'adapters'?)",
    ]
    code, message = exit_for(e.value)
    assert code == 2 and message.startswith(f"Error (serve profile): {path}: engine: ")


def test_bad_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "engine: cpu\nadapters: [unclosed\n")
    with pytest.raises(ProfileError, match=r"not valid YAML at line 3"):
        load_profile(str(path))


def test_adapter_names_and_references_are_checked(tmp_path):
    path = write(tmp_path, "adapters:\n  ../up: /tmp/a\n  ok: ''\n  reg: models:/tickets\n  good: out/adapter\n")
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    (problem,) = e.value.problems
    assert problem.startswith("adapters: '../up' is not a valid adapter name")
    assert "'ok': empty" in problem
    assert "'models:/tickets' is not a registry reference" in problem


def test_an_adapter_may_not_take_the_base_models_name():
    with pytest.raises(ProfileError, match="adapters.base: the base model answers to 'base'"):
        load_profile(None, {"served_model_name": "base", "adapters": {"base": "/tmp"}})


def test_cpu_loras_must_hold_one_batch():
    # max_loras unset -> one per adapter: 3 adapters need max_cpu_loras >= 3.
    adapters = {"a": "/x", "b": "/y", "c": "/z"}
    with pytest.raises(ProfileError, match=r"vllm.max_cpu_loras: 2 must be at least vllm.max_loras \(3"):
        load_profile(None, {"adapters": adapters, "vllm": {"max_cpu_loras": 2}})
    assert load_profile(None, {"adapters": adapters, "vllm": {"max_cpu_loras": 3}}).vllm.max_cpu_loras == 3


def test_a_key_pasted_where_its_variable_name_belongs_is_not_echoed(tmp_path):
    path = write(tmp_path, "api_key_env: sk-live-51Hx9fQ2\nvllm:\n  extra_args: [--api-key, sk-other-7731]\n")
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert "api_key_env: must be the name of an environment variable" in str(e.value)
    assert "vllm.extra_args: --api-key would put the key on the command line" in str(e.value)
    assert "sk-live-51Hx9fQ2" not in str(e.value) and "sk-other-7731" not in str(e.value)
    path = write(tmp_path, "api_key_env: 90210731\nvllm:\n  extra_args: [--api-key, 55501234]\n")
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert e.value.problems == ["api_key_env: Input should be a valid string",
                                "vllm.extra_args.1: Input should be a valid string"]


# --- command-line overrides ------------------------------------------------------------------

def test_cli_values_override_and_adapters_merge_by_name():
    profile = load_profile("cpu-default", {
        "engine": "vllm", "host": "0.0.0.0", "port": 9001, "base_model": None,  # None: not given
        "adapters": {"tickets": "out/new-adapter", "support": "models:/support@champion"},
        "vllm": {"max_model_len": 2048}})
    assert (profile.engine, profile.host, profile.port) == ("vllm", "0.0.0.0", 9001)
    assert profile.base_model == "smollm2-135m-instruct"
    assert profile.adapters == {"tickets": "out/new-adapter", "support": "models:/support@champion"}
    assert profile.vllm.max_model_len == 2048
    assert profile.cpu.max_batch_size == 8  # untouched sections keep the file's values


def test_no_profile_means_the_defaults():
    profile = load_profile(None, {})
    assert (profile.base_model, profile.engine, profile.host, profile.port) == (
        "smollm2-135m-instruct", "cpu", "127.0.0.1", 8000)
    assert profile.served_name == "smollm2-135m-instruct" and profile.adapters == {}
    assert (profile.cpu.max_batch_size, profile.cpu.batch_wait_ms, profile.cpu.max_tokens_limit,
            profile.cpu.dtype) == (8, 10, 512, "float32")


def test_the_request_body_limit_goes_from_the_profile_to_the_cpu_server(monkeypatch):
    from gekro_ft.serve import cpu_server, launch

    assert load_profile(None, {}).cpu.max_body_mib == 4
    with pytest.raises(ProfileError, match="cpu.max_body_mib"):
        load_profile(None, {"cpu": {"max_body_mib": 0}})
    seen = {}
    monkeypatch.setattr(cpu_server, "run_cpu_server", lambda *a, **kw: seen.update(kw) or 0)
    assert launch.serve(load_profile(None, {"cpu": {"max_body_mib": 0.5}}), say=lambda _: None) == 0
    assert seen["max_body_bytes"] == 512 * 1024


# --- binding and the API key -----------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("10.1.2.3", False), ("gpu-box.internal", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_listening_beyond_loopback_needs_a_key():
    profile = load_profile("cpu-default", {"host": "0.0.0.0"})
    with pytest.raises(ProfileError) as e:
        profile.check_bind({})
    assert str(e.value).startswith(f"{profile.source}: host: refusing to listen on 0.0.0.0 without an API key: "
                                   "GEKRO_FT_API_KEY is not set (export GEKRO_FT_API_KEY=")
    profile.check_bind({"GEKRO_FT_API_KEY": "k-123"})  # with the key: allowed
    load_profile("cpu-default").check_bind({})  # loopback without a key: allowed

    keyless = load_profile(None, {"host": "0.0.0.0"})
    with pytest.raises(ProfileError, match="the profile names no api_key_env.*set api_key_env: GEKRO_FT_API_KEY"):
        keyless.check_bind({"GEKRO_FT_API_KEY": "k-123"})  # set, but the profile does not use it


def test_the_key_is_read_when_needed_and_never_kept(monkeypatch):
    monkeypatch.setenv("GEKRO_FT_API_KEY", "sk-serve-0a9b8c7d")
    profile = load_profile("vllm-qwen2.5-7b")
    assert profile.api_key() == "sk-serve-0a9b8c7d"
    assert profile.api_key({"GEKRO_FT_API_KEY": ""}) is None  # empty counts as unset
    for text in (repr(profile), str(profile), profile.model_dump_json(), json.dumps(profile.resolved())):
        assert "sk-serve-0a9b8c7d" not in text


# --- adapter options, names and paths -----------------------------------------------------------

def test_adapter_option_parsing():
    assert parse_adapter_option("tickets=out/adapter") == ("tickets", "out/adapter")
    assert parse_adapter_option(" v2.1_b-x = models:/t@champion ") == ("v2.1_b-x", "models:/t@champion")
    assert parse_adapter_option("a=b=c") == ("a", "b=c")  # only the first = splits


@pytest.mark.parametrize("option, message", [
    ("tickets", "'tickets' is not NAME=DIR_OR_URI"),
    ("=dir", "is not NAME=DIR_OR_URI"),
    ("tickets=", "is not NAME=DIR_OR_URI"),
    ("../up=dir", "'../up' is not a valid adapter name"),
    ("a/b=dir", "'a/b' is not a valid adapter name"),
    (".hidden=dir", "'.hidden' is not a valid adapter name"),
    ("x" * 65 + "=dir", "is not a valid adapter name"),
    ("base=dir", "'base' is the name the base model answers to"),
])
def test_bad_adapter_options(option, message):
    with pytest.raises(ProfileError, match="^--adapter: .*" + message.replace("(", r"\(").replace(".", r"\.")):
        parse_adapter_option(option, served_name="base")


def test_resolving_adapter_directories(tmp_path, monkeypatch):
    good = fake_adapter(tmp_path / "runs" / "a")
    monkeypatch.chdir(tmp_path)
    assert resolve_adapter("runs/a") == good.resolve()
    assert resolve_adapter("runs/../runs/a/") == good.resolve()  # an operator's own path may use ..
    with pytest.raises(InputFileError, match=r"^runs/missing: no such adapter directory$"):
        resolve_adapter("runs/missing")
    (good / "adapter_model.safetensors").unlink()
    with pytest.raises(InputFileError, match=r"not a LoRA adapter directory: no adapter_model.safetensors"):
        resolve_adapter("runs/a")


def test_a_path_from_a_request_must_stay_inside_the_allowed_root(tmp_path):
    root = tmp_path / "adapters"
    inside = fake_adapter(root / "a")
    outside = fake_adapter(tmp_path / "elsewhere")
    (root / "link").symlink_to(outside)
    assert resolve_adapter(str(root / "x" / ".." / "a"), root=root) == inside.resolve()
    for escaping in (str(root / ".." / "elsewhere"), str(root / "link"), str(outside)):
        with pytest.raises(InputFileError, match="resolves outside the allowed adapter root"):
            resolve_adapter(escaping, root=root)


def test_registry_references_are_downloaded_through_the_registry(tmp_path, monkeypatch):
    import gekro_ft.registry

    downloaded = fake_adapter(tmp_path / "cache" / "tickets" / "3")
    asked = []
    monkeypatch.setattr(gekro_ft.registry, "download_adapter", lambda uri: asked.append(uri) or downloaded)
    assert resolve_adapter("models:/tickets@champion") == downloaded.resolve()
    assert resolve_adapter("models:/tickets/3") == downloaded.resolve()
    assert asked == ["models:/tickets@champion", "models:/tickets/3"]
    with pytest.raises(ProfileError, match=r"'models:/\.\.@champion': '\.\.' cannot name a registered model"):
        resolve_adapter("models:/..@champion")
    assert len(asked) == 2  # refused before any registry call


# --- reading adapters and matching their base model -------------------------------------------

def test_inspect_adapter_reads_rank_alpha_modules_and_manifest(tmp_path):
    manifest = {"name": "smollm2-135m-instruct", "source": "/cache/models/smollm2-135m-instruct", "kind": "bundled"}
    info = inspect_adapter(fake_adapter(tmp_path / "a", r=16, manifest_base=manifest,
                                        rank_pattern={"layers.0.self_attn.q_proj": 40}))
    assert (info.r, info.alpha, info.target_modules) == (16, 32, ["q_proj", "v_proj"])
    assert info.config_base == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info.manifest_base == manifest
    assert info.max_rank == 40  # rank_pattern lifts one module above r
    assert info.trained_on() == ["smollm2-135m-instruct", "/cache/models/smollm2-135m-instruct"]


@pytest.mark.parametrize("config, message", [
    ('{"r": 8,', "adapter_config.json: not valid JSON"),
    ('{"lora_alpha": 16}', "'r' \\(the LoRA rank\\) must be a positive integer, got None"),
    ('{"r": 8, "peft_type": "PROMPT_TUNING"}', "peft_type is 'PROMPT_TUNING': only LoRA adapters"),
])
def test_bad_adapter_configs(tmp_path, config, message):
    path = fake_adapter(tmp_path / "a")
    (path / "adapter_config.json").write_text(config)
    with pytest.raises(InputFileError, match=message):
        inspect_adapter(path)


def test_the_bundled_name_and_its_hub_id_are_one_base(tmp_path):
    by_manifest = inspect_adapter(fake_adapter(tmp_path / "m", base="/somewhere/else",
                                               manifest_base={"name": "smollm2-135m-instruct"}))
    by_config = inspect_adapter(fake_adapter(tmp_path / "c", base="huggingfacetb/smollm2-135m-instruct"))
    materialized = cache_root() / "models" / "smollm2-135m-instruct"
    by_cache_dir = inspect_adapter(fake_adapter(tmp_path / "d", base=str(materialized)))
    adapters = {"m": by_manifest, "c": by_config, "d": by_cache_dir}
    for base in ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        check_adapters_match(base, adapters)  # no error


def test_a_local_base_directory_matches_the_manifest_source(tmp_path, monkeypatch):
    base_dir = tmp_path / "models" / "llama"
    base_dir.mkdir(parents=True)
    info = inspect_adapter(fake_adapter(tmp_path / "a", base=str(base_dir),
                                        manifest_base={"name": "meta-llama/Llama-3.1-8B-Instruct",
                                                       "source": str(base_dir), "kind": "local"}))
    check_adapters_match("meta-llama/llama-3.1-8b-instruct", {"a": info})  # by name, case-insensitive
    monkeypatch.chdir(tmp_path)
    check_adapters_match("models/llama/", {"a": info})  # by directory, relative and with a slash


def test_adapters_trained_on_another_base_are_all_reported(tmp_path):
    qwen = inspect_adapter(fake_adapter(tmp_path / "q", manifest_base={"name": "Qwen/Qwen2.5-7B-Instruct"}))
    llama = inspect_adapter(fake_adapter(tmp_path / "l", base="meta-llama/Llama-3.1-8B-Instruct"))
    anonymous = inspect_adapter(fake_adapter(tmp_path / "n", base=None))
    ok = inspect_adapter(fake_adapter(tmp_path / "ok"))
    with pytest.raises(ProfileError) as e:
        check_adapters_match("smollm2-135m-instruct", {"q": qwen, "ok": ok, "l": llama, "n": anonymous}, "p.yaml")
    assert e.value.problems == [
        f"adapter 'q' ({tmp_path / 'q'}) was trained on 'Qwen/Qwen2.5-7B-Instruct' (gekro_ft.json), "
        "not on the base served here, 'smollm2-135m-instruct'",
        f"adapter 'l' ({tmp_path / 'l'}) was trained on 'meta-llama/Llama-3.1-8B-Instruct' (adapter_config.json), "
        "not on the base served here, 'smollm2-135m-instruct'",
        f"adapter 'n' ({tmp_path / 'n'}) does not name its base model "
        "(no gekro_ft.json, no base_model_name_or_path in adapter_config.json)",
    ]
    assert "check_adapter_base: false" in e.value.hint


def test_prepare_adapters_resolves_reads_and_checks(tmp_path):
    fake_adapter(tmp_path / "q", base="Qwen/Qwen2.5-7B-Instruct")
    infos = prepare_adapters("Qwen/Qwen2.5-7B-Instruct", {"t": str(tmp_path / "q")})
    assert infos["t"].path == (tmp_path / "q").resolve() and infos["t"].r == 8
    with pytest.raises(ProfileError, match="was trained on 'Qwen/Qwen2.5-7B-Instruct'"):
        prepare_adapters("smollm2-135m-instruct", {"t": str(tmp_path / "q")})
    assert prepare_adapters("smollm2-135m-instruct", {"t": str(tmp_path / "q")}, check_base=False)["t"].r == 8
