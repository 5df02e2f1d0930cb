"""Where answers come from: a local adapter (batched), an OpenAI-compatible endpoint
(bounded concurrency, retries, recorded), or a recording alone.

Spec strings, as ``--candidate`` and ``--baseline`` take them:

=========================  ==================================================================
``DIR``                    a LoRA adapter directory (its manifest names the base model)
``models:/NAME@ALIAS``     a registry version, downloaded once (``models:/NAME/3`` works too)
``base:MODEL``             a base model with no adapter, generated locally
``openai:MODEL``           OpenAI's API (``OPENAI_BASE_URL`` overrides the address)
``anthropic:MODEL``        Anthropic's API through its OpenAI-compatible endpoint
                           (``ANTHROPIC_BASE_URL`` overrides the address)
``http(s)://HOST/v1``      any OpenAI-compatible server; ``--…-model`` names the model
``recording:FILE``         replay only: answers recorded earlier, no network at all
``reference:SUITE[@RATE]`` a *simulated* frontier: the suite's references, wrong on RATE of
                           them (default 0.05; :mod:`gekro_ft.eval.reference`)
=========================  ==================================================================

With ``served_at`` (``--served-at URL``) the candidate ``DIR`` or ``models:/…`` is judged as a
server answers for it (:class:`ServedProvider`): the artifact production runs, on its engine.

A failed request is an :class:`Answer` with ``error`` set: counted and shown, never
scored as a wrong answer and never dropped.

API keys (:mod:`gekro_ft.keys`): a side's key is in ``--candidate-key-env`` / ``--baseline-key-env``,
else in the suite's ``endpoint.api_key_env``, else (``openai:MODEL`` / ``anthropic:MODEL`` only) in
that provider's ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``. A provider's variable taken from the
suite goes only to that provider's host (``OPENAI_API_KEY`` to api.openai.com, or to
``OPENAI_BASE_URL`` for ``openai:MODEL``); no key goes over plain HTTP beyond this machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gekro_ft.adapter import adapter_base, read_manifest
from gekro_ft.data.conversation import Conversation
from gekro_ft.errors import ProviderError
from gekro_ft.eval.recordings import Recording, request_key
from gekro_ft.eval.suite import Endpoint, Generation
from gekro_ft.keys import PROVIDER_ENDPOINTS, check_transport, may_send, public_url


@dataclass
class Answer:
    text: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    error_kind: str | None = None  # http_429, http_500, timeout, connection, not_recorded
    cached: bool = False


def _truncate_at_stop(text: str, stop: list[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


class LocalProvider:
    """A base model, optionally with a LoRA adapter, generated here in batches (greedy)."""

    kind = "local"

    def __init__(self, base_model: str, adapter_dir: Path | None, label: str, batch_size: int = 8):
        self.base_model, self.adapter_dir, self.label, self.batch_size = base_model, adapter_dir, label, batch_size
        self.manifest = read_manifest(adapter_dir, missing_ok=True) if adapter_dir else {}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.label, "base_model": self.base_model,
                "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
                "training_run_id": self.manifest.get("mlflow_run_id")}

    def generate(self, convs: list[Conversation], gen: Generation,
                 progress: Callable[[int], None] | None = None) -> list[Answer]:
        from gekro_ft.eval.local import LocalGenerator
        from gekro_ft.models import resolve_model

        if gen.temperature > 0:
            raise ProviderError("local generation is greedy; set generation.temperature: 0 in the suite")
        generator = LocalGenerator(resolve_model(self.base_model).source, self.adapter_dir)
        answers: list[Answer] = []
        for i in range(0, len(convs), self.batch_size):
            chunk = convs[i:i + self.batch_size]
            t0 = time.perf_counter()
            outs = generator.generate(chunk, max_new_tokens=gen.max_tokens, batch_size=len(chunk))
            per = (time.perf_counter() - t0) / len(chunk)  # a batch finishes together: share its time
            answers += [Answer(_truncate_at_stop(o["text"], gen.stop), o["input_tokens"], o["output_tokens"], per)
                        for o in outs]
            if progress:
                progress(len(chunk))
        return answers


def _require_base(adapter_dir: Path) -> str:
    """The adapter's base model (see gekro_ft.adapter), or a ProviderError when it names none."""
    base = adapter_base(adapter_dir)
    if not base:
        raise ProviderError(f"{Path(adapter_dir) / 'adapter_config.json'} does not name its base model")
    return base


