"""Key Secret planning: mint, keep, rotate (schedule or annotation), grace, revocation data."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from llmbudget_gateway.contract import MintedKey
from llmbudget_gateway.contract.specs import ApiKeySpec
from llmbudget_operator.keys import decode, keys_in, plan_key_secret

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
URL = "http://gateway:8080/v1"


def plan(
    existing: dict[str, Any] | None, now: datetime = T0, rotate: str | None = None, **spec: Any
) -> Any:
    return plan_key_secret(
        "team",
        "budget",
        "uid-1",
        rotate,
        ApiKeySpec.model_validate({"name": "default", **spec}),
        existing,
        URL,
        now,
    )


def written(existing: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
    result = plan(existing, **kwargs)
    assert result.body is not None
    body: dict[str, Any] = result.body
    body["metadata"].setdefault("resourceVersion", "1")
    return body


def test_a_new_key_secret_is_ready_for_envfrom() -> None:
    body = written(None)
    assert body["metadata"]["name"] == "budget-default-key"
    assert decode(body, "OPENAI_API_KEY").startswith("sk-llmb-")  # type: ignore[union-attr]
    assert decode(body, "OPENAI_BASE_URL") == URL
    labels = body["metadata"]["labels"]
    assert labels["llmbudget.io/budget"] == "budget" and labels["llmbudget.io/key"] == "default"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_an_existing_key_is_kept() -> None:
    assert plan(written(None)).body is None


def test_scheduled_rotation_keeps_the_old_key_for_the_grace_period() -> None:
    first = written(None, rotation={"every": "720h", "gracePeriod": "1h"})
    old_key = decode(first, "OPENAI_API_KEY")
    assert plan(first, T0 + timedelta(hours=719), rotation={"every": "720h"}).body is None
    later = T0 + timedelta(hours=720)
    second = written(first, now=later, rotation={"every": "720h", "gracePeriod": "1h"})
    new_key = decode(second, "OPENAI_API_KEY")
    assert new_key != old_key
    valid = keys_in(second, later + timedelta(minutes=59))
    assert [k.sha256 for k in valid] == [
        MintedKey.hash_key(new_key or ""),
        MintedKey.hash_key(old_key or ""),
    ]
    assert valid[1].not_after == later + timedelta(hours=1)
    assert len(keys_in(second, later + timedelta(hours=1))) == 1  # grace over
    assert old_key is not None and old_key not in str(second["metadata"])  # hash only


def test_the_rotate_annotation_rotates_once_per_value() -> None:
    first = written(None, rotate="v1")
    assert plan(first, rotate="v1").body is None
    second = written(first, rotate="v2")
    assert decode(second, "OPENAI_API_KEY") != decode(first, "OPENAI_API_KEY")


def test_a_new_gateway_url_rewrites_the_secret_but_keeps_the_key() -> None:
    first = written(None)
    result = plan_key_secret(
        "team", "budget", "uid-1", None, ApiKeySpec(name="default"), first, "http://new/v1", T0
    )
    assert result.body is not None
    assert decode(result.body, "OPENAI_API_KEY") == decode(first, "OPENAI_API_KEY")
    assert decode(result.body, "OPENAI_BASE_URL") == "http://new/v1"


def test_keys_in_ignores_foreign_secrets() -> None:
    secret = {
        "metadata": {"name": "x", "namespace": "team", "labels": {}},
        "data": {"OPENAI_API_KEY": base64.b64encode(b"k").decode()},
    }
    assert keys_in(secret, T0) == []
