"""Where an API key may be sent (gekro_ft/keys.py): a provider's key to its own host unless the
user named it for the endpoint, never over plain HTTP to another machine. The requests
themselves are checked against a real server in test_bench.py and test_eval_providers.py."""

from __future__ import annotations

import pytest

from gekro_ft.errors import KeyRefusedError
from gekro_ft.keys import send_key

SECRET = "sk-test-keys-0123456789"


@pytest.mark.parametrize("env, url, explicit, sent", [
    ("OPENAI_API_KEY", "https://api.openai.com/v1", False, True),
    ("OPENAI_API_KEY", "https://API.OpenAI.com:443/v1", False, True),
    ("OPENAI_API_KEY", "http://127.0.0.1:8000/v1", False, False),  # the default bench once sent it here
    ("OPENAI_API_KEY", "https://api.openai.com.example.net/v1", False, False),
    ("OPENAI_API_KEY", "https://example.net/api.openai.com/v1", False, False),
    ("OPENAI_API_KEY", "https://api.openai.com@example.net/v1", False, False),  # user-info is not the host
    ("ANTHROPIC_API_KEY", "https://api.openai.com/v1", False, False),
    ("ANTHROPIC_API_KEY", "https://api.anthropic.com/v1", False, True),
    ("OPENAI_API_KEY", "http://127.0.0.1:8000/v1", True, True),  # named for this endpoint
    ("OPENAI_API_KEY", "https://llm-proxy.example.net/v1", True, True),
    ("GEKRO_FT_API_KEY", "https://gpu-box.example.net/v1", False, True),  # nobody's key but the user's
])
def test_a_providers_key_goes_to_its_host_unless_named_for_the_endpoint(env, url, explicit, sent):
    assert send_key(url, env, explicit=explicit, environ={env: SECRET}) == (SECRET if sent else None)


PLAIN_HTTP_ELSEWHERE = ["http://10.1.2.3:8000/v1", "http://gpu-box.internal/v1", "http://0.0.0.0:8000",
                        "http://api.openai.com/v1", "HTTP://[2001:db8::1]:8000/v1"]
SAFE = ["http://127.0.0.1:8000/v1", "http://127.0.0.53:1/v1", "http://localhost:8000", "http://[::1]:8000/v1",
        "https://10.1.2.3/v1"]


@pytest.mark.parametrize("url", PLAIN_HTTP_ELSEWHERE)
def test_no_key_over_plain_http_beyond_this_machine(url):
    with pytest.raises(KeyRefusedError) as e:
        send_key(url, "MY_KEY", explicit=True, environ={"MY_KEY": SECRET})
    assert "MY_KEY" in str(e.value) and SECRET not in str(e.value)


@pytest.mark.parametrize("url", SAFE)
def test_plain_http_on_this_machine_or_https_anywhere_carries_the_key(url):
    assert send_key(url, "MY_KEY", explicit=True, environ={"MY_KEY": SECRET}) == SECRET


def test_the_refusal_names_the_url_without_its_credentials():
    with pytest.raises(KeyRefusedError) as e:
        send_key("http://alice:hunter2@10.1.2.3:8000/v1", "MY_KEY", explicit=True, environ={"MY_KEY": SECRET})
    assert str(e.value).startswith("refusing to send the API key in MY_KEY to http://10.1.2.3:8000/v1:")
    assert "hunter2" not in str(e.value) and "alice" not in str(e.value)


def test_no_key_means_nothing_to_refuse():
    assert send_key("http://10.1.2.3/v1", "MY_KEY", explicit=True, environ={}) is None
    assert send_key("http://10.1.2.3/v1", "MY_KEY", explicit=True, environ={"MY_KEY": ""}) is None
    assert send_key("http://10.1.2.3/v1", None, explicit=False, environ={}) is None


def test_bench_sends_openai_api_key_by_default_to_openai_only(tmp_path, monkeypatch):
    from gekro_ft.bench.settings import BenchSettings

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def key(url, api_key_env=None):
        return BenchSettings(url=url, model="m", out_dir=tmp_path, synthetic_input_tokens=5,
                             api_key_env=api_key_env).api_key()

    assert key("http://127.0.0.1:8000") == (None, None)
    assert key("https://api.openai.com") == (SECRET, "OPENAI_API_KEY")
    assert key("http://127.0.0.1:8000", "OPENAI_API_KEY") == (SECRET, "OPENAI_API_KEY")  # --api-key-env
    with pytest.raises(KeyRefusedError):
        key("http://10.1.2.3:8000", "OPENAI_API_KEY")
    assert key("http://10.1.2.3:8000", "") == (None, None)  # --api-key-env '': no key at all


def test_eval_endpoints_take_the_suites_provider_key_only_to_the_provider(tmp_path, monkeypatch):
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    def key_env(spec, suite_env, side_env=None):
        model = None if spec.startswith("openai:") else "m"
        return make_provider(spec, model, Endpoint(api_key_env=suite_env), tmp_path, key_env=side_env).key_env

    assert key_env("openai:gpt-4.1-mini", "OPENAI_API_KEY") == "OPENAI_API_KEY"
    assert key_env("openai:gpt-4.1-mini", None) == "OPENAI_API_KEY"
    assert key_env("https://api.openai.com/v1", "OPENAI_API_KEY") == "OPENAI_API_KEY"
    # the shipped suite's key, a local URL
    assert key_env("http://127.0.0.1:8000/v1", "OPENAI_API_KEY") is None
    assert key_env("http://127.0.0.1:8000/v1", "OPENAI_API_KEY", "OPENAI_API_KEY") == "OPENAI_API_KEY"
    assert key_env("http://127.0.0.1:8000/v1", "GEKRO_FT_API_KEY") == "GEKRO_FT_API_KEY"
    assert key_env("openai:gpt-4.1-mini", "ANTHROPIC_API_KEY") is None
    # OPENAI_BASE_URL moves OpenAI (a proxy): openai:MODEL still sends OpenAI's key there
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:4000/v1")
    assert key_env("openai:gpt-4.1-mini", None) == "OPENAI_API_KEY"
    # anthropic:MODEL the same way: Anthropic's key, to api.anthropic.com or ANTHROPIC_BASE_URL
    assert key_env("anthropic:claude-3-5-haiku-20241022", None) == "ANTHROPIC_API_KEY"
    assert key_env("anthropic:claude-3-5-haiku-20241022", "OPENAI_API_KEY") is None
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:4001/v1")
    provider = make_provider("anthropic:claude-3-5-haiku-20241022", None, Endpoint(), tmp_path)
    assert (provider.base_url, provider.model, provider.key_env) == (
        "http://127.0.0.1:4001/v1", "claude-3-5-haiku-20241022", "ANTHROPIC_API_KEY")