class EndpointProvider:
    """An OpenAI-compatible chat endpoint through the ``openai`` client, with a recording. ``key_env``
    names the variable whose key is sent, already allowed for ``base_url`` (:func:`make_provider`)."""

    kind = "endpoint"

    def __init__(self, base_url: str, model: str, label: str, settings: Endpoint,
                 recording: Recording | None, record_only: bool = False, key_env: str | None = None):
        self.base_url, self.model, self.label, self.settings = base_url, model, label, settings
        self.recording, self.record_only, self.key_env = recording, record_only, key_env
        self.requests_sent = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.label, "base_url": public_url(self.base_url),
                "model": self.model, "api_key_env": self.key_env,
                "recording": str(self.recording.path) if self.recording else None}

    def _scrub(self, text: str) -> str:
        """A careless server may echo the Authorization header in an error: never let the key through."""
        key = os.environ.get(self.key_env) if self.key_env else None
        return text.replace(key, "***") if key else text

    def _api_key(self) -> str:
        if not self.key_env:
            return "not-needed"  # the client insists on a string; keyless local servers ignore it
        key = os.environ.get(self.key_env)
        if not key:
            raise ProviderError(f"the environment variable {self.key_env} (the API key for {self.label}) is not set")
        check_transport(self.base_url, self.key_env)  # before the first request
        return key

    def generate(self, convs: list[Conversation], gen: Generation,
                 progress: Callable[[int], None] | None = None) -> list[Answer]:
        return self.generate_messages([c.prompt_messages() for c in convs], gen, progress)

    def generate_messages(self, prompts: list[list[dict]], gen: Generation,
                          progress: Callable[[int], None] | None = None) -> list[Answer]:
        """One answer per prompt (chat messages), from the recording where it holds one."""
        settings = gen.model_dump()
        keys = [request_key(self.model, p, settings) for p in prompts]
        answers: list[Answer | None] = [None] * len(prompts)
        todo = []
        for i, key in enumerate(keys):
            rec = self.recording.get(key) if self.recording and not self.record_only else None
            if rec is not None:
                answers[i] = Answer(rec["text"], rec.get("input_tokens"), rec.get("output_tokens"),
                                    rec.get("latency_s"), cached=True)
                if progress:
                    progress(1)
            else:
                todo.append(i)
        if todo:
            asyncio.run(self._fetch_all(todo, prompts, keys, gen, answers, progress))
        return [a for a in answers if a is not None]

    async def _fetch_all(self, todo, prompts, keys, gen, answers, progress) -> None:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key(),
                                    timeout=self.settings.timeout_s, max_retries=self.settings.max_retries)
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(i: int) -> None:
            async with gate:
                answers[i] = await self._fetch(client, prompts[i], gen)
            if answers[i].error is None and self.recording is not None:
                self.recording.put(keys[i], {"model": self.model, "text": answers[i].text,
                                             "input_tokens": answers[i].input_tokens,
                                             "output_tokens": answers[i].output_tokens,
                                             "latency_s": answers[i].latency_s})
            if progress:
                progress(1)

        try:
            await asyncio.gather(*(one(i) for i in todo))
        finally:
            await client.close()

    async def _fetch(self, client: Any, messages: list[dict], gen: Generation) -> Answer:
        import openai

        self.requests_sent += 1
        t0 = time.perf_counter()
        try:
            r = await client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=gen.max_tokens, temperature=gen.temperature,
                stop=gen.stop or None, seed=gen.seed)
        except openai.APIStatusError as e:  # after the client's own retries on 429/5xx
            return Answer(None, error=self._scrub(f"HTTP {e.status_code}: {_short(e.message)}"),
                          error_kind=f"http_{e.status_code}")
        except openai.APITimeoutError:
            return Answer(None, error=f"timed out after {self.settings.timeout_s:g} s", error_kind="timeout")
        except openai.APIConnectionError as e:
            said = f"cannot connect to {public_url(self.base_url)}: {_short(str(e.__cause__ or e))}"
            return Answer(None, error=self._scrub(said), error_kind="connection")
        latency = time.perf_counter() - t0
        usage = r.usage
        return Answer(r.choices[0].message.content or "", usage.prompt_tokens if usage else None,
                      usage.completion_tokens if usage else None, latency)


