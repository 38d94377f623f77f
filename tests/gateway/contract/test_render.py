"""render(): CR specs + Secrets + minted keys -> GatewayConfig, with problems per object."""

from __future__ import annotations

from typing import Any

from llmbudget_gateway.contract import MintedKey, ObjectRef, Resource, render
from llmbudget_gateway.contract.manifests import read_manifests
from llmbudget_gateway.contract.specs import Action
from tests.conftest import EXAMPLES
from tests.gateway.contract.golden import assert_golden

SYSTEM = "llmbudget-system"


def budget(ns: str, name: str, **spec: Any) -> Resource:
    spec.setdefault("limits", [{"period": "Monthly", "amount": "100"}])
    return Resource(ObjectRef("TokenBudget", ns, name), spec)


def route(ns: str, name: str, model: str, *backends: dict[str, Any], **spec: Any) -> Resource:
    spec.update(model=model, backends=list(backends) or [backend("main")])
    return Resource(ObjectRef("ModelRoute", ns, name), spec)


def backend(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "OpenAI", "baseURL": "https://up.example/v1", **extra}


def test_examples_render_to_the_golden_config() -> None:
    found = read_manifests(EXAMPLES)
    rendered = render(found.budgets, found.routes, found.secrets, found.keys)
    assert rendered.problems == []
    assert_golden("examples.config.json", rendered.config.to_json())


def test_rendering_is_deterministic_whatever_the_input_order() -> None:
    found = read_manifests(EXAMPLES)
    one = render(found.budgets, found.routes, found.secrets)
    two = render(reversed(found.budgets), reversed(found.routes), found.secrets)
    assert one.config.to_json() == two.config.to_json()
    assert one.config.revision == two.config.revision


def test_shared_routes_are_marked_and_backend_model_defaults_to_route_model() -> None:
    rendered = render([], [route(SYSTEM, "a", "gpt-4.1"), route("team", "b", "local-llm")], {})
    by_model = {r.model: r for r in rendered.config.routes}
    assert by_model["gpt-4.1"].shared and not by_model["local-llm"].shared
    assert by_model["gpt-4.1"].backends[0].model == "gpt-4.1"


def test_missing_credential_secret_drops_the_backend_and_reports_it() -> None:
    ref = {"credentialSecretRef": {"name": "creds", "key": "apiKey"}}
    routes = [route("team", "r", "m", backend("ok"), backend("broken", **ref))]
    rendered = render([], routes, {})
    assert [b.name for b in rendered.config.routes[0].backends] == ["ok"]
    problems = rendered.problems_of(ObjectRef("ModelRoute", "team", "r"))
    assert [(p.reason, p.message) for p in problems] == [
        ("SecretNotFound", "backend broken: Secret team/creds not found")
    ]
    statuses = rendered.backends[ObjectRef("ModelRoute", "team", "r")]
    assert [(s.name, s.ready) for s in statuses] == [("ok", True), ("broken", False)]


def test_secret_without_the_key_is_reported_and_the_value_never_leaks() -> None:
    ref = {"credentialSecretRef": {"name": "creds", "key": "apiKey"}}
    secrets = {("team", "creds"): {"token": "sk-very-secret"}}
    rendered = render([], [route("team", "r", "m", backend("b", **ref))], secrets)
    assert rendered.config.routes == []
    reasons = [p.reason for p in rendered.problems]
    assert reasons == ["SecretKeyNotFound", "NoUsableBackend"]
    assert "sk-very-secret" not in repr(rendered)


def test_resolved_credentials_are_in_the_config_but_not_in_its_repr() -> None:
    ref = {"credentialSecretRef": {"name": "creds", "key": "apiKey"}}
    secrets = {("team", "creds"): {"apiKey": "sk-very-secret"}}
    rendered = render([], [route("team", "r", "m", backend("b", **ref))], secrets)
    assert "sk-very-secret" in rendered.config.to_json()  # it is written to a Secret
    assert "sk-very-secret" not in repr(rendered.config)
    assert "sk-very-secret" not in str(rendered.config.model_dump())


