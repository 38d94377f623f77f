"""load_config(): rendered files, mounted Secret directories, manifest directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbudget_gateway.contract import ConfigError, GatewayConfig, load_config, parse_config
from tests.conftest import EXAMPLES


def test_rendered_config_round_trips(tmp_path: Path) -> None:
    config = load_config(EXAMPLES)
    (tmp_path / "config.json").write_text(config.to_json())
    again = load_config(tmp_path)  # a directory holding config.json: the mounted Secret
    assert again == config and again.revision == config.revision
    assert load_config(tmp_path / "config.json") == config


def test_provider_keys_survive_the_round_trip() -> None:
    config = load_config(EXAMPLES)
    again = parse_config(config.to_json())
    backend = again.routes[0].backends[0]
    assert backend.api_key is not None
    assert backend.api_key.get_secret_value().startswith(("sk-", "placeholder"))


def test_unsupported_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported config version 2; this gateway reads 1"):
        parse_config('{"version": 2}', "c.json")


def test_wrong_types_name_the_field() -> None:
    data = json.loads(load_config(EXAMPLES).to_json())
    data["budgets"][0]["limits"][0]["tokens"] = "many"
    data["routes"][1]["backends"][0]["weight"] = -3
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(data), "c.json")
    fields = [issue.field for issue in caught.value.issues]
    assert fields == ["budgets[0].limits[0].tokens", "routes[1].backends[0].weight"]
    assert str(caught.value.issues[0]).startswith("c.json: budgets[0].limits[0].tokens: ")


def test_not_a_mapping_and_not_parseable() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("[1, 2]")
    with pytest.raises(ConfigError, match="neither JSON nor YAML"):
        parse_config("{unbalanced: [")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")


def test_empty_config_is_valid() -> None:
    assert parse_config('{"version": 1}') == GatewayConfig()


def test_unknown_route_reference_in_a_rendered_config() -> None:
    data = json.loads(load_config(EXAMPLES).to_json())
    auto = next(r for r in data["routes"] if r["model"] == "auto")
    auto["fallbacks"] = ["nope"]
    with pytest.raises(ConfigError, match="'nope' is not a backend of this route"):
        parse_config(json.dumps(data))
