"""Standalone mode: the gateway reads TokenBudget/ModelRoute manifests without Kubernetes.

There is no operator to mint the API keys TokenBudgets ask for, so the gateway mints them once
and keeps them in `<state dir>/keys/<namespace>.<budget>.<key>.env` (mode 0600), in the same
OPENAI_API_KEY / OPENAI_BASE_URL form as the operator's key Secrets. Only hashes reach the
config. Key Secrets present among the manifests are used as they are.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from llmbudget_gateway.contract import GatewayConfig, MintedKey, load_config
from llmbudget_gateway.contract.manifests import read_manifests, render_manifests

KEY_PREFIX = "sk-llmb-"


def mint_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_file(state_dir: Path, namespace: str, budget: str, name: str) -> Path:
    return state_dir / "keys" / f"{namespace}.{budget}.{name}.env"


def _read_or_mint(path: Path, base_url: str) -> str:
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("OPENAI_API_KEY="):
                return line.split("=", 1)[1].strip()
    key = mint_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"OPENAI_API_KEY={key}\nOPENAI_BASE_URL={base_url}\n")
    return key


def load_standalone(
    path: Path, shared_namespace: str, state_dir: Path, base_url: str, mint: bool = True
) -> GatewayConfig:
    """The config for `path`: a rendered file as is, or manifests plus locally minted keys."""
    if not path.is_dir() or (path / "config.json").is_file():
        return load_config(path, shared_namespace)
    found = read_manifests(path)
    keys = list(found.keys)
    if mint:
        have = {(k.namespace, k.budget, k.name) for k in keys}
        for resource in found.budgets:
            names = resource.spec.get("apiKeys") if isinstance(resource.spec, dict) else None
            for entry in names if isinstance(names, list) else ():
                name = entry.get("name") if isinstance(entry, dict) else None
                ref = resource.ref
                if not isinstance(name, str) or (ref.namespace, ref.name, name) in have:
                    continue
                secret = _read_or_mint(key_file(state_dir, ref.namespace, ref.name, name), base_url)
                keys.append(MintedKey(ref.namespace, ref.name, name, MintedKey.hash_key(secret)))
    found.keys = keys
    return render_manifests(path, shared_namespace, found).config
