"""Render TokenBudgets, ModelRoutes, their Secrets and the minted keys into a GatewayConfig.

A pure function, shared by the operator (objects from the API server) and the gateway's
standalone mode (objects from manifest files). Objects that cannot be applied produce a
`Problem` (reason + message for the object's Ready condition) and the rest still renders.

Rules, in brief:
- A ModelRoute in the shared namespace serves every namespace; elsewhere only its own. Two
  routes for the same model in one namespace: the first by name wins, the other is a problem.
- A backend whose credential Secret or key is missing is left out (problem on the route); the
  route is served by the rest. If a tier needs it, or nothing is left, the route is left out.
- A TokenBudget whose Downgrade target no route serves is still enforced, with action Block:
  failing closed protects the budget (problem DowngradeTargetNotFound on the budget).
- API keys are kept only while the TokenBudget that minted them exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr, ValidationError

from llmbudget_gateway.contract.config import (
    ApiKey,
    Backend,
    Breaker,
    Budget,
    GatewayConfig,
    Limit,
    Pricing,
    RateLimit,
    Retry,
    Route,
    Tier,
)
from llmbudget_gateway.contract.durations import parse_duration
from llmbudget_gateway.contract.errors import issues_from_validation
from llmbudget_gateway.contract.specs import (
    Action,
    BackendSpec,
    ModelRouteSpec,
    RateLimitSpec,
    TokenBudgetSpec,
)

DEFAULT_SHARED_NAMESPACE = "llmbudget-system"


@dataclass(frozen=True, order=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resource:
    """A TokenBudget or ModelRoute as read from the API server or a file."""

    ref: ObjectRef
    spec: Mapping[str, Any]
    generation: int = 0
    source: str = ""  # the file it came from, for error messages in standalone mode


@dataclass(frozen=True)
class MintedKey:
    """A client API key the operator minted (or a key Secret read from a file), by hash."""

    namespace: str
    budget: str
    name: str
    sha256: str
    not_after: datetime | None = None

    @staticmethod
    def hash_key(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Why an object (or part of it) cannot be applied: goes into its Ready condition."""

    ref: ObjectRef
    reason: str
    message: str


@dataclass(frozen=True)
class BackendStatus:
    name: str
    ready: bool
    reason: str = ""
    message: str = ""


@dataclass
class Rendered:
    config: GatewayConfig
    problems: list[Problem] = field(default_factory=list)
    backends: dict[ObjectRef, list[BackendStatus]] = field(default_factory=dict)

    def problems_of(self, ref: ObjectRef) -> list[Problem]:
        return [problem for problem in self.problems if problem.ref == ref]


Secrets = Mapping[tuple[str, str], Mapping[str, str]]
"""(namespace, secret name) -> decoded string data."""


def render(
    budgets: Iterable[Resource],
    routes: Iterable[Resource],
    secrets: Secrets,
    keys: Iterable[MintedKey] = (),
    shared_namespace: str = DEFAULT_SHARED_NAMESPACE,
) -> Rendered:
    problems: list[Problem] = []
    backend_status: dict[ObjectRef, list[BackendStatus]] = {}
    rendered_routes = _render_routes(routes, secrets, shared_namespace, problems, backend_status)
    rendered_budgets = _render_budgets(budgets, rendered_routes, secrets, problems)
    live = {(budget.namespace, budget.name) for budget in rendered_budgets}
    rendered_keys = [
        ApiKey(
            sha256=key.sha256,
            namespace=key.namespace,
            name=key.name,
            budget=key.budget,
            not_after=key.not_after,
        )
        for key in sorted(keys, key=lambda k: (k.namespace, k.budget, k.name, k.sha256))
        if (key.namespace, key.budget) in live
    ]
    config = GatewayConfig(budgets=rendered_budgets, routes=rendered_routes, keys=rendered_keys)
    return Rendered(config=config, problems=problems, backends=backend_status)


def _spec_problem(resource: Resource, error: ValidationError) -> Problem:
    issues = issues_from_validation(error, resource.source or str(resource.ref), prefix="spec")
    message = "; ".join(f"{issue.field}: {issue.reason}" for issue in issues)
    return Problem(resource.ref, "InvalidSpec", message)


