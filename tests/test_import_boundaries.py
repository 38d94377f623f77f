"""Architecture rules, checked on the source:

- the gateway never imports the operator, kopf or a Kubernetes client;
- the operator imports only the gateway's config contract (llmbudget_gateway.contract);
- the contract imports nothing else from the gateway (it is the whole interface).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KUBERNETES_CLIENTS = ("kopf", "kubernetes", "kubernetes_asyncio", "kr8s", "pykube", "lightkube")


def imports(package_dir: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_scan_sees_imports() -> None:
    assert (REPO / "gateway" / "cli.py", "llmbudget_gateway.contract") in set(
        imports(REPO / "gateway")
    )


def test_gateway_never_imports_operator_or_kubernetes() -> None:
    bad = [
        (str(path.relative_to(REPO)), module)
        for path, module in imports(REPO / "gateway")
        if top(module) in ("llmbudget_operator", *KUBERNETES_CLIENTS)
    ]
    assert bad == []


def test_operator_imports_only_the_gateway_contract() -> None:
    bad = [
        (str(path.relative_to(REPO)), module)
        for path, module in imports(REPO / "operator")
        if top(module) == "llmbudget_gateway"
        and not (
            module == "llmbudget_gateway.contract"
            or module.startswith("llmbudget_gateway.contract.")
        )
    ]
    assert bad == []


def test_contract_is_self_contained() -> None:
    bad = [
        (str(path.relative_to(REPO)), module)
        for path, module in imports(REPO / "gateway" / "contract")
        if top(module) == "llmbudget_gateway"
        and not module.startswith("llmbudget_gateway.contract")
    ]
    assert bad == []
