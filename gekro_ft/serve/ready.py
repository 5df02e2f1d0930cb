"""The ready message a server prints once it answers: where it is and a request to paste.
Engine-neutral: the vLLM launcher and the CPU engine print the same text."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerInfo:
    """What a client needs to call a server that just became ready."""

    base_url: str  # what an OpenAI client takes: http://HOST:PORT/v1
    models: list[str]  # as /v1/models lists them: the base, then the adapters
    example_model: str  # the model the examples ask for (the first adapter, else the base)
    key_env: str | None  # the variable holding the API key; None when the server wants none
    listening_on: str  # HOST:PORT as bound


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