def _render_routes(
    routes: Iterable[Resource],
    secrets: Secrets,
    shared_namespace: str,
    problems: list[Problem],
    backend_status: dict[ObjectRef, list[BackendStatus]],
) -> list[Route]:
    rendered: list[Route] = []
    claimed: dict[tuple[str, str], ObjectRef] = {}
    for resource in sorted(routes, key=lambda r: r.ref):
        try:
            spec = ModelRouteSpec.model_validate(resource.spec)
        except ValidationError as error:
            problems.append(_spec_problem(resource, error))
            continue
        ns = resource.ref.namespace
        if (ns, spec.model) in claimed:
            problems.append(
                Problem(
                    resource.ref,
                    "DuplicateModel",
                    f"model {spec.model!r} is already served in namespace {ns!r} by "
                    f"ModelRoute {claimed[ns, spec.model].name}",
                )
            )
            continue
        statuses = [_resolve_backend(ns, b, spec.model, secrets) for b in spec.backends]
        backend_status[resource.ref] = [status for status, _ in statuses]
        usable = {b.name: b for (_, b) in statuses if b is not None}
        for status, _ in statuses:
            if not status.ready:
                problems.append(Problem(resource.ref, status.reason, status.message))
        missing_tiers = [tier.backend for tier in spec.tiers if tier.backend not in usable]
        serving = [b for b in usable.values() if spec.tiers or b.weight > 0]
        if missing_tiers or not serving:
            problems.append(
                Problem(
                    resource.ref,
                    "NoUsableBackend",
                    "route not served: "
                    + (
                        f"tier backend(s) {sorted(set(missing_tiers))} unresolved"
                        if missing_tiers
                        else "no backend with weight > 0 resolved"
                    ),
                )
            )
            continue
        claimed[ns, spec.model] = resource.ref
        rendered.append(
            Route(
                namespace=ns,
                name=resource.ref.name,
                model=spec.model,
                shared=ns == shared_namespace,
                backends=list(usable.values()),
                tiers=[
                    Tier(name=t.name, backend=t.backend, max_score=t.max_score) for t in spec.tiers
                ],
                fallbacks=[name for name in spec.fallbacks if name in usable],
                retry=Retry(
                    attempts=spec.retry.attempts,
                    initial_backoff_seconds=parse_duration(spec.retry.initial_backoff),
                    max_backoff_seconds=parse_duration(spec.retry.max_backoff),
                ),
                cache_ttl_seconds=parse_duration(spec.cache.ttl) if spec.cache.ttl else 0.0,
            )
        )
    return rendered


def _resolve_backend(
    namespace: str, spec: BackendSpec, route_model: str, secrets: Secrets
) -> tuple[BackendStatus, Backend | None]:
    api_key: SecretStr | None = None
    ref = spec.credential_secret_ref
    if ref is not None:
        data = secrets.get((namespace, ref.name))
        if data is None:
            return BackendStatus(
                spec.name,
                False,
                "SecretNotFound",
                f"backend {spec.name}: Secret {namespace}/{ref.name} not found",
            ), None
        if not data.get(ref.key):
            return BackendStatus(
                spec.name,
                False,
                "SecretKeyNotFound",
                f"backend {spec.name}: Secret {namespace}/{ref.name} has no key {ref.key!r}",
            ), None
        api_key = SecretStr(data[ref.key])
    pricing = None
    if spec.pricing is not None:
        pricing = Pricing(**spec.pricing.model_dump())
    backend = Backend(
        name=spec.name,
        provider=spec.provider,
        base_url=spec.base_url,
        model=spec.model or route_model,
        api_key=api_key,
        weight=spec.weight,
        pricing=pricing,
        timeout_seconds=parse_duration(spec.timeout),
    )
    return BackendStatus(spec.name, True), backend


def _render_budgets(
    budgets: Iterable[Resource],
    routes: list[Route],
    secrets: Secrets,
    problems: list[Problem],
) -> list[Budget]:
    rendered: list[Budget] = []
    for resource in sorted(budgets, key=lambda r: r.ref):
        try:
            spec = TokenBudgetSpec.model_validate(resource.spec)
        except ValidationError as error:
            problems.append(_spec_problem(resource, error))
            continue
        ns = resource.ref.namespace
        action = spec.on_exceeded.action
        downgrade_to = spec.on_exceeded.downgrade_to
        if action is Action.DOWNGRADE and not any(
            route.model == downgrade_to and (route.shared or route.namespace == ns)
            for route in routes
        ):
            problems.append(
                Problem(
                    resource.ref,
                    "DowngradeTargetNotFound",
                    f"onExceeded.downgradeTo: no ModelRoute serves model {downgrade_to!r} to "
                    f"namespace {ns!r}; enforcing Block until one does",
                )
            )
            action, downgrade_to = Action.BLOCK, None
        for webhook in spec.alerts.webhooks:
            data = secrets.get((ns, webhook.url_secret_ref.name))
            if data is None or not data.get(webhook.url_secret_ref.key):
                problems.append(
                    Problem(
                        resource.ref,
                        "WebhookSecretNotFound",
                        f"alerts.webhooks[{webhook.name}]: Secret "
                        f"{ns}/{webhook.url_secret_ref.name} with key "
                        f"{webhook.url_secret_ref.key!r} not found",
                    )
                )
        breaker = None
        if spec.circuit_breaker is not None:
            breaker = Breaker(
                tokens_per_hour=spec.circuit_breaker.tokens_per_hour,
                cooldown_seconds=parse_duration(spec.circuit_breaker.cooldown),
                half_open_probes=spec.circuit_breaker.half_open_probes,
            )
        rendered.append(
            Budget(
                namespace=ns,
                name=resource.ref.name,
                limits=[
                    Limit(period=lim.period, amount_usd=lim.amount, tokens=lim.tokens)
                    for lim in spec.limits
                ],
                timezone=spec.timezone,
                scope=dict(spec.scope.tags),
                thresholds=list(spec.alerts.thresholds),
                action=action,
                downgrade_to=downgrade_to,
                downgrade_at_percent=spec.on_exceeded.downgrade_at_percent,
                breaker=breaker,
                rate_limit=_rate_limit(spec.rate_limit),
            )
        )
    return rendered


def _rate_limit(spec: RateLimitSpec | None) -> RateLimit | None:
    if spec is None:
        return None
    burst = spec.burst or max(spec.requests_per_minute // 6, 1)
    return RateLimit(requests_per_minute=spec.requests_per_minute, burst=burst)