def test_tier_on_an_unresolved_backend_leaves_the_route_out() -> None:
    ref = {"credentialSecretRef": {"name": "missing"}}
    spec_tiers = [
        {"name": "simple", "backend": "cheap", "maxScore": 30},
        {"name": "complex", "backend": "big"},
    ]
    r = route("team", "auto", "auto", backend("cheap", **ref), backend("big"), tiers=spec_tiers)
    rendered = render([], [r], {})
    assert rendered.config.routes == []
    assert rendered.problems[-1].reason == "NoUsableBackend"


def test_two_routes_for_one_model_in_a_namespace_first_by_name_wins() -> None:
    rendered = render([], [route("team", "zeta", "m"), route("team", "alpha", "m")], {})
    assert [r.name for r in rendered.config.routes] == ["alpha"]
    assert rendered.problems[0].ref.name == "zeta"
    assert rendered.problems[0].reason == "DuplicateModel"


def test_downgrade_to_an_unserved_model_is_enforced_as_block() -> None:
    b = budget("team", "b", onExceeded={"action": "Downgrade", "downgradeTo": "cheap"})
    rendered = render([b], [], {})
    assert rendered.config.budgets[0].action is Action.BLOCK
    assert rendered.problems[0].reason == "DowngradeTargetNotFound"
    # A route in another team's namespace does not serve this namespace either.
    rendered = render([b], [route("other", "r", "cheap")], {})
    assert rendered.config.budgets[0].action is Action.BLOCK
    # A shared one does.
    rendered = render([b], [route(SYSTEM, "r", "cheap")], {})
    assert rendered.config.budgets[0].action is Action.DOWNGRADE
    assert rendered.config.budgets[0].downgrade_to == "cheap"
    assert rendered.problems == []


def test_invalid_spec_is_a_problem_and_the_rest_still_renders() -> None:
    bad = budget("team", "bad", limits=[{"period": "Daily", "amount": "0"}])
    good = budget("team", "good")
    rendered = render([bad, good], [], {})
    assert [b.name for b in rendered.config.budgets] == ["good"]
    (problem,) = rendered.problems
    assert problem.reason == "InvalidSpec"
    assert problem.message == "spec.limits[0].amount: amount must be greater than zero"


def test_missing_webhook_secret_is_reported_but_the_budget_is_enforced() -> None:
    hooks = {"webhooks": [{"name": "w", "format": "Slack", "urlSecretRef": {"name": "hook"}}]}
    rendered = render([budget("team", "b", alerts=hooks)], [], {})
    assert len(rendered.config.budgets) == 1
    assert rendered.problems[0].reason == "WebhookSecretNotFound"


def test_keys_of_deleted_budgets_are_revoked() -> None:
    keys = [
        MintedKey("team", "kept", "default", MintedKey.hash_key("sk-1")),
        MintedKey("team", "deleted", "default", MintedKey.hash_key("sk-2")),
    ]
    rendered = render([budget("team", "kept")], [], {}, keys)
    assert [k.sha256 for k in rendered.config.keys] == [MintedKey.hash_key("sk-1")]
    assert "sk-1" not in rendered.config.to_json()


def test_durations_become_seconds() -> None:
    b = budget("team", "b", circuitBreaker={"tokensPerHour": 10, "cooldown": "1h30m"})
    r = route(
        "team",
        "r",
        "m",
        backend("b", timeout="1500ms"),
        retry={"initialBackoff": "100ms", "maxBackoff": "2s"},
        cache={"ttl": "5m"},
    )
    config = render([b], [r], {}).config
    assert config.budgets[0].breaker is not None
    assert config.budgets[0].breaker.cooldown_seconds == 5400
    assert config.routes[0].backends[0].timeout_seconds == 1.5
    assert config.routes[0].retry.initial_backoff_seconds == 0.1
    assert config.routes[0].cache_ttl_seconds == 300
