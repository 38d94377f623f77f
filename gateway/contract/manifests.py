"""Read TokenBudget, ModelRoute and Secret manifests from YAML files (standalone mode).

The same files a platform team would `kubectl apply`: multi-document YAML, any layout below
one directory. Other kinds (Namespace, ...) are ignored. Secrets provide provider credentials
and webhook URLs; Secrets labelled `llmbudget.io/budget` are API keys (the shape the operator
writes), which the gateway accepts by hash.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmbudget_gateway.contract.errors import ConfigError, ConfigIssue
from llmbudget_gateway.contract.render import (
    DEFAULT_SHARED_NAMESPACE,
    MintedKey,
    ObjectRef,
    Rendered,
    Resource,
    render,
)

API_GROUP = "llmbudget.io"
API_VERSION = f"{API_GROUP}/v1alpha1"
KINDS = ("TokenBudget", "ModelRoute")
BUDGET_LABEL = f"{API_GROUP}/budget"
KEY_NAME_LABEL = f"{API_GROUP}/key"
KEY_DATA = "OPENAI_API_KEY"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class ManifestSet:
    budgets: list[Resource] = field(default_factory=list)
    routes: list[Resource] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    keys: list[MintedKey] = field(default_factory=list)


def manifest_files(directory: Path) -> list[Path]:
    """Every manifest file below `directory`, in a stable order; hidden paths are skipped."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file()
        and path.suffix in MANIFEST_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def _documents(path: Path, issues: list[ConfigIssue]) -> Iterator[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(ConfigIssue(str(path), "", f"invalid YAML: {where}{problem}"))
        return
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(str(path), "", f"cannot read: {exc}"))
        return
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            issues.append(ConfigIssue(str(path), "", f"document {index + 1} is not a mapping"))
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from (item for item in doc["items"] if isinstance(item, dict))
        else:
            yield doc


def _secret_data(doc: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The Secret's decoded data, and the first key that is not valid base64 UTF-8 (if any)."""
    data: dict[str, str] = {}
    for key, value in (doc.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return {}, str(key)
    for key, value in (doc.get("stringData") or {}).items():
        data[str(key)] = str(value)
    return data, None


def read_manifests(directory: Path) -> ManifestSet:
    """Parse every manifest below `directory`; ConfigError lists every malformed object."""
    issues: list[ConfigIssue] = []
    found = ManifestSet()
    seen: dict[ObjectRef, str] = {}
    for path in manifest_files(directory):
        for doc in _documents(path, issues):
            kind = doc.get("kind")
            raw_metadata = doc.get("metadata")
            metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
            name = metadata.get("name")
            namespace = metadata.get("namespace") or "default"
            if kind not in (*KINDS, "Secret"):
                continue
            if not isinstance(name, str) or not name:
                issues.append(ConfigIssue(str(path), "metadata.name", "required", kind))
                continue
            ref = ObjectRef(kind, namespace, name)
            if ref in seen:
                issues.append(
                    ConfigIssue(str(path), "", f"{ref} is also defined in {seen[ref]}", str(ref))
                )
                continue
            seen[ref] = str(path)
            if kind == "Secret":
                data, bad_key = _secret_data(doc)
                if bad_key is not None:
                    issues.append(
                        ConfigIssue(
                            str(path), f"data.{bad_key}", "not valid base64-encoded UTF-8", str(ref)
                        )
                    )
                    continue
                found.secrets[namespace, name] = data
                labels = metadata.get("labels") or {}
                if BUDGET_LABEL in labels and data.get(KEY_DATA):
                    found.keys.append(
                        MintedKey(
                            namespace=namespace,
                            budget=str(labels[BUDGET_LABEL]),
                            name=str(labels.get(KEY_NAME_LABEL, name)),
                            sha256=MintedKey.hash_key(data[KEY_DATA]),
                        )
                    )
                continue
            if doc.get("apiVersion") != API_VERSION:
                issues.append(
                    ConfigIssue(
                        str(path),
                        "apiVersion",
                        f"must be {API_VERSION}, not {doc.get('apiVersion')!r}",
                        str(ref),
                    )
                )
                continue
            spec = doc.get("spec")
            if not isinstance(spec, dict):
                issues.append(ConfigIssue(str(path), "spec", "required (a mapping)", str(ref)))
                continue
            resource = Resource(ref=ref, spec=spec, generation=1, source=str(path))
            (found.budgets if kind == "TokenBudget" else found.routes).append(resource)
    if issues:
        raise ConfigError(issues)
    return found


def render_manifests(
    directory: Path,
    shared_namespace: str = DEFAULT_SHARED_NAMESPACE,
    found: ManifestSet | None = None,
) -> Rendered:
    """Read and render a manifest directory. Every problem is an error here: on a laptop
    there is no status to report it in, so the gateway refuses the config instead."""
    found = found or read_manifests(directory)
    rendered = render(found.budgets, found.routes, found.secrets, found.keys, shared_namespace)
    if rendered.problems:
        sources = {r.ref: r.source for r in (*found.budgets, *found.routes)}
        raise ConfigError(
            ConfigIssue(
                sources.get(p.ref, str(directory)), "", f"{p.reason}: {p.message}", str(p.ref)
            )
            for p in rendered.problems
        )
    return rendered
