"""Issue 14, streams and failures: cut, cancelled, fully read and undelivered answers.

Against the recording provider, which bills what it generated (recording_provider.py).
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.recording_provider import RecordingProvider
from tests.gateway.test_pricing_paths import backend, claude_route, modelroute, sdk
from tests.gateway.test_proxy_openai import client, records, usage_of
from tests.gateway.test_shared_budgets import wait_for, window_row

CACHED_CLAUDE = '{input: "3", cachedInput: "0.3", cacheWrite: "3.75", output: "15"}'


def cached_claude(url: str) -> str:
    return modelroute(
        "claude",
        "claude",
        f'    - {{name: claude, provider: Anthropic, baseURL: "{url}", model: claude-x, '
        f"pricing: {CACHED_CLAUDE}}}\n",
    )


def micros(prompt: int, read: int, write: int, output: int) -> float:
    """$3 input, $0.3 cache reads, $3.75 cache writes, $15 output per million tokens."""
    return (prompt - read - write) * 3 + read * 0.3 + write * 3.75 + output * 15


CUT = {"fault": "reset", "cut_after": 6, "cache_read": 1000, "cache_write": 200, "words": 20}
LONG = "hello there " + "context " * 1500  # a prompt long enough to have been cached


def test_a_cut_chat_stream_from_anthropic_is_estimated_with_the_cache_split(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=cached_claude(recorder.url))
    stream = client(gateway).chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": LONG}],
        stream=True,
        extra_body={"fake": CUT},
    )
    with pytest.raises(openai.APIError):  # the error event the gateway sends on a cut
        list(stream)
    (row,) = records(gateway)
    served = recorder.bills[0]
    assert row["estimated"] and row["status"] == 502
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (1000, 200)
    assert row["prompt_tokens"] == served.prompt_tokens
    reference = micros(served.prompt_tokens, 1000, 200, served.completion_tokens)
    # the relayed text is what the provider generated up to the cut: within a token
    assert reference - 15 <= row["cost_micros"] <= reference + 15 + 1


def test_a_cut_messages_stream_ends_in_an_error_event_and_keeps_the_split(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=cached_claude(recorder.url))
    texts: list[str] = []
    stream = sdk(gateway).messages.stream(
        model="claude",
        max_tokens=50,
        messages=[{"role": "user", "content": LONG}],
        extra_body={"fake": CUT},
    )
    with pytest.raises(anthropic.APIStatusError) as cut, stream as events:
        texts.extend(events.text_stream)  # not a clean end: the client knows it was cut
    assert "cut the stream" in str(cut.value) or "interrupted" in str(cut.value)
    assert texts  # some text came before the cut
    (row,) = records(gateway)
    served = recorder.bills[0]
    assert row["estimated"] and row["status"] == 502
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (1000, 200)
    reference = micros(served.prompt_tokens, 1000, 200, served.completion_tokens)
    assert reference - 15 <= row["cost_micros"] <= reference + 15 + 1


def test_a_stream_read_to_done_is_complete_though_the_provider_holds_on(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=modelroute("m", "m", backend("main", recorder.url, "2")))
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "fake": {"hold_ms": 3000},  # the provider ends its HTTP response 3 s after [DONE]
    }
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TEAM_KEY}"},
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                break  # the client has everything and hangs up
    time.sleep(0.3)
    assert time.monotonic() - started < 2.5  # the gateway did not wait for the provider
    (row,) = records(gateway)
    assert (row["status"], row["error_code"], row["estimated"]) == (200, None, False)
    served = recorder.bills[0]
    assert row["cost_micros"] == 2 * (served.prompt_tokens + served.completion_tokens)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_after_its_200_is_billed_as_an_estimate(
    make_gateway: GatewayFactory, recorder: RecordingProvider, stream: bool
) -> None:
    route = modelroute(
        "m", "m", backend("main", recorder.url, "2"), extra="  retry: {attempts: 2}\n"
    )
    gateway = make_gateway(extra=route)
    with pytest.raises(openai.APIError):
        result: Any = client(gateway).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=40,
            stream=stream,
            extra_body={"fake": {"fault": "reset", "cut_after": 3, "words": 30}},
        )
        list(result) if stream else None
    served = recorder.bills
    assert len(served) == 1  # never retried: a retry would pay for the answer twice
    (row,) = records(gateway)
    reference = 2 * (served[0].prompt_tokens + served[0].completion_tokens)
    assert row["estimated"] and row["status"] == 502 and row["cost_micros"] > 0
    if stream:  # the relayed text is what was generated up to the cut
        assert abs(row["cost_micros"] - reference) <= 2 * 2
    else:  # the whole answer was generated: billed at the bound reserved for it, at most the
        # reservation: a prompt bound of well under 200 tokens plus max_tokens 40, at $2/M
        assert reference <= row["cost_micros"] <= 2 * (200 + 40)
    assert usage_of(gateway)["limits"][0]["reservedTokens"] == 0


def test_a_timed_out_answer_is_billed_as_an_estimate(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    route = modelroute("slow", "slow", backend("main", recorder.url, "2", extra=", timeout: 1s"))
    gateway = make_gateway(extra=route)
    with pytest.raises(openai.APIStatusError) as timed_out:
        client(gateway).chat.completions.create(
            model="slow",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=40,
            extra_body={"fake": {"fault": "timeout", "delay_ms": 1500}},
        )
    assert timed_out.value.status_code == 504
    time.sleep(0.8)  # the provider finishes the answer it will bill
    served = recorder.bills
    assert len(served) == 1
    (row,) = records(gateway)
    assert (row["status"], row["error_code"], row["estimated"]) == (504, "upstream_timeout", True)
    assert row["cost_micros"] >= 2 * (served[0].prompt_tokens + served[0].completion_tokens)


def test_messages_to_anthropic_are_whole_when_read_to_message_stop(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    with sdk(gateway).messages.stream(
        model="claude",
        max_tokens=50,
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"fake": {"hold_ms": 3000}},
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == recorder.bills[0].completion_tokens
    (row,) = records(gateway)
    assert (row["status"], row["estimated"]) == (200, False)


def test_estimates_settle_on_the_shared_postgresql_ledger(
    make_gateway: GatewayFactory, recorder: RecordingProvider, pg_dsn: str
) -> None:
    route = modelroute("m", "m", backend("main", recorder.url, "2"))
    gateway = make_gateway(extra=route + cached_claude(recorder.url), ledger_dsn=pg_dsn)
    faults: list[tuple[str, bool, dict[str, Any]]] = [
        ("m", False, {"fault": "reset", "words": 30}),  # undelivered
        ("m", True, {"fault": "reset", "cut_after": 3, "words": 30}),  # cut
        ("claude", True, CUT),  # cut, with the cache split
    ]
    for model, stream, fake in faults:
        with pytest.raises(openai.APIError):
            result: Any = client(gateway).chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": LONG}],
                max_tokens=40,
                stream=stream,
                extra_body={"fake": fake},
            )
            list(result) if stream else None
    rows = records(gateway)
    assert len(rows) == 3 and all(r["estimated"] and r["cost_micros"] > 0 for r in rows)
    total = sum(r["cost_micros"] for r in rows)
    wait_for(lambda: window_row(pg_dsn)[0] == total)
    spent, _, reserved_micros, reserved_tokens, requests = window_row(pg_dsn)
    assert spent == total
    assert (reserved_micros, reserved_tokens, requests) == (0, 0, 3)