SERVED_CONCURRENCY = 8  # the CPU engine's default batch (serve/cpu-default.yaml)
SERVED_TIMEOUT_S = 900.0


class ServedProvider(EndpointProvider):
    """The candidate as a server answers for it: the same artifact production runs, judged live.

    Its answers are never recorded or replayed (a recording keyed by the served name would hand
    a retrained adapter the old one's answers); the adapter it serves identifies it for
    promotion and the training run, and the engine is read from the server's ``/v1/models``."""

    kind = "served"

    def __init__(self, base_url: str, model: str, adapter: str, settings: Endpoint, key_env: str | None = None):
        # The suite's concurrency and timeout are sized for an API. Our own server batches, so it
        # gets at least a full CPU-engine batch in flight; and a slow answer on a busy machine is
        # waited for, not abandoned and asked again (the abandoned one would still be computed).
        settings = settings.model_copy(update={"concurrency": max(settings.concurrency, SERVED_CONCURRENCY),
                                               "timeout_s": max(settings.timeout_s, SERVED_TIMEOUT_S)})
        super().__init__(base_url, model, f"{adapter} served as {model} at {public_url(base_url)}", settings,
                         recording=None, key_env=key_env)
        self.adapter = adapter
        self.adapter_dir = _adapter_dir(adapter)
        self.manifest = read_manifest(self.adapter_dir, missing_ok=True)
        self.engine = "unknown"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "adapter": self.adapter, "engine": self.engine,
                "training_run_id": self.manifest.get("mlflow_run_id")}

    def generate(self, convs: list[Conversation], gen: Generation,
                 progress: Callable[[int], None] | None = None) -> list[Answer]:
        self.engine = self._engine()
        return super().generate(convs, gen, progress)

    def _engine(self) -> str:
        """Which engine serves ``model``, from /v1/models (an error when it does not serve it)."""
        import httpx

        from gekro_ft.process import ENGINE_OF_OWNER

        key = self._api_key() if self.key_env else None
        shown = public_url(self.base_url)
        try:
            r = httpx.get(self.base_url.rstrip("/") + "/models", timeout=self.settings.timeout_s,
                          headers={"Authorization": f"Bearer {key}"} if key else None)
            cards = r.json()["data"] if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise ProviderError(self._scrub(f"cannot list the models at {shown}: {_short(str(e))}")) from None
        if cards is None:
            raise ProviderError(f"{shown}/models answered HTTP {r.status_code}")
        owners = {str(c.get("id")): c.get("owned_by") for c in cards if isinstance(c, dict)}
        if self.model not in owners:
            raise ProviderError(f"{shown} does not serve {self.model!r}", hint="it serves: " + ", ".join(owners))
        return ENGINE_OF_OWNER.get(owners[self.model], str(owners[self.model]))


def _adapter_dir(adapter: str) -> Path:
    """The directory of the adapter a server was given (a registry version is fetched once)."""
    if adapter.startswith("models:/"):
        from gekro_ft.registry import download_adapter

        return Path(download_adapter(adapter))
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ProviderError(f"{path} is not an adapter directory (no adapter_config.json)")
    return path


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


