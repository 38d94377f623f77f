"""Packaging facts that need no Docker engine: the Dockerfile builds what pyproject declares."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO


def test_dockerfile_copies_the_packages_and_names_both_entrypoints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for source in re.findall(r"^COPY (?!--)(\S+)", dockerfile, re.M):
        for path in source.split():
            assert (REPO / path.rstrip("/")).exists(), path
    scripts = pyproject["project"]["scripts"]
    assert set(scripts) == {"llmbudget-gateway", "llmbudget-operator"}
    for script in scripts:
        assert script in dockerfile
    assert "USER 10001" in dockerfile  # non-root, as the chart's securityContext expects
