"""Security: namespaces are isolated by their keys, the admin API needs its own token, keys
are stored as hashes and compared in constant time, and a corrupted config Secret changes
nothing."""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmbudget_gateway.contract import load_config
from tests.gateway.conftest import OTHER_KEY, TEAM_KEY, GatewayFactory
from tests.gateway.harness import Gateway, route_manifest
from tests.gateway.test_proxy_openai import MESSAGES, client, records


def test_a_key_cannot_spend_from_or_read_another_namespace(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    private = route_manifest("team-only-model", fake.url, namespace="team", name="private")
    gateway = make_gateway(extra=private)
    client(gateway).chat.completions.create(model="team-only-model", messages=MESSAGES)
    other = client(gateway, key=OTHER_KEY)
    with pytest.raises(openai.NotFoundError):  # team's own route does not exist for other
        other.chat.completions.create(model="team-only-model", messages=MESSAGES)
    assert "team-only-model" not in [m.id for m in other.models.list()]
    # a header cannot move spend to another namespace
    other.chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, extra_headers={"X-Namespace": "team"}
    )
    assert {r["namespace"] for r in records(gateway, None)} == {"team", "other"}
    assert len(records(gateway, "team")) == 1
    # an API key is not an admin token: no usage, records or reports of anyone
    for path in ("budgets", "budgets/team/team", "records", "reports/spend", "export"):
        for key in (TEAM_KEY, OTHER_KEY):
            response = httpx.get(
                f"{gateway.root}/admin/v1/{path}", headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_admin_token"


def test_keys_are_hashed_at_rest_and_compared_in_constant_time(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway()
    config = gateway.services.runtime.config
    rendered = config.to_json()
    assert TEAM_KEY not in rendered and OTHER_KEY not in rendered
    assert all(len(key.sha256) == 64 for key in config.keys)
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    client(gateway).models.list()
    # the key's SHA-256 is compared with hmac.compare_digest, never the key with ==
    assert compared and all(len(a) == len(b) == 64 for a, b in compared)


def test_a_corrupted_config_secret_keeps_the_previous_config(
    tmp_path: Path, make_gateway: GatewayFactory
) -> None:
    source = make_gateway(start=False)
    mount = tmp_path / "mount"  # what the kubelet mounts: the operator's rendered config
    mount.mkdir()
    config = load_config(source.manifests)
    # keys come from the manifests' key Secrets, hashed
    (mount / "config.json").write_text(config.to_json())
    gateway = Gateway(mount, tmp_path / "mounted-state")
    gateway.start()
    try:
        client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        revision = httpx.get(f"{gateway.root}/readyz").json()["configRevision"]
        for garbage in (b"\x00\xff not json", b'{"version": "v1alpha1", "budgets": 7}', b""):
            (mount / "config.json").write_bytes(garbage)
            deadline = time.monotonic() + 10
            while not httpx.get(f"{gateway.root}/readyz").json()["lastReloadError"]:
                assert time.monotonic() < deadline, "the corrupted config was not noticed"
                time.sleep(0.05)
            ready = httpx.get(f"{gateway.root}/readyz").json()
            assert ready["status"] == "ready" and ready["configRevision"] == revision
            client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
            (mount / "config.json").write_text(config.to_json())  # repaired
            deadline = time.monotonic() + 10
            while httpx.get(f"{gateway.root}/readyz").json()["lastReloadError"]:
                assert time.monotonic() < deadline, "the repaired config was not taken"
                time.sleep(0.05)
    finally:
        gateway.stop()