class ReplayProvider:
    """Answers from a recording only; an unrecorded prompt is a failure, not a request."""

    kind = "recording"

    def __init__(self, path: Path, model: str | None, label: str):
        if not path.is_file():
            raise ProviderError(f"recording {path} does not exist")
        self.recording, self.model, self.label = Recording(path), model, label

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.label, "recording": str(self.recording.path), "model": self.model}

    def generate(self, convs: list[Conversation], gen: Generation,
                 progress: Callable[[int], None] | None = None) -> list[Answer]:
        models = {r.get("model") for r in self.recording.answers.values()}
        model = self.model or (models.pop() if len(models) == 1 else None)
        if model is None:
            raise ProviderError(f"{self.recording.path} holds answers of several models; name one with --…-model")
        settings = gen.model_dump()
        out = []
        for conv in convs:
            rec = self.recording.get(request_key(model, conv.prompt_messages(), settings))
            out.append(Answer(rec["text"], rec.get("input_tokens"), rec.get("output_tokens"), rec.get("latency_s"),
                              cached=True) if rec else
                       Answer(None, error="not in the recording (the eval set or settings changed; re-record)",
                              error_kind="not_recorded"))
            if progress:
                progress(1)
        return out


def recording_path(recordings_dir: Path, model: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
    return recordings_dir / f"{safe}.jsonl"


def _key_env(url: str, env: str | None, explicit: bool) -> str | None:
    """``env`` when its key may go to ``url`` (gekro_ft.keys), else None: the request goes without one."""
    return env if env and may_send(env, url, explicit) else None


def served_provider(url: str, model: str | None, adapter: str, endpoint: Endpoint,
                    key_env: str | None = None) -> ServedProvider:
    """The candidate ``adapter`` as the server at ``url`` answers for it under ``model``."""
    if not model:
        raise ProviderError("--served-at needs the name the server answers to for the candidate (--candidate-model)")
    url = url.rstrip("/")
    url = url if url.endswith("/v1") else url + "/v1"
    return ServedProvider(url, model, adapter, endpoint, _key_env(url, key_env or endpoint.api_key_env, bool(key_env)))


def make_provider(spec: str, model: str | None, endpoint: Endpoint, recordings_dir: Path,
                  record_only: bool = False, key_env: str | None = None) -> Any:
    """A provider for one side from its spec string (see the module docstring). ``key_env``
    names the API key's variable for this side (``--candidate-key-env``); without it the
    suite's ``endpoint.api_key_env`` applies, where a provider's key goes only to that
    provider's host (gekro_ft.keys)."""
    prefix = spec.split(":", 1)[0]
    if prefix in PROVIDER_ENDPOINTS and ":" in spec:
        name = spec.split(":", 1)[1]
        default_url, url_env, own_env = PROVIDER_ENDPOINTS[prefix]
        url = os.environ.get(url_env, default_url)
        env = key_env or endpoint.api_key_env or own_env
        # the spec names the provider, and its *_BASE_URL is where the user put it (as its client reads them)
        explicit = bool(key_env) or env == own_env
        return EndpointProvider(url, name, spec, endpoint, Recording(recording_path(recordings_dir, name)),
                                record_only, _key_env(url, env, explicit))
    if spec.startswith(("http://", "https://")):
        if not model:
            raise ProviderError(f"{public_url(spec)} is an endpoint: name the model too "
                                "(--candidate-model / --baseline-model)")
        url = spec.rstrip("/")
        return EndpointProvider(url, model, public_url(spec), endpoint,
                                Recording(recording_path(recordings_dir, model)), record_only,
                                _key_env(url, key_env or endpoint.api_key_env, bool(key_env)))
    if spec.startswith("recording:"):
        return ReplayProvider(Path(spec.split(":", 1)[1]), model, spec)
    if spec.startswith("reference:"):
        from gekro_ft.eval.reference import reference_frontier

        return reference_frontier(spec)
    if spec.startswith("base:"):
        return LocalProvider(spec.split(":", 1)[1], None, spec)
    if spec.startswith("models:/"):
        from gekro_ft.registry import download_adapter

        adapter = download_adapter(spec)
        return LocalProvider(_require_base(adapter), adapter, spec)
    path = Path(spec)
    if (path / "adapter_config.json").is_file():
        return LocalProvider(_require_base(path), path, spec)
    if path.is_dir():
        raise ProviderError(f"{path} is not an adapter directory (no adapter_config.json)",
                            hint="for a plain model use base:DIR")
    raise ProviderError(f"cannot tell what {spec!r} is",
                        hint="use an adapter DIR, models:/NAME@ALIAS, base:MODEL, openai:MODEL, anthropic:MODEL, "
                             "URL, recording:FILE or reference:SUITE")
