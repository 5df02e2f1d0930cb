"""Route profiles: the router's two upstreams and its policy, as a validated YAML file.

Found like every config file (:mod:`gekro_ft.config`): by path, or by name in ``./serve/route``,
``$GEKRO_FT_ROUTES`` and the profiles shipped with gekro-ft; relative paths in the file (the
escalation log, a JSON Schema, the prompt classifier) are relative to the file. Unknown keys
are errors naming the closest known key; every problem is reported at once. Keys are never
part of a profile: it names the environment variables that hold them.

The policy is made of parts, each optional, applied in this order (the first that decides wins):

1. ``rules``: the request's task class (a header, else ``metadata.<field>``) sends it local or
   to the frontier; an unknown class gets ``rules.default``.
2. ``capacity``: a prompt over ``capacity.max_prompt_tokens`` goes to the frontier.
3. ``prompt_classifier``: a model of the prompt alone (``gekro-ft route train-classifier``)
   predicts whether the local answer will need escalation: a probability at or above
   ``prompt_classifier.threshold`` goes to the frontier; below it, local, decided before
   generation, so a stream is passed through as it comes. A whole (non-streamed) local answer
   is still judged by the checks and confidence below, when the profile has them: the client
   waits for all of it anyway.
4. ``checks`` on the local answer (JSON valid, JSON Schema valid, a regex, required fields):
   one that fails escalates.
5. ``confidence``: a score from the local answer's token log-probabilities below
   ``confidence.threshold`` escalates.
6. ``budget``: once the frontier spend of the day (UTC) reaches ``budget.usd_per_day``, what
   would escalate is answered locally and marked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gekro_ft.config import ConfigKind, inside_package, resolve_paths, shipped, validate
from gekro_ft.errors import RouteProfileError
from gekro_ft.keys import is_loopback

ROUTES = ConfigKind("route profile", "serve/route", "GEKRO_FT_ROUTES", RouteProfileError)
PATH_KEYS = ("escalation_log", "checks.schema", "prompt_classifier.model")
NO_ECHO = ("api_key_env", "local.api_key_env", "frontier.api_key_env")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONFIDENCE_SCORES = ("mean_logprob", "min_logprob", "min_field_logprob")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _env_name(v: str | None) -> str | None:
    if v is not None and not _ENV_NAME.match(v):
        raise ValueError("must be the name of an environment variable (letters, digits, _), not the key itself")
    return v


class Upstream(_Section):
    url: str = Field(description="The OpenAI-compatible base URL (…/v1), reference:SUITE@RATE for the "
                     "simulated frontier (in-process; gekro_ft/eval/reference.py), or openai:MODEL for OpenAI's "
                                 "API (OPENAI_BASE_URL overrides its address).")
    model: str | None = Field(None, description="The model requests go to (default: the request's own; "
                                                "openai:MODEL names it).")
    api_key_env: str | None = Field(None, description="Environment variable holding this upstream's key.")
    timeout_s: float = Field(60.0, gt=0, description="Per attempt.")
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429, 5xx, timeouts and refused "
                                                         "connections, with exponential backoff.")
    backoff_s: float = Field(0.5, ge=0, le=60, description="The first retry's wait; it doubles each time.")

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, v: str | None) -> str | None:
        return _env_name(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith(("http://", "https://")) or (v.startswith("openai:") and len(v) > 7)
                or (v.startswith("reference:") and len(v) > 10)):
            raise ValueError("give http(s)://HOST/v1, openai:MODEL or reference:SUITE@RATE (a simulated frontier)")
        return v.rstrip("/")

    @property
    def model_name(self) -> str | None:
        return self.model or (self.url.split(":", 1)[1] if self.url.startswith("openai:") else None)


class Frontier(Upstream):
    price: str | None = Field(None, description="Price-table entry for the frontier's bill (default: its model).")
    on_error: Literal["open", "closed"] = Field(
        "open", description="The frontier down, slow or rate-limited after its retries: open = answer "
                            "with the local answer, flagged; closed = 503.")


class Local(Upstream):
    on_error: Literal["escalate", "fail"] = Field(
        "escalate", description="The local upstream down: send everything to the frontier, or answer 503.")
    gpu: str | None = Field(None, description="Price-table machine the local model is served on.")
    output_tokens_per_s: float | None = Field(None, gt=0, description="Its measured throughput "
                                              "(gekro-ft bench); with gpu, the local cost per token.")
    gpu_hourly: float | None = Field(None, gt=0, description="US$/h of that machine, instead of a price-table gpu.")


class Rules(_Section):
    header: str = Field("x-gekro-task", description="Request header carrying the task class.")
    metadata_field: str = Field("task", description="…or this key of the request's metadata.")
    local: list[str] = Field(default_factory=list, description="Task classes answered locally.")
    frontier: list[str] = Field(default_factory=list, description="Task classes sent to the frontier.")
    default: Literal["local", "frontier"] = Field("local", description="For a missing or unknown class.")

    @model_validator(mode="after")
    def _disjoint(self):
        both = sorted(set(self.local) & set(self.frontier))
        if both:
            raise ValueError(f"rules: {', '.join(both)} listed both local and frontier")
        return self


class Capacity(_Section):
    max_prompt_tokens: int = Field(ge=1, description="Longer prompts go to the frontier.")
    tokenizer: str | None = Field(None, description="Model whose chat template and tokenizer count the "
                                                    "prompt (default: the bundled model); none loaded, "
                                                    "characters ÷ 4 is the estimate.")


class Checks(_Section):
    json_valid: bool = Field(False, description="The answer must be a JSON object or array.")
    schema_: str | dict[str, Any] | None = Field(None, alias="schema", description="A JSON Schema file or "
                                                 "inline schema the answer must validate against.")
    regex: str | None = Field(None, description="The whole answer must match this regular expression.")
    required_fields: list[str] = Field(default_factory=list, description="Dotted fields the JSON answer "
                                       "must have, non-empty.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v

    @property
    def any(self) -> bool:
        return bool(self.json_valid or self.schema_ or self.regex or self.required_fields)


class Confidence(_Section):
    score: Literal["mean_logprob", "min_logprob", "min_field_logprob"] = Field(
        "mean_logprob", description="mean/min over the answer's tokens; min_field_logprob: the lowest "
                                    "mean over the tokens of one JSON field's value (mean_logprob for non-JSON).")
    threshold: float = Field(le=0, description="A score below this escalates (log-probabilities are <= 0).")


class PromptClassifier(_Section):
    model: str = Field(description="The classifier artifact (JSON from gekro-ft route "
                                   "train-classifier), relative to the profile.")
    threshold: float = Field(0.5, gt=0, lt=1,
                             description="A predicted probability of needing escalation at or "
                                         "above this sends the prompt to the frontier.")

    @field_validator("model")
    @classmethod
    def _exists(cls, v: str) -> str:
        if not Path(v).is_file():
            raise ValueError(f"no such file: {v}")
        return v


class Budget(_Section):
    usd_per_day: float = Field(gt=0, description="Frontier spend per UTC day; past it, answers stay local, marked.")


class RouteProfile(_Section):
    local: Local
    frontier: Frontier
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs api_key_env set.")
    port: int = Field(8100, ge=1, le=65535)
    api_key_env: str | None = Field(None, description="Environment variable holding the key clients "
                                                      "must send to the router.")
    tenant_header: str = Field("x-gekro-tenant", description="Header naming the tenant or feature "
                                                             "that costs are attributed to.")
    rules: Rules | None = None
    capacity: Capacity | None = None
    checks: Checks | None = None
    prompt_classifier: PromptClassifier | None = None
    confidence: Confidence | None = None
    budget: Budget | None = None
    escalation_log: str = Field("escalations.jsonl", description="Where escalations are appended "
                                "(OpenAI chat JSONL: gekro-ft data validate reads it, a recipe trains on it).")
    cost_summary: str | None = Field(None, description="A JSON file rewritten after each request: spend by "
                                                       "UTC day, tenant and upstream (default: beside the log).")

    _source: str = PrivateAttr("route profile")

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, v: str | None) -> str | None:
        return _env_name(v)

    @property
    def source(self) -> str:
        return self._source

    @property
    def needs_local_answer(self) -> bool:
        """Whether the decision waits for the whole local answer (and streams only after it)."""
        return bool((self.checks and self.checks.any) or self.confidence)

    def api_key(self, environ: dict[str, str] | None = None) -> str | None:
        import os

        return (environ or os.environ).get(self.api_key_env) or None if self.api_key_env else None

    def check_bind(self) -> None:
        """The router listens beyond this machine only with its own key."""
        if not is_loopback(self.host) and not self.api_key():
            what = f"{self.api_key_env} is not set" if self.api_key_env else "the profile names no api_key_env"
            raise RouteProfileError(self.source, [f"host: refusing to listen on {self.host} without an API key: {what}"],
                                    "set api_key_env and export it, or listen on 127.0.0.1")

    def log_path(self) -> Path:
        """The escalation log; a shipped profile's log goes to the working directory, not into
        the installed package (or the checkout's serve/route)."""
        path = Path(self.escalation_log)
        shipped_here = path.resolve().is_relative_to(shipped("serve", "route"))  # a checkout's links resolved
        return Path.cwd() / path.name if inside_package(path) or shipped_here else path

    def summary_path(self) -> Path:
        return Path(self.cost_summary) if self.cost_summary else self.log_path().with_suffix(".costs.json")


def load_route_profile(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RouteProfile:
    """Find, read, resolve paths, apply ``--set`` overrides and validate (every problem at once)."""
    profile, path = ROUTES.load(name_or_path, RouteProfile, overrides, PATH_KEYS, NO_ECHO)
    profile._source = str(path)
    return profile


def route_profile_from(doc: dict[str, Any], source: str = "route profile") -> RouteProfile:
    """A profile from a mapping (calibration builds one before writing it)."""
    profile = validate(RouteProfile, doc, source, RouteProfileError)
    profile._source = source
    return profile


def resolve_profile_paths(doc: dict[str, Any], base: Path) -> None:
    resolve_paths(doc, PATH_KEYS, base)
