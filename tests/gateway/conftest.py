"""Gateway fixtures: the fake provider and gateways on real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway.harness import (
    FakeProvider,
    Gateway,
    LoopThread,
    budget_manifest,
    key_secret,
    route_manifest,
    start_fake_provider,
    stop_fake_provider,
)
from tests.gateway.recording_provider import RecordingProvider, Tokenizer

TEAM_KEY = "sk-llmb-team-key"
OTHER_KEY = "sk-llmb-other-key"
DEFAULT_BUDGET = """\
limits:
  - {period: Monthly, amount: "10"}
apiKeys:
  - name: default
"""


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeProvider]:
    provider = start_fake_provider()
    yield provider
    stop_fake_provider(provider)


@pytest.fixture(scope="session")
def _recording_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingProvider]:
    loop = LoopThread()
    provider = RecordingProvider(Tokenizer(tmp_path_factory.mktemp("tiktoken")))
    loop.run(provider.start())
    yield provider
    loop.run(provider.stop())
    loop.stop()


@pytest.fixture
def recorder(_recording_provider: RecordingProvider) -> RecordingProvider:
    """The recording provider (tests/gateway/recording_provider.py), its bills cleared."""
    _recording_provider.bills.clear()
    _recording_provider.calls.clear()
    return _recording_provider


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path, fake: FakeProvider) -> Iterator[GatewayFactory]:
    """make_gateway(budget_spec=...) -> a started Gateway with namespace `team` (TEAM_KEY)
    and `other` (OTHER_KEY), routes gpt-4.1 ($2/$8 per M) and text-embedding-3-small."""
    started: list[Gateway] = []

    def factory(
        budget_spec: str = DEFAULT_BUDGET, extra: str = "", start: bool = True, **overrides: object
    ) -> Gateway:
        manifests = tmp_path / "manifests"
        manifests.mkdir(exist_ok=True)
        gateway = Gateway(manifests, tmp_path / "state", settings_overrides=dict(overrides))
        gateway.write(
            "routes.yaml",
            route_manifest("gpt-4.1", fake.url)
            + "---\n"
            + route_manifest(
                "text-embedding-3-small", fake.url, pricing='{input: "0.02", output: "0"}'
            ),
        )
        gateway.write(
            "team.yaml",
            budget_manifest("team", "team", budget_spec)
            + "---\n"
            + key_secret("team", "team", "default", TEAM_KEY),
        )
        gateway.write(
            "other.yaml",
            budget_manifest("other", "other", DEFAULT_BUDGET)
            + "---\n"
            + key_secret("other", "other", "default", OTHER_KEY),
        )
        if extra:
            gateway.write("extra.yaml", extra)
        if start:
            gateway.start()
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        gateway.stop()
