"""Unit tests of the pipeline's settle-on-failure guard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmbudget_gateway.pipeline import settled_on_failure


class RecordingExchange:
    def __init__(self) -> None:
        self.finished: list[tuple[Any, ...]] = []

    def finish(self, usage: Any, status: int, error_code: str | None = None) -> None:
        self.finished.append((usage, status, error_code))


def test_cancelled_forwarding_releases_and_records() -> None:
    exchange = RecordingExchange()
    with pytest.raises(asyncio.CancelledError), settled_on_failure(exchange):  # type: ignore[arg-type]
        raise asyncio.CancelledError
    assert exchange.finished == [(None, 499, "cancelled")]


def test_unexpected_errors_release_and_record() -> None:
    exchange = RecordingExchange()
    with pytest.raises(KeyError), settled_on_failure(exchange):  # type: ignore[arg-type]
        raise KeyError("bug")
    assert exchange.finished == [(None, 500, "internal_error")]


def test_success_leaves_the_exchange_alone() -> None:
    exchange = RecordingExchange()
    with settled_on_failure(exchange):  # type: ignore[arg-type]
        pass
    assert exchange.finished == []
