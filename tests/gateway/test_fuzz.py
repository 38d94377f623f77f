"""Fuzzing the gateway on real loopback HTTP: no 5xx and no unhandled exception.

- schemathesis generates requests from the gateway's own OpenAPI schema (GET /openapi.json),
  valid ones and invalid ones, for every operation;
- hypothesis throws arbitrary JSON (and non-JSON) bodies at the request parsing of the proxy
  endpoints.

Together they send at least 10,000 requests (FUZZ_CASES); each must be answered below 500, in
the OpenAI error shape when it is an error, and the gateway must log no unhandled exception.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.harness import ADMIN_TOKEN

FUZZ_CASES = 10_000
SCHEMA_SHARE = 0.5  # half the cases from the schema, half from the body fuzzer
BIG_BUDGET = """\
limits:
  - {period: Monthly, amount: "100000"}
"""
FAST = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
}


def headers_for(path: str) -> dict[str, str]:
    token = ADMIN_TOKEN if path.startswith("/admin/") else TEAM_KEY
    return {"Authorization": f"Bearer {token}"}


def check(response_status: int, body: bytes, what: str) -> None:
    assert response_status < 500, f"{what} -> {response_status}: {body[:300]!r}"
    if response_status >= 400 and body[:1] == b"{":
        error = json.loads(body)
        assert "error" in error or error.get("type") == "error", (what, body[:300])


def fuzz_operation(root: str, operation: Any, mode: GenerationMode, examples: int) -> int:
    """Send `examples` generated cases of one operation; returns how many were sent."""
    auth = headers_for(operation.path)
    sent = 0

    @settings(max_examples=examples, **FAST)  # type: ignore[arg-type]
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal sent
        response = case.call(base_url=root, headers=auth, timeout=15)
        sent += 1
        check(response.status_code, response.content, f"{case.method} {case.path}")

    run()
    return sent


def test_schemathesis_finds_no_server_error(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = make_gateway(budget_spec=BIG_BUDGET)
    raw = httpx.get(f"{gateway.root}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) == 11  # every operation of the schema loads
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    per_run = -(-int(FUZZ_CASES * SCHEMA_SHARE) // (len(modes) * len(operations)))
    caplog.set_level(logging.ERROR, logger="llmbudget")
    sent = sum(
        fuzz_operation(gateway.root, operation, mode, per_run)
        for operation in operations
        for mode in modes
    )
    assert sent >= FUZZ_CASES * SCHEMA_SHARE * 0.9, sent  # hypothesis may dedupe a few
    unhandled = [r for r in caplog.records if "unhandled" in r.getMessage()]
    assert not unhandled, unhandled[0].getMessage()


KEYS = st.sampled_from(
    [
        "model", "messages", "stream", "stream_options", "include_usage", "max_tokens",
        "max_completion_tokens", "role", "content", "tools", "input", "user", "type", "text",
        "system", "temperature", "n", "name", "tool_calls", "image_url",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["gpt-4.1", "text-embedding-3-small", "user", "assistant", "auto", ""]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"model": st.just("gpt-4.1"), "messages": JSON}, optional={"stream": JSON}
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),  # not JSON at all
)


def fuzz_bodies(http: httpx.Client, path: str, examples: int) -> int:
    auth = {**headers_for(path), "Content-Type": "application/json"}
    sent = 0

    @settings(max_examples=examples, **FAST)  # type: ignore[arg-type]
    @given(body=BODIES)
    def run(body: bytes) -> None:
        nonlocal sent
        response = http.post(path, content=body, headers=auth)
        sent += 1
        check(response.status_code, response.content, f"POST {path} {body[:100]!r}")

    run()
    return sent


def test_arbitrary_bodies_never_get_a_server_error(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = make_gateway(budget_spec=BIG_BUDGET)
    paths = ["/v1/chat/completions", "/v1/embeddings", "/v1/messages"]
    per_path = -(-int(FUZZ_CASES * (1 - SCHEMA_SHARE)) // len(paths))
    caplog.set_level(logging.ERROR, logger="llmbudget")
    with httpx.Client(base_url=gateway.root, timeout=15) as http:
        sent = sum(fuzz_bodies(http, path, per_path) for path in paths)
    assert sent >= FUZZ_CASES * (1 - SCHEMA_SHARE) * 0.9, sent
    unhandled = [r for r in caplog.records if "unhandled" in r.getMessage()]
    assert not unhandled, unhandled[0].getMessage()
