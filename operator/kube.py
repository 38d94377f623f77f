"""The few Kubernetes API calls the operator makes (kubernetes_asyncio), as plain dicts.

Every call is here, so the RBAC manifest can be checked against it: list/watch TokenBudgets
and ModelRoutes, patch their status, list/get/create/replace/delete Secrets, create Events.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

GROUP, VERSION = "llmbudget.io", "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"


async def _json_or_none(response: Any) -> dict[str, Any] | None:
    """The body of a raw (`_preload_content=False`) response: None for 404, raise for errors."""
    if response.status == 404:
        response.release()
        return None
    if response.status >= 400:
        text = await response.text()
        raise ApiException(status=response.status, reason=text[:500])
    data: dict[str, Any] = await response.json()
    return data


class Kube:
    def __init__(self, api: Any) -> None:
        self.api = api
        # The generated client's types describe its model objects; we work with plain dicts
        # (`_preload_content=False` for Secrets), so its calls are used untyped.
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    async def list_custom(self, plural: str, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        if not namespaces:
            result = await self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
            return list(result["items"])
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            result = await self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural
            )
            items += result["items"]
        return items

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise

    async def list_secrets(
        self, namespaces: tuple[str, ...], label_selector: str = ""
    ) -> list[dict[str, Any]]:
        if not namespaces:
            result = await self.core.list_secret_for_all_namespaces(
                label_selector=label_selector, _preload_content=False
            )
            return list((await _json_or_none(result) or {"items": []})["items"])
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            result = await self.core.list_namespaced_secret(
                namespace, label_selector=label_selector, _preload_content=False
            )
            items += (await _json_or_none(result) or {"items": []})["items"]
        return items

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result = await self.core.read_namespaced_secret(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return await _json_or_none(result)

    async def write_secret(self, body: dict[str, Any]) -> None:
        """Create the Secret, or replace it (optimistic concurrency on resourceVersion)."""
        metadata = body["metadata"]
        if metadata.get("resourceVersion"):
            await self.core.replace_namespaced_secret(metadata["name"], metadata["namespace"], body)
        else:
            await self.core.create_namespaced_secret(metadata["namespace"], body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self.core.delete_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def create_event(
        self, obj: dict[str, Any], type_: str, reason: str, message: str, now: str
    ) -> None:
        """A core/v1 Event on `obj`, as `kubectl describe` shows it."""
        metadata = obj["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj.get("kind", "TokenBudget"),
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "llmbudget-operator"},
            "reportingComponent": "llmbudget-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.core.create_namespaced_event(metadata["namespace"], body)
