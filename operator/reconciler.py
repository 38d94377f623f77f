"""Select → render → apply: the whole gateway config from every TokenBudget and ModelRoute.

Level-triggered: any change (a TokenBudget, a ModelRoute, a Secret they use) triggers one
reconcile of everything, debounced, never two at once. It

1. *selects* the objects and the Secrets they reference (listing the CRs, reading Secrets);
2. mints or rotates the key Secrets the TokenBudgets ask for;
3. *renders* the config with the contract's pure `render` (golden-tested in the gateway);
4. *applies* it: writes the config Secret only when its content changed, sets each object's
   Ready condition only when it changed, and emits a Warning Event for a new problem.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from llmbudget_gateway.contract import (
    CONFIG_FILE_NAME,
    MintedKey,
    ObjectRef,
    Problem,
    Rendered,
    Resource,
    render,
)
from llmbudget_gateway.contract.manifests import BUDGET_LABEL
from llmbudget_gateway.contract.specs import TokenBudgetSpec
from llmbudget_operator.conditions import merge_condition, ready_condition
from llmbudget_operator.keys import (
    MANAGED_BY,
    ROTATE_ANNOTATION,
    keys_in,
    plan_key_secret,
    secret_name,
)
from llmbudget_operator.kube import Kube
from llmbudget_operator.settings import OperatorSettings

log = logging.getLogger("llmbudget.operator")
REVISION_ANNOTATION = "llmbudget.io/config-revision"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource(obj: dict[str, Any], kind: str) -> Resource:
    metadata = obj["metadata"]
    return Resource(
        ObjectRef(kind, metadata["namespace"], metadata["name"]),
        obj.get("spec") or {},
        int(metadata.get("generation") or 0),
    )


def referenced_secrets(
    budgets: list[dict[str, Any]], routes: list[dict[str, Any]]
) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret a ModelRoute or TokenBudget references."""
    refs: set[tuple[str, str]] = set()
    for route in routes:
        ns = route["metadata"]["namespace"]
        for backend in (route.get("spec") or {}).get("backends") or []:
            ref = backend.get("credentialSecretRef") if isinstance(backend, dict) else None
            if isinstance(ref, dict) and ref.get("name"):
                refs.add((ns, ref["name"]))
    for budget in budgets:
        ns = budget["metadata"]["namespace"]
        for hook in ((budget.get("spec") or {}).get("alerts") or {}).get("webhooks") or []:
            ref = hook.get("urlSecretRef") if isinstance(hook, dict) else None
            if isinstance(ref, dict) and ref.get("name"):
                refs.add((ns, ref["name"]))
    return refs


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    data = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return data


