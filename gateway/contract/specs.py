"""The `spec` of the TokenBudget and ModelRoute custom resources, as typed models.

These mirror `crds/*.yaml` field by field (a test keeps them in sync) and repeat the API
server's validation, so that manifests read from files in standalone mode are held to the same
rules as objects a real API server accepted. Defaults equal the CRDs' defaults.
"""

from __future__ import annotations

import re
import zoneinfo
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmbudget_gateway.contract.durations import Duration, PositiveDuration
from llmbudget_gateway.contract.money import USD, PricePerMillion

DnsLabel = Annotated[str, Field(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
SecretName = Annotated[str, Field(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
SecretKey = Annotated[str, Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
ModelName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
]


def known_timezone(timezone: str) -> str:
    """The name itself if it is an IANA time zone this machine knows, else ValueError."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {timezone!r}") from None
    return timezone


Timezone = Annotated[str, Field(max_length=64), AfterValidator(known_timezone)]
TAG_NAMES = ("project", "user", "session", "environment", "costCenter")
TagName = Literal["project", "user", "session", "environment", "costCenter"]


class SpecModel(BaseModel):
    """camelCase field names as in the CRDs; unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Period(StrEnum):
    HOURLY = "Hourly"
    DAILY = "Daily"
    WEEKLY = "Weekly"
    MONTHLY = "Monthly"


class Action(StrEnum):
    BLOCK = "Block"
    DOWNGRADE = "Downgrade"
    ALERT_ONLY = "AlertOnly"


class WebhookFormat(StrEnum):
    SLACK = "Slack"
    DISCORD = "Discord"
    MICROSOFT_TEAMS = "MicrosoftTeams"
    DINGTALK = "DingTalk"
    GENERIC_JSON = "GenericJSON"


class Provider(StrEnum):
    OPENAI = "OpenAI"
    ANTHROPIC = "Anthropic"


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


class LimitSpec(SpecModel):
    period: Period
    amount: USD | None = None
    tokens: Annotated[int, Field(ge=1)] | None = None

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: USD | None) -> USD | None:
        if amount is not None and amount <= 0:
            raise ValueError("amount must be greater than zero")
        return amount

    @model_validator(mode="after")
    def _amount_or_tokens(self) -> LimitSpec:
        if self.amount is None and self.tokens is None:
            raise ValueError("a limit needs amount (USD), tokens, or both")
        return self


class ScopeSpec(SpecModel):
    tags: dict[TagName, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=dict
    )


class SecretKeyRef(SpecModel):
    name: SecretName
    key: SecretKey


class WebhookUrlRef(SecretKeyRef):
    key: SecretKey = "url"


class CredentialRef(SecretKeyRef):
    key: SecretKey = "apiKey"


class WebhookSpec(SpecModel):
    name: DnsLabel
    format: WebhookFormat
    url_secret_ref: WebhookUrlRef


class AlertsSpec(SpecModel):
    thresholds: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [50, 75, 90, 100], max_length=10
    )
    webhooks: list[WebhookSpec] = Field(default_factory=list, max_length=8)

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, thresholds: list[int]) -> list[int]:
        if any(a >= b for a, b in pairwise(thresholds)):
            raise ValueError("alerts.thresholds must be unique and in ascending order")
        return thresholds

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, webhooks: list[WebhookSpec]) -> list[WebhookSpec]:
        _unique([w.name for w in webhooks], "webhook name")
        return webhooks


class OnExceededSpec(SpecModel):
    action: Action = Action.BLOCK
    downgrade_to: ModelName | None = None
    downgrade_at_percent: Annotated[int, Field(ge=1, le=100)] = 100

    @model_validator(mode="after")
    def _downgrade_target(self) -> OnExceededSpec:
        if self.action is Action.DOWNGRADE and self.downgrade_to is None:
            raise ValueError(
                "onExceeded.downgradeTo is required when onExceeded.action is Downgrade"
            )
        if self.action is not Action.DOWNGRADE and self.downgrade_to is not None:
            raise ValueError(
                "onExceeded.downgradeTo is only allowed when onExceeded.action is Downgrade"
            )
        return self


class CircuitBreakerSpec(SpecModel):
    tokens_per_hour: Annotated[int, Field(ge=1)]
    cooldown: PositiveDuration = "5m"
    half_open_probes: Annotated[int, Field(ge=1, le=100)] = 1


