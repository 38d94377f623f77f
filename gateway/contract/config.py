"""The gateway config contract, version 1: everything the data plane needs, as plain data.

The operator renders it from TokenBudgets, ModelRoutes, their Secrets and the keys it minted,
and writes it to a Secret the gateway mounts; in standalone mode the gateway renders it itself
from manifest files. It holds no Kubernetes types. Provider API keys are in it (it lives in a
Secret), client API keys only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from llmbudget_gateway.contract.money import USD, PricePerMillion
from llmbudget_gateway.contract.specs import (
    Action,
    DnsLabel,
    ModelName,
    Period,
    Provider,
    TagName,
    Timezone,
)

CONFIG_VERSION: Literal[1] = 1
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ContractModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Limit(ContractModel):
    period: Period
    amount_usd: USD | None = None
    tokens: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Limit:
        if self.amount_usd is None and self.tokens is None:
            raise ValueError("a limit needs amountUsd, tokens, or both")
        if self.amount_usd is not None and self.amount_usd <= 0:
            raise ValueError("amountUsd must be greater than zero")
        return self


class Breaker(ContractModel):
    tokens_per_hour: Annotated[int, Field(ge=1)]
    cooldown_seconds: Annotated[float, Field(gt=0)]
    half_open_probes: Annotated[int, Field(ge=1)]


class RateLimit(ContractModel):
    """Requests per key: a token bucket of `burst` refilled at `requests_per_minute`."""

    requests_per_minute: Annotated[int, Field(ge=1)]
    burst: Annotated[int, Field(ge=1)]


class Budget(ContractModel):
    """One TokenBudget, as enforced by the gateway."""

    namespace: DnsLabel
    name: Annotated[str, Field(min_length=1, max_length=253)]
    limits: Annotated[list[Limit], Field(min_length=1)]
    timezone: Timezone = "UTC"
    scope: dict[TagName, str] = Field(default_factory=dict)
    thresholds: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [50, 75, 90, 100]
    )
    action: Action = Action.BLOCK
    downgrade_to: ModelName | None = None
    downgrade_at_percent: Annotated[int, Field(ge=1, le=100)] = 100
    breaker: Breaker | None = None
    rate_limit: RateLimit | None = None  # per API key of the budget

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class ApiKey(ContractModel):
    """A client API key, by hash. The key itself never leaves the Secret it was written to."""

    sha256: Sha256Hex
    namespace: DnsLabel
    name: Annotated[str, Field(min_length=1, max_length=253)]
    budget: str | None = None
    not_after: datetime | None = None


class Pricing(ContractModel):
    """USD per million tokens."""

    input: PricePerMillion
    cached_input: PricePerMillion | None = None
    cache_write: PricePerMillion | None = None
    output: PricePerMillion
    reasoning: PricePerMillion | None = None


class Backend(ContractModel):
    name: DnsLabel
    provider: Provider
    base_url: Annotated[str, Field(alias="baseURL", pattern=r"^https?://[^/\s?#]+\S*$")]
    model: ModelName
    api_key: SecretStr | None = None
    weight: Annotated[int, Field(ge=0)] = 1
    pricing: Pricing | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0

    @field_serializer("api_key", when_used="json")
    def _reveal_for_the_secret(self, api_key: SecretStr | None) -> str | None:
        # Serialized only into the rendered config Secret; repr() and logs show "**********".
        return api_key.get_secret_value() if api_key is not None else None


class Tier(ContractModel):
    name: DnsLabel
    backend: DnsLabel
    max_score: Annotated[int, Field(ge=0, le=100)] | None = None


class Retry(ContractModel):
    attempts: Annotated[int, Field(ge=0, le=10)] = 2
    initial_backoff_seconds: Annotated[float, Field(ge=0)] = 0.25
    max_backoff_seconds: Annotated[float, Field(ge=0)] = 10.0


class Route(ContractModel):
    """One ModelRoute. Shared routes serve every namespace; others only their own."""

    namespace: DnsLabel
    name: Annotated[str, Field(min_length=1, max_length=253)]
    model: ModelName
    shared: bool = False
    backends: Annotated[list[Backend], Field(min_length=1)]
    tiers: list[Tier] = Field(default_factory=list)
    fallbacks: list[DnsLabel] = Field(default_factory=list)
    retry: Retry = Field(default_factory=Retry)
    cache_ttl_seconds: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _references(self) -> Route:
        names = {backend.name for backend in self.backends}
        if len(names) != len(self.backends):
            raise ValueError("backend names must be unique")
        for ref in [tier.backend for tier in self.tiers] + list(self.fallbacks):
            if ref not in names:
                raise ValueError(f"{ref!r} is not a backend of this route")
        if not self.tiers and not any(backend.weight > 0 for backend in self.backends):
            raise ValueError("at least one backend needs a weight greater than zero")
        return self


class GatewayConfig(ContractModel):
    """The whole rendered config. `revision` identifies its content."""

    version: Literal[1] = CONFIG_VERSION
    budgets: list[Budget] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    keys: list[ApiKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        budgets = [budget.key for budget in self.budgets]
        if len(set(budgets)) != len(budgets):
            raise ValueError("budgets must be unique by namespace/name")
        routes = [(route.namespace, route.model) for route in self.routes]
        if len(set(routes)) != len(routes):
            raise ValueError("routes must be unique by namespace and model")
        hashes = [key.sha256 for key in self.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("API key hashes must be unique")
        return self

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): what the operator writes to the Secret."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def revision(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