def config_secret(
    settings: OperatorSettings, rendered: Rendered, existing: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The config Secret to write, or None when the existing one already holds this config."""
    payload = rendered.config.to_json()
    encoded = base64.b64encode(payload.encode()).decode()
    if existing is not None and (existing.get("data") or {}).get(CONFIG_FILE_NAME) == encoded:
        return None
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": settings.config_secret,
            "namespace": settings.gateway_namespace,
            "labels": {**MANAGED_BY, "app.kubernetes.io/part-of": "llmbudget"},
            "annotations": {REVISION_ANNOTATION: rendered.config.revision},
        },
        "data": {CONFIG_FILE_NAME: encoded},
    }
    if existing is not None:
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
    return body


@dataclass
class Reconciler:
    kube: Kube
    settings: OperatorSettings
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    referenced: set[tuple[str, str]] = field(default_factory=set)
    revision: str = ""
    last_duration: float = 0.0
    reconciles: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _announced: set[tuple[ObjectRef, str]] = field(default_factory=set)

    def trigger(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settings.debounce)  # let a burst of events settle
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed; retrying in 5 s")
                await asyncio.sleep(5)
                self._wake.set()

    async def reconcile(self) -> Rendered:
        started = time.perf_counter()
        namespaces = self.settings.namespaces
        budgets = await self.kube.list_custom("tokenbudgets", namespaces)
        routes = await self.kube.list_custom("modelroutes", self._route_namespaces())
        self.referenced = referenced_secrets(budgets, routes)
        secrets: dict[tuple[str, str], dict[str, str]] = {}
        for ns, name in sorted(self.referenced):
            found = await self.kube.read_secret(ns, name)
            if found is not None:
                secrets[ns, name] = decoded(found)
        keys = await self._apply_keys(budgets)
        rendered = render(
            [resource(b, "TokenBudget") for b in budgets],
            [resource(r, "ModelRoute") for r in routes],
            secrets,
            keys,
            self.settings.gateway_namespace,
        )
        await self._apply_config(rendered)
        await self._apply_conditions(budgets, routes, rendered)
        self.last_duration = time.perf_counter() - started
        self.reconciles += 1
        return rendered

    def _route_namespaces(self) -> tuple[str, ...]:
        if not self.settings.namespaces:
            return ()
        return tuple(sorted({*self.settings.namespaces, self.settings.gateway_namespace}))

    async def _apply_keys(self, budgets: list[dict[str, Any]]) -> list[MintedKey]:
        now = self.clock()
        existing = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s
            for s in await self.kube.list_secrets(self.settings.namespaces, BUDGET_LABEL)
        }
        wanted: set[tuple[str, str]] = set()
        for budget in budgets:
            metadata = budget["metadata"]
            try:
                spec = TokenBudgetSpec.model_validate(budget.get("spec") or {})
            except ValidationError:
                continue  # reported by render as InvalidSpec
            rotate = (metadata.get("annotations") or {}).get(ROTATE_ANNOTATION)
            for key_spec in spec.api_keys:
                plan = plan_key_secret(
                    metadata["namespace"],
                    metadata["name"],
                    metadata.get("uid", ""),
                    rotate,
                    key_spec,
                    existing.get((metadata["namespace"], secret_name(metadata["name"], key_spec))),
                    self.settings.gateway_public_url,
                    now,
                )
                wanted.add((metadata["namespace"], plan.name))
                if plan.body is not None:
                    await self.kube.write_secret(plan.body)
                    existing[metadata["namespace"], plan.name] = (
                        await self.kube.read_secret(metadata["namespace"], plan.name) or {}
                    )
                    log.info("wrote key Secret %s/%s", metadata["namespace"], plan.name)
        for ns, name in list(existing):
            if (ns, name) not in wanted:  # its budget, or the key, is gone: revoke
                await self.kube.delete_secret(ns, name)
                del existing[ns, name]
                log.info("revoked key Secret %s/%s", ns, name)
        return [key for secret in existing.values() for key in keys_in(secret, now)]

    async def _apply_config(self, rendered: Rendered) -> None:
        existing = await self.kube.read_secret(
            self.settings.gateway_namespace, self.settings.config_secret
        )
        body = config_secret(self.settings, rendered, existing)
        if body is not None:
            await self.kube.write_secret(body)
            log.info(
                "gateway config revision %s written (%d budgets, %d routes, %d keys)",
                rendered.config.revision,
                len(rendered.config.budgets),
                len(rendered.config.routes),
                len(rendered.config.keys),
            )
        self.revision = rendered.config.revision

    async def _apply_conditions(
        self, budgets: list[dict[str, Any]], routes: list[dict[str, Any]], rendered: Rendered
    ) -> None:
        now = now_iso()
        for obj, kind, plural in [
            *((b, "TokenBudget", "tokenbudgets") for b in budgets),
            *((r, "ModelRoute", "modelroutes") for r in routes),
        ]:
            ref = resource(obj, kind).ref
            problems = rendered.problems_of(ref)
            generation = int(obj["metadata"].get("generation") or 0)
            ok = (
                ("Enforced", "enforced by the gateway")
                if kind == "TokenBudget"
                else ("Resolved", "served by the gateway")
            )
            condition = ready_condition(problems, generation, *ok)
            status = obj.get("status") or {}
            patch: dict[str, Any] = {}
            merged = merge_condition(status.get("conditions"), condition, now)
            if merged is not None:
                patch["conditions"] = merged
            if status.get("observedGeneration") != generation:
                patch["observedGeneration"] = generation
            if kind == "ModelRoute":
                patch.update(self._route_backends(ref, rendered, status))
            if patch:
                await self.kube.patch_status(plural, ref.namespace, ref.name, patch)
            await self._announce(obj, problems, now)

    @staticmethod
    def _route_backends(
        ref: ObjectRef, rendered: Rendered, status: dict[str, Any]
    ) -> dict[str, Any]:
        backends = rendered.backends.get(ref, [])
        entries = [
            {
                "name": b.name,
                "ready": b.ready,
                **({"reason": b.reason, "message": b.message} if not b.ready else {}),
            }
            for b in backends
        ]
        summary = f"{sum(b.ready for b in backends)}/{len(backends)}"
        if status.get("backends") == entries and status.get("backendsReady") == summary:
            return {}
        return {"backends": entries, "backendsReady": summary}

    async def _announce(self, obj: dict[str, Any], problems: list[Problem], now: str) -> None:
        """One Warning Event per new problem of an object (not on every reconcile)."""
        current = {(p.ref, p.reason + p.message) for p in problems}
        ref = resource(obj, obj.get("kind", "TokenBudget")).ref
        for problem in problems:
            key = (problem.ref, problem.reason + problem.message)
            if key not in self._announced:
                await self.kube.create_event(obj, "Warning", problem.reason, problem.message, now)
        self._announced = {k for k in self._announced if k[0] != ref} | current