class RateLimitSpec(SpecModel):
    requests_per_minute: Annotated[int, Field(ge=1, le=1_000_000)]
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class RotationSpec(SpecModel):
    every: PositiveDuration | None = None
    grace_period: Duration = "1h"


class ApiKeySpec(SpecModel):
    name: DnsLabel
    secret_name: SecretName | None = None
    rotation: RotationSpec | None = None


class TokenBudgetSpec(SpecModel):
    limits: Annotated[list[LimitSpec], Field(min_length=1, max_length=4)]
    timezone: Timezone = "UTC"
    scope: ScopeSpec = Field(default_factory=ScopeSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    on_exceeded: OnExceededSpec = Field(default_factory=OnExceededSpec)
    circuit_breaker: CircuitBreakerSpec | None = None
    rate_limit: RateLimitSpec | None = None
    api_keys: list[ApiKeySpec] = Field(default_factory=list, max_length=16)

    @field_validator("limits")
    @classmethod
    def _one_per_period(cls, limits: list[LimitSpec]) -> list[LimitSpec]:
        _unique([limit.period.value for limit in limits], "limit period")
        return limits

    @field_validator("api_keys")
    @classmethod
    def _unique_keys(cls, keys: list[ApiKeySpec]) -> list[ApiKeySpec]:
        _unique([key.name for key in keys], "apiKeys name")
        return keys


class PricingSpec(SpecModel):
    input: PricePerMillion
    cached_input: PricePerMillion | None = None
    cache_write: PricePerMillion | None = None
    output: PricePerMillion
    reasoning: PricePerMillion | None = None


_URL = re.compile(r"^https?://[^/\s?#]+[^\s]*$")


class BackendSpec(SpecModel):
    name: DnsLabel
    provider: Provider
    base_url: Annotated[str, Field(alias="baseURL", max_length=512)]
    model: ModelName | None = None
    credential_secret_ref: CredentialRef | None = None
    weight: Annotated[int, Field(ge=0, le=10000)] = 1
    pricing: PricingSpec | None = None
    timeout: PositiveDuration = "60s"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not _URL.match(url):
            raise ValueError("baseURL must be an absolute http or https URL")
        return url


class TierSpec(SpecModel):
    name: DnsLabel
    backend: Annotated[str, Field(max_length=63)]
    max_score: Annotated[int, Field(ge=0, le=100)] | None = None


class RetrySpec(SpecModel):
    attempts: Annotated[int, Field(ge=0, le=10)] = 2
    initial_backoff: Duration = "250ms"
    max_backoff: Duration = "10s"


class CacheSpec(SpecModel):
    ttl: Duration | None = None


class ModelRouteSpec(SpecModel):
    model: ModelName
    backends: Annotated[list[BackendSpec], Field(min_length=1, max_length=16)]
    tiers: list[TierSpec] = Field(default_factory=list, max_length=8)
    fallbacks: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16
    )
    retry: RetrySpec = Field(default_factory=RetrySpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)

    @model_validator(mode="after")
    def _references(self) -> ModelRouteSpec:
        names = [backend.name for backend in self.backends]
        _unique(names, "backend name")
        _unique([tier.name for tier in self.tiers], "tier name")
        _unique(self.fallbacks, "fallback")
        for tier in self.tiers:
            if tier.backend not in names:
                raise ValueError(
                    f"spec.tiers[].backend must name a backend in spec.backends ({tier.backend!r})"
                )
        for fallback in self.fallbacks:
            if fallback not in names:
                raise ValueError(
                    f"spec.fallbacks[] must name backends in spec.backends ({fallback!r})"
                )
        if not self.tiers and not any(backend.weight > 0 for backend in self.backends):
            raise ValueError(
                "spec.backends[].weight must be greater than zero for at least one backend"
            )
        scores = [tier.max_score for tier in self.tiers[:-1]]
        if any(score is None for score in scores):
            raise ValueError("spec.tiers[].maxScore is required on every tier but the last")
        if any(a >= b for a, b in pairwise(scores)):  # type: ignore[operator]
            raise ValueError("spec.tiers[].maxScore must increase from tier to tier")
        return self
