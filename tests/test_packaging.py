"""Packaging facts that need no Docker engine: the Dockerfile builds what pyproject declares."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import partial
from pathlib import Path

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


def test_the_wheel_the_image_installs_runs_both_entrypoints(tmp_path: Path) -> None:
    """The Dockerfile's steps without a Docker engine: build the wheel from a copy of what the
    Dockerfile copies, install it on its own (no editable source), run both entrypoints and
    prepare the offline tokenizer cache as the image does."""
    source = tmp_path / "src"
    source.mkdir()
    for path in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / path, source / path)
    for path in ("gateway", "operator"):
        shutil.copytree(REPO / path, source / path, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run = partial(
        subprocess.run, capture_output=True, text=True, timeout=300, check=True, cwd=tmp_path
    )
    run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("llmbudget-*.whl")
    site = tmp_path / "site"
    run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)])
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    probe = (
        "import pathlib, llmbudget_gateway, llmbudget_operator, llmbudget_gateway.tokens as t;"
        "assert llmbudget_gateway.__file__.startswith({0!r}), llmbudget_gateway.__file__;"
        "assert llmbudget_operator.__file__.startswith({0!r});"
        "t.prepare_offline_cache(pathlib.Path({1!r}))"
    ).format(str(site), str(tmp_path / "tiktoken"))
    run([sys.executable, "-c", probe], env=env)
    assert any((tmp_path / "tiktoken").iterdir())
    for module in ("llmbudget_gateway.cli", "llmbudget_operator.cli"):
        out = run([sys.executable, "-m", module, "--help"], env=env)
        assert "usage:" in out.stdout
