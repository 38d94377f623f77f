"""Reading manifest directories (standalone mode): errors name the file, object and field."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from llmbudget_gateway.contract import ConfigError, MintedKey
from llmbudget_gateway.contract.manifests import read_manifests, render_manifests
from tests.conftest import EXAMPLES

TB = """apiVersion: llmbudget.io/v1alpha1
kind: TokenBudget
metadata: {name: team, namespace: team}
spec:
  limits: [{period: Daily, amount: "5"}]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_lines(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        render_manifests(directory)
    return [str(issue) for issue in caught.value.issues]


def test_examples_read_every_object() -> None:
    found = read_manifests(EXAMPLES)
    assert sorted(r.ref.name for r in found.budgets) == [
        "data-science",
        "engineering",
        "experiments",
        "marketing",
    ]
    assert len(found.routes) == 5
    assert found.secrets["llmbudget-system", "openai-credentials"] == {
        "apiKey": "sk-placeholder-openai"
    }


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", TB + "  timezone: [unclosed\n")
    (line,) = error_lines(tmp_path)
    assert line.startswith(f"{path}: invalid YAML: line ")


def test_invalid_field_names_file_object_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "sub/team.yaml", TB.replace('amount: "5"', 'amount: "0"'))
    assert error_lines(tmp_path) == [
        f"{path}: TokenBudget team/team: InvalidSpec: spec.limits[0].amount: "
        "amount must be greater than zero"
    ]


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", TB.replace("name: team,", "name: a,").replace('"5"', '"x"'))
    write(tmp_path, "b.yaml", TB.replace("name: team,", "name: b,").replace("Daily", "Yearly"))
    lines = error_lines(tmp_path)
    assert len(lines) == 2
    assert "spec.limits[0].amount" in lines[0] and "spec.limits[0].period" in lines[1]


def test_wrong_api_version_missing_name_and_duplicates(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", TB.replace("v1alpha1", "v2"))
    write(
        tmp_path,
        "b.yaml",
        "apiVersion: llmbudget.io/v1alpha1\nkind: ModelRoute\nmetadata: {namespace: x}\nspec: {}\n",
    )
    write(tmp_path, "c.yaml", TB.replace("v1alpha1", "v1alpha1") + "---\n" + TB)
    lines = error_lines(tmp_path)
    assert any(
        "a.yaml: TokenBudget team/team: apiVersion: must be llmbudget.io/v1alpha1" in line
        for line in lines
    )
    assert any("b.yaml: ModelRoute: metadata.name: required" in line for line in lines)
    assert any(
        "c.yaml: TokenBudget team/team: TokenBudget team/team is also defined in" in line
        for line in lines
    )


def test_bad_base64_in_a_secret(tmp_path: Path) -> None:
    write(
        tmp_path,
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\ndata: {apiKey: '***'}\n",
    )
    assert error_lines(tmp_path) == [
        f"{tmp_path}/s.yaml: Secret n/s: data.apiKey: not valid base64-encoded UTF-8"
    ]


def test_key_secrets_become_hashed_keys(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"sk-llmb-test").decode()
    write(tmp_path, "tb.yaml", TB)
    write(
        tmp_path,
        "key.yaml",
        f"""apiVersion: v1
kind: Secret
metadata:
  name: team-default-key
  namespace: team
  labels: {{llmbudget.io/budget: team, llmbudget.io/key: default}}
data: {{OPENAI_API_KEY: {encoded}}}
""",
    )
    config = render_manifests(tmp_path).config
    (key,) = config.keys
    assert (key.namespace, key.budget, key.name) == ("team", "team", "default")
    assert key.sha256 == MintedKey.hash_key("sk-llmb-test")
    assert "sk-llmb-test" not in config.to_json()


def test_references_problems_are_errors_in_standalone_mode(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "20-modelroutes.yaml", tmp_path)  # without the provider Secrets
    lines = error_lines(tmp_path)
    assert any(
        "ModelRoute llmbudget-system/gpt-4-1: SecretNotFound: backend openai: Secret "
        "llmbudget-system/openai-credentials not found" in line
        for line in lines
    )


def test_other_kinds_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "tb.yaml", TB)
    write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    write(tmp_path, ".git/junk.yaml", ": : not yaml")
    write(tmp_path, "notes.txt", "not a manifest")
    assert len(render_manifests(tmp_path).config.budgets) == 1
