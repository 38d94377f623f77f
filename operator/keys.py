"""API keys the operator mints for TokenBudgets: planning (pure) of their Secrets.

A key Secret (in the budget's namespace) holds OPENAI_API_KEY and OPENAI_BASE_URL, so a pod can
`envFrom` it. Rotation (spec.apiKeys[].rotation.every elapsed, or a new value of the
TokenBudget annotation `llmbudget.io/rotate-keys`) writes a new key and keeps the previous one
valid for the grace period: its hash and expiry live in the Secret's annotations, never the key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from llmbudget_gateway.contract import MintedKey
from llmbudget_gateway.contract.durations import parse_duration
from llmbudget_gateway.contract.manifests import BUDGET_LABEL, KEY_DATA, KEY_NAME_LABEL
from llmbudget_gateway.contract.specs import ApiKeySpec

MANAGED_BY = {"app.kubernetes.io/managed-by": "llmbudget-operator"}
ROTATE_ANNOTATION = "llmbudget.io/rotate-keys"
ROTATED_AT = "llmbudget.io/rotated-at"
ROTATION_SEEN = "llmbudget.io/rotation-request"
PREVIOUS_SHA = "llmbudget.io/previous-sha256"
PREVIOUS_UNTIL = "llmbudget.io/previous-valid-until"
BASE_URL_DATA = "OPENAI_BASE_URL"
KEY_PREFIX = "sk-llmb-"


def mint() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def secret_name(budget: str, spec: ApiKeySpec) -> str:
    return spec.secret_name or f"{budget}-{spec.name}-key"


def decode(secret: Mapping[str, Any], key: str) -> str | None:
    value = (secret.get("data") or {}).get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class KeyPlan:
    """The Secret to write (None: keep the existing one as it is)."""

    name: str
    body: dict[str, Any] | None


def plan_key_secret(
    namespace: str,
    budget: str,
    budget_uid: str,
    rotate_request: str | None,
    spec: ApiKeySpec,
    existing: Mapping[str, Any] | None,
    base_url: str,
    now: datetime,
) -> KeyPlan:
    name = secret_name(budget, spec)
    annotations = dict((existing or {}).get("metadata", {}).get("annotations") or {})
    current = decode(existing, KEY_DATA) if existing else None
    rotated_at = _parse(annotations.get(ROTATED_AT))
    due = False
    if current is not None and spec.rotation is not None and spec.rotation.every and rotated_at:
        due = now - rotated_at >= timedelta(seconds=parse_duration(spec.rotation.every))
    requested = rotate_request is not None and rotate_request != annotations.get(ROTATION_SEEN)
    base_url_changed = current is not None and decode(existing or {}, BASE_URL_DATA) != base_url
    if current is not None and not due and not requested and not base_url_changed:
        return KeyPlan(name, None)
    key = current
    if current is None or due or requested:
        key = mint()
        grace = parse_duration(spec.rotation.grace_period) if spec.rotation else 3600.0
        if current is not None:
            annotations[PREVIOUS_SHA] = MintedKey.hash_key(current)
            annotations[PREVIOUS_UNTIL] = _iso(now + timedelta(seconds=grace))
        annotations[ROTATED_AT] = _iso(now)
    if rotate_request is not None:
        annotations[ROTATION_SEEN] = rotate_request
    assert key is not None
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, BUDGET_LABEL: budget, KEY_NAME_LABEL: spec.name},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "llmbudget.io/v1alpha1",
                    "kind": "TokenBudget",
                    "name": budget,
                    "uid": budget_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {
            KEY_DATA: base64.b64encode(key.encode()).decode(),
            BASE_URL_DATA: base64.b64encode(base_url.encode()).decode(),
        },
    }
    if existing is not None:
        body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
    return KeyPlan(name, body)


def keys_in(secret: Mapping[str, Any], now: datetime) -> list[MintedKey]:
    """The valid keys of a key Secret: its current key and, within grace, the previous one."""
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    budget, name = labels.get(BUDGET_LABEL), labels.get(KEY_NAME_LABEL)
    current = decode(secret, KEY_DATA)
    if not budget or not name or current is None:
        return []
    ns = metadata["namespace"]
    found = [MintedKey(ns, budget, name, hashlib.sha256(current.encode()).hexdigest())]
    previous, until = annotations.get(PREVIOUS_SHA), _parse(annotations.get(PREVIOUS_UNTIL))
    if previous and until and until > now and previous != found[0].sha256:
        found.append(MintedKey(ns, budget, name, previous, not_after=until))
    return found
