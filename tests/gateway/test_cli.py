from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llmbudget_gateway.cli import main
from tests.conftest import EXAMPLES


def test_check_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out and "4 budgets, 5 routes" in out


def test_check_reports_every_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tb.yaml").write_text(
        "apiVersion: llmbudget.io/v1alpha1\nkind: TokenBudget\nmetadata: {name: b}\n"
        "spec: {limits: [{period: Daily, amount: '-1'}]}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "TokenBudget default/b" in err and "spec.limits[0].amount" in err


def test_render_writes_a_private_file_not_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "config.json"
    assert main(["render", str(EXAMPLES), "-o", str(output)]) == 0
    assert "sk-placeholder-openai" not in capsys.readouterr().out
    assert "sk-placeholder-openai" in output.read_text()
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
