"""The spec models repeat the CRDs: same fields, same defaults' effect, same rejections."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from llmbudget_gateway.contract.errors import issues_from_validation
from llmbudget_gateway.contract.specs import ModelRouteSpec, TokenBudgetSpec
from tests.crds.invalid_cases import CASES, Case

CRDS = Path(__file__).resolve().parents[3] / "crds"
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "TokenBudget": TokenBudgetSpec,
    "ModelRoute": ModelRouteSpec,
}


def crd_spec_schema(kind: str) -> dict[str, Any]:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema["properties"]["spec"]  # type: ignore[no-any-return]
    raise AssertionError(f"no CRD for {kind}")


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside Optional[...], list[...], Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def compare(schema: dict[str, Any], model: type[BaseModel], path: str) -> list[str]:
    differences = []
    aliases = {(f.alias or name): f for name, f in model.model_fields.items()}
    properties = schema.get("properties", {})
    for name in set(properties) - set(aliases):
        differences.append(f"{path}.{name}: in the CRD, not in {model.__name__}")
    for name in set(aliases) - set(properties):
        differences.append(f"{path}.{name}: in {model.__name__}, not in the CRD")
    for name in set(properties) & set(aliases):
        prop = properties[name]
        sub = prop.get("items", prop)
        nested = model_in(aliases[name].annotation)
        if "properties" in sub:
            if nested is None:
                differences.append(f"{path}.{name}: an object in the CRD, not a model")
            else:
                differences += compare(sub, nested, f"{path}.{name}")
        required = name in schema.get("required", [])
        if required != aliases[name].is_required():
            differences.append(f"{path}.{name}: required={required} in the CRD")
    return differences


@pytest.mark.parametrize("kind", sorted(SPEC_MODELS))
def test_spec_models_mirror_the_crds(kind: str) -> None:
    assert compare(crd_spec_schema(kind), SPEC_MODELS[kind], "spec") == []


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_standalone_validation_rejects_what_the_apiserver_rejects(case: Case) -> None:
    with pytest.raises(ValidationError) as caught:
        SPEC_MODELS[case.kind].model_validate(case.spec)
    issues = issues_from_validation(caught.value, "f.yaml", prefix="spec")
    text = "\n".join(str(issue) for issue in issues)
    # The same field (or its parent object, for cross-field rules) is named.
    named = {issue.field for issue in issues}
    assert any(case.field.startswith(f) or f.startswith(case.field) for f in named), text


def test_defaults_match_the_crd_defaults() -> None:
    spec = TokenBudgetSpec.model_validate({"limits": [{"period": "Daily", "amount": "1"}]})
    assert spec.timezone == "UTC"
    assert spec.alerts.thresholds == [50, 75, 90, 100]
    assert spec.on_exceeded.action == "Block"
    schema = crd_spec_schema("TokenBudget")
    assert schema["properties"]["alerts"]["properties"]["thresholds"]["default"] == [
        50,
        75,
        90,
        100,
    ]
    route = ModelRouteSpec.model_validate(
        {
            "model": "m",
            "backends": [{"name": "b", "provider": "OpenAI", "baseURL": "http://127.0.0.1:1/v1"}],
        }
    )
    assert route.backends[0].weight == 1 and route.backends[0].timeout == "60s"
    assert route.retry.attempts == 2 and route.retry.initial_backoff == "250ms"


def test_unknown_fields_are_errors_not_silently_dropped() -> None:
    with pytest.raises(ValidationError) as caught:
        TokenBudgetSpec.model_validate(
            {"limits": [{"period": "Daily", "amount": "1", "currency": "EUR"}]}
        )
    issues = issues_from_validation(caught.value, "f.yaml", prefix="spec")
    assert [(i.field, i.reason) for i in issues] == [("spec.limits[0].currency", "unknown field")]


def test_unknown_timezone_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone 'Mars/Olympus'"):
        TokenBudgetSpec.model_validate(
            {"limits": [{"period": "Daily", "amount": "1"}], "timezone": "Mars/Olympus"}
        )


def test_tier_scores_must_increase() -> None:
    with pytest.raises(ValidationError, match="maxScore must increase"):
        ModelRouteSpec.model_validate(
            {
                "model": "auto",
                "backends": [{"name": "b", "provider": "OpenAI", "baseURL": "https://x.example"}],
                "tiers": [
                    {"name": "a", "backend": "b", "maxScore": 50},
                    {"name": "c", "backend": "b", "maxScore": 30},
                    {"name": "d", "backend": "b"},
                ],
            }
        )
