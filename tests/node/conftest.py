"""Fixtures of the tests that need Pods (marker `node`): the cluster of tests/node/cluster.py,
started once per session on first use, and the run's measured figures in the summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.cluster import NodeCluster, NodeManager, NodeUnavailable

MANAGER = pytest.StashKey[NodeManager]()


@pytest.fixture(scope="session")
def node_manager(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeManager]:
    manager = NodeManager(tmp_path_factory.mktemp("node"))
    request.config.stash[MANAGER] = manager  # for the summary
    yield manager
    left = manager.stop()
    assert not left, "the node left host state behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def node_cluster(node_manager: NodeManager) -> NodeCluster:
    try:
        return node_manager.get()
    except NodeUnavailable as error:
        pytest.fail(str(error))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs Pods (`node`) and a cluster (`cluster`). The host-state test runs
    first and the Pods demo last: each brings a node of its own (one node per machine)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.cluster)

    def order(item: pytest.Item) -> int:
        path = str(item.fspath)
        return 0 if "test_host_state" in path else 2 if "test_demo_on_pods" in path else 1

    items.sort(key=order)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    manager = terminalreporter.config.stash.get(MANAGER, None)
    if manager is None or not manager.figures:
        return
    terminalreporter.section("real node")
    for name, value in manager.figures.items():
        terminalreporter.write_line(f"{name}: {value}")
