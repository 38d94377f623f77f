"""The reconciler's pure parts: which Secrets matter, and writing the config only on change."""

from __future__ import annotations

import base64
from typing import Any

from llmbudget_gateway.contract import render
from llmbudget_gateway.contract.manifests import read_manifests
from llmbudget_operator.reconciler import config_secret, referenced_secrets
from llmbudget_operator.settings import OperatorSettings
from tests.conftest import EXAMPLES


def test_referenced_secrets_cover_credentials_and_webhooks() -> None:
    routes: list[dict[str, Any]] = [
        {
            "metadata": {"namespace": "sys"},
            "spec": {
                "backends": [{"credentialSecretRef": {"name": "openai"}}, {"name": "no-credential"}]
            },
        }
    ]
    budgets: list[dict[str, Any]] = [
        {
            "metadata": {"namespace": "team"},
            "spec": {"alerts": {"webhooks": [{"urlSecretRef": {"name": "slack"}}]}},
        },
        {"metadata": {"namespace": "x"}, "spec": {}},
    ]
    assert referenced_secrets(budgets, routes) == {("sys", "openai"), ("team", "slack")}


def test_the_config_secret_is_written_only_when_its_content_changes() -> None:
    found = read_manifests(EXAMPLES)
    rendered = render(found.budgets, found.routes, found.secrets)
    settings = OperatorSettings()
    body = config_secret(settings, rendered, None)
    assert body is not None
    assert body["metadata"]["annotations"]["llmbudget.io/config-revision"] == (
        rendered.config.revision
    )
    assert base64.b64decode(body["data"]["config.json"]).decode() == rendered.config.to_json()
    existing = {**body, "metadata": {**body["metadata"], "resourceVersion": "7"}}
    assert config_secret(settings, rendered, existing) is None
    other = render(found.budgets[:1], found.routes, found.secrets)
    update = config_secret(settings, other, existing)
    assert update is not None and update["metadata"]["resourceVersion"] == "7"
