"""The price table: API prices per 1M tokens and GPU prices per hour, each dated and sourced.

The shipped table is ``serve/prices.yaml``; a user file given with ``--prices`` replaces
shipped entries by name and adds new ones.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gekro_ft.config import describe, read_yaml, shipped
from gekro_ft.errors import PriceError

SHIPPED = shipped("serve", "prices.yaml")


class _Dated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: dt.date = Field(description="When the price was read.")
    source: str = Field(min_length=8, description="The public page it was read from.")


class RateLimit(BaseModel):
    """What one usage tier of an API lets through per minute (the provider's published limits)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_min: float = Field(gt=0)
    tokens_per_min: float = Field(gt=0, description="Input + output tokens per minute (OpenAI's TPM); "
                                                     "for providers that split them, the input limit.")
    output_tokens_per_min: float | None = Field(None, gt=0, description="A separate output-token limit "
                                                                          "where the provider has one.")


class ApiPrice(_Dated):
    input_per_m: float = Field(ge=0, description="US$ per 1M input tokens, standard tier.")
    output_per_m: float = Field(gt=0, description="US$ per 1M output tokens, standard tier.")
    cached_input_per_m: float | None = Field(None, ge=0, description="US$ per 1M input tokens read from "
                                                                       "the provider's prompt cache; absent = no discount.")
    batch_input_per_m: float | None = Field(None, ge=0, description="US$ per 1M input tokens through the "
                                                                      "provider's batch API; absent = no batch tier.")
    batch_output_per_m: float | None = Field(None, gt=0)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict,
                                              description="Per usage tier (e.g. tier-1): what bounds an API's wall clock.")
    ask: str | None = Field(None, description="PROVIDER:MODEL (openai:gpt-4o-mini, anthropic:claude-3-5-haiku-20241022): "
                                              "where `gekro-ft batch estimate` sends its sample when the provider's "
                                              "key variable is set (OPENAI_API_KEY, ANTHROPIC_API_KEY).")

    @field_validator("ask")
    @classmethod
    def _provider_model(cls, v: str | None) -> str | None:
        from gekro_ft.keys import PROVIDER_ENDPOINTS

        provider, _, model = (v or "").partition(":")
        if v is not None and (provider not in PROVIDER_ENDPOINTS or not model.strip()):
            raise ValueError(f"give PROVIDER:MODEL with PROVIDER one of {', '.join(PROVIDER_ENDPOINTS)}")
        return v

    @model_validator(mode="after")
    def _batch_pair(self):
        if (self.batch_input_per_m is None) != (self.batch_output_per_m is None):
            raise ValueError("give both batch_input_per_m and batch_output_per_m, or neither")
        return self

    @property
    def has_batch(self) -> bool:
        return self.batch_output_per_m is not None

    def bill(self, input_tokens: float, output_tokens: float, *, cached_input_tokens: float = 0,
             batch: bool = False) -> float:
        """US$ for this many tokens: cached input at the cache rate (where there is one), the
        rest of the input and the output at the standard or the batch rate."""
        if batch and not self.has_batch:
            raise PriceError("this API has no batch tier in the price table")
        if not 0 <= cached_input_tokens <= input_tokens:
            raise PriceError(f"cached input tokens ({cached_input_tokens:g}) must lie within the input "
                             f"tokens ({input_tokens:g})")
        in_rate, out_rate = ((self.batch_input_per_m, self.batch_output_per_m) if batch
                             else (self.input_per_m, self.output_per_m))
        # Providers do not stack the batch discount on cache hits in any documented way we rely on:
        # cache pricing applies to the standard tier only.
        cached_rate = self.cached_input_per_m if (self.cached_input_per_m is not None and not batch) else in_rate
        return ((input_tokens - cached_input_tokens) * in_rate + cached_input_tokens * cached_rate
                + output_tokens * out_rate) / 1e6


class GpuPrice(_Dated):
    hourly_low: float = Field(gt=0, description="US$ per GPU-hour, the cheaper end of what providers charge.")
    hourly_high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.hourly_high < self.hourly_low:
            raise ValueError("hourly_high is below hourly_low")
        return self


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api: dict[str, ApiPrice] = Field(default_factory=dict)
    gpu: dict[str, GpuPrice] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list, exclude=True)

    def api_price(self, name: str) -> ApiPrice:
        return _lookup(self.api, name, "API")

    def gpu_price(self, name: str) -> GpuPrice:
        return _lookup(self.gpu, name, "GPU")


def _lookup(entries: dict, name: str, kind: str):
    key = name.lower()
    if key not in entries:
        raise PriceError(f"no {kind} price for {name!r} in the price table",
                         hint=f"known: {', '.join(sorted(entries))}; add yours with --prices FILE")
    return entries[key]


def _read(path: Path) -> dict:
    """The table in ``path``, through the reader every config file goes through (its guards included)."""
    if not path.exists():
        raise PriceError(f"price table {path} does not exist")
    return read_yaml(path, lambda problem: PriceError(f"{path}: {problem}")).doc


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The shipped table, with ``path``'s entries replacing or adding to it."""
    merged: dict[str, dict] = {"api": {}, "gpu": {}}
    sources = [SHIPPED] + ([Path(path)] if path else [])
    for src in sources:
        doc = _read(src)
        unknown = set(doc) - {"api", "gpu"}
        if unknown:
            raise PriceError(f"{src}: unknown section(s) {', '.join(sorted(unknown))} (use api: and gpu:)")
        for section in ("api", "gpu"):
            merged[section].update({str(k).lower(): v for k, v in (doc.get(section) or {}).items()})
    try:
        table = PriceTable.model_validate(merged)
    except ValidationError as e:
        problems = [describe(err, PriceTable) for err in e.errors()]
        raise PriceError(f"{' + '.join(map(str, sources))}: " + "; ".join(problems)) from None
    table.sources = [str(s) for s in sources]
    return table


def gpu_hourly(table: PriceTable, gpu: str) -> tuple[float, str]:
    """The $/h a machine from the table is priced at (the low end of its range), and a note
    saying where that figure comes from."""
    p = table.gpu_price(gpu)
    span = f"{p.hourly_low:g}" + (f"–{p.hourly_high:g}" if p.hourly_high != p.hourly_low else "")
    return p.hourly_low, f"price table: ${span}/h as of {p.as_of}, {p.source}; the low end is used"
