"""What a bench run does, checked before a request is sent, and the command that repeats it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gekro_ft.errors import BenchError
from gekro_ft.keys import public_url, send_key
from gekro_ft.models import DEFAULT_MODEL

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_REQUESTS = 50


@dataclass
class BenchSettings:
    url: str
    model: str
    out_dir: Path
    prompts: Path | None = None  # a dataset file in any schema the data stage reads...
    schema: str | None = None
    synthetic_input_tokens: int | None = None  # ...or synthetic prompts of about this many tokens
    endpoint: str = "chat"  # chat | completions
    concurrency: list[int] = field(default_factory=lambda: [1])  # concurrency mode: one level each
    rates: list[float] | None = None  # rate mode (open loop): requests/s, one level each
    arrival: str = "poisson"  # poisson | constant
    max_concurrency: int | None = None  # rate mode: cap on requests in flight
    requests: int | None = DEFAULT_REQUESTS  # per level; or:
    duration_s: float | None = None  # per level: start requests for this long
    max_tokens: int = 128
    warmup: int = 1
    timeout_s: float = 300.0
    temperature: float = 0.0
    ignore_eos: bool = False  # vLLM's extension: always generate max_tokens
    seed: int = 0
    goodput: dict[str, float] = field(default_factory=dict)  # {"ttft_ms": 500, ...}
    tokenizer: str = DEFAULT_MODEL  # counts tokens when the server sends no usage
    # named by the user for --url; None: OPENAI_API_KEY, for api.openai.com only (gekro_ft.keys); "": no key
    api_key_env: str | None = None
    engine: str | None = None  # used when /v1/models does not say
    gpu: str | None = None  # the server's GPU, when it is not this machine's

    @property
    def mode(self) -> str:
        return "rate" if self.rates else "concurrency"

    def check(self) -> None:
        """Raise one BenchError naming every bad setting."""
        problems = []
        if (self.prompts is None) == (self.synthetic_input_tokens is None):
            problems.append("give either --prompts FILE or --synthetic-input-tokens N")
        if self.schema is not None and self.prompts is None:
            problems.append("--schema describes --prompts FILE; give both or neither")
        if self.synthetic_input_tokens is not None and self.synthetic_input_tokens < 1:
            problems.append("--synthetic-input-tokens must be at least 1")
        if self.endpoint not in ("chat", "completions"):
            problems.append(f"--endpoint must be chat or completions, not {self.endpoint!r}")
        if self.arrival not in ("poisson", "constant"):
            problems.append(f"--arrival must be poisson or constant, not {self.arrival!r}")
        if self.rates is not None:
            if any(not r > 0 for r in self.rates):
                problems.append("every --rate must be > 0 requests/s")
        elif not self.concurrency or any(c < 1 for c in self.concurrency):
            problems.append("every --concurrency must be at least 1")
        if self.max_concurrency is not None and (self.rates is None or self.max_concurrency < 1):
            problems.append("--max-concurrency is a cap for --rate runs, at least 1")
        if (self.requests is None) == (self.duration_s is None):
            problems.append("give either --requests N or --duration S")
        if self.requests is not None and self.requests < 1:
            problems.append("--requests must be at least 1")
        if self.duration_s is not None and not self.duration_s > 0:
            problems.append("--duration must be > 0 seconds")
        for name, value, low in (("--max-tokens", self.max_tokens, 1), ("--warmup", self.warmup, 0)):
            if value < low:
                problems.append(f"{name} must be at least {low}")
        if not self.timeout_s > 0:
            problems.append("--timeout must be > 0 seconds")
        try:
            base_url(self.url)
        except BenchError as e:
            problems.append(str(e))
        if problems:
            raise BenchError("bench settings: " + "; ".join(problems))

    def api_key(self) -> tuple[str | None, str | None]:
        """(key, the variable it came from), or (None, None) to send none. ``--api-key-env VAR``
        names VAR for this --url; the default, OPENAI_API_KEY, goes to api.openai.com only; no key
        over plain HTTP beyond this machine (gekro_ft.keys). The key is never stored or printed."""
        if self.api_key_env == "":
            return None, None
        name = self.api_key_env or DEFAULT_KEY_ENV
        if self.api_key_env and not os.environ.get(name):
            raise BenchError(f"environment variable {name} is not set",
                             hint="export it with the server's API key, or leave out --api-key-env")
        key = send_key(self.url, name, explicit=self.api_key_env is not None)
        return (key, name) if key else (None, None)

    def to_json(self) -> dict[str, Any]:
        """The settings as bench.json records them: the URL without credentials, the key's
        variable name but never the key."""
        return {
            "url": public_url(self.url), "model": self.model, "endpoint": self.endpoint, "mode": self.mode,
            "concurrency": self.concurrency if self.mode == "concurrency" else None,
            "rates": self.rates, "arrival": self.arrival if self.mode == "rate" else None,
            "max_concurrency": self.max_concurrency, "requests_per_level": self.requests,
            "duration_s_per_level": self.duration_s, "max_tokens": self.max_tokens, "warmup": self.warmup,
            "timeout_s": self.timeout_s, "temperature": self.temperature, "ignore_eos": self.ignore_eos,
            "seed": self.seed, "goodput_targets": self.goodput or None,
            "prompts": str(self.prompts) if self.prompts else None, "schema": self.schema,
            "synthetic_input_tokens": self.synthetic_input_tokens, "tokenizer": self.tokenizer,
            "api_key_env": self.api_key()[1], "engine_option": self.engine, "gpu_option": self.gpu,
            "out_dir": str(self.out_dir),
        }

    def command(self) -> list[str]:
        """The command, every option spelled out, that repeats this run."""
        cmd = ["gekro-ft", "bench", "--url", public_url(self.url), "--model", self.model]
        if self.prompts is not None:
            cmd += ["--prompts", str(self.prompts)] + (["--schema", self.schema] if self.schema else [])
        else:
            cmd += ["--synthetic-input-tokens", str(self.synthetic_input_tokens)]
        cmd += ["--endpoint", self.endpoint]
        if self.mode == "rate":
            cmd += ["--rate", ",".join(f"{r:g}" for r in self.rates), "--arrival", self.arrival]
            if self.max_concurrency is not None:
                cmd += ["--max-concurrency", str(self.max_concurrency)]
        else:
            cmd += ["--concurrency", ",".join(map(str, self.concurrency))]
        cmd += (["--requests", str(self.requests)] if self.requests is not None
                else ["--duration", f"{self.duration_s:g}"])
        cmd += ["--max-tokens", str(self.max_tokens), "--warmup", str(self.warmup),
                "--timeout", f"{self.timeout_s:g}", "--temperature", f"{self.temperature:g}",
                "--seed", str(self.seed), "--tokenizer", self.tokenizer]
        if self.ignore_eos:
            cmd.append("--ignore-eos")
        for name, limit in self.goodput.items():
            cmd += ["--goodput", f"{name}={limit:g}"]
        if self.api_key_env is not None:
            cmd += ["--api-key-env", self.api_key_env]
        if self.engine:
            cmd += ["--engine", self.engine]
        if self.gpu:
            cmd += ["--gpu", self.gpu]
        return cmd + ["--out", str(self.out_dir)]


def base_url(url: str) -> str:
    """``http://host:8000`` or ``http://host:8000/v1`` -> ``http://host:8000/v1``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchError(f"--url must be an http:// or https:// address, not {public_url(url)!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
