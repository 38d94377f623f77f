"""One request's meter: reserve before forwarding, settle exactly once after, record always.

`Exchange.admit` asks the budget book for a reservation of the worst-case cost: prompt
estimate plus max tokens at the most expensive price any backend the request can reach (its
plan: primary, fallbacks) may charge (pricing.PriceBook.worst_case). `Exchange.finish` settles
the reservation to the real usage (or releases it when nothing was consumed), writes the
ledger row, records threshold crossings and updates metrics. It is idempotent: the first call
wins. Usage that is an estimate (cut streams, undelivered answers) is flagged `estimated`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn

from llmbudget_gateway.budgets import Crossing, Denial, Reservation, refusal
from llmbudget_gateway.contract.config import Backend, Route
from llmbudget_gateway.errors import GatewayError
from llmbudget_gateway.ledger.records import LedgerRecord, WindowKey
from llmbudget_gateway.runtime import Caller
from llmbudget_gateway.services import Services
from llmbudget_gateway.shared_budgets import SharedBudgets, SharedLedgerUnavailable, windows_of
from llmbudget_gateway.usage import Usage

log = logging.getLogger("llmbudget.gateway")


@dataclass
class Exchange:
    services: Services
    caller: Caller
    tags: dict[str, str]
    endpoint: str
    requested_model: str
    stream: bool = False
    request_id: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.perf_counter)
    route: Route | None = None
    backend: Backend | None = None
    reservation: Reservation | None = None
    first_token_at: float | None = None
    finished: bool = False
    route_decision: str | None = None
    attempts: int = 0
    cost_micros: int = 0
    max_output: int = 0  # completion tokens reserved
    _prompt_bound: int = 0
    _exact_prompt: Callable[[], int] | None = None
    _prompt_exact: int | None = None
    windows: tuple[WindowKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id = self.services.new_request_id()

    def worst_case(self, backends: list[Backend], prompt_tokens: int) -> int:
        """Micro-dollars the request may cost at the dearest of `backends`."""
        prices = self.services.runtime.prices
        return max(prices.worst_case(b, prompt_tokens, self.max_output).micros for b in backends)

    async def admit(
        self,
        route: Route,
        backends: list[Backend],
        prompt_tokens: int,
        max_tokens: int,
        exact_prompt: Callable[[], int] | None = None,
    ) -> None:
        """Reserve the worst case or raise a 429 GatewayError naming the budget.

        `backends` are all the request may reach (primary and fallbacks): the reservation is
        priced at the dearest. `prompt_tokens` may be a cheap upper bound; if it would be
        refused, `exact_prompt` (tokenizing the prompt) decides instead. Either way the
        reservation is a true worst case, and the tokenizer runs only for requests near a
        limit."""
        self.route, self.backend = route, backends[0]
        self._prompt_bound, self._exact_prompt = prompt_tokens, exact_prompt
        self.max_output = max_tokens
        book = self.services.book
        tokens = prompt_tokens + max_tokens
        micros = self.worst_case(backends, prompt_tokens)
        if exact_prompt is not None and book.would_refuse(
            self.caller.namespace, self.tags, micros, tokens, self.started
        ):
            tokens = self.prompt_estimate() + max_tokens
            micros = self.worst_case(backends, self.prompt_estimate())
        decision = book.reserve(self.caller.namespace, self.tags, micros, tokens, self.started)
        if isinstance(decision, Denial):
            self._refuse(decision)
        self.reservation = decision
        if self.services.shared is not None and decision.charges:
            await self._reserve_shared(self.services.shared, decision)

    def _refuse(self, denial: Denial) -> NoReturn:
        self.services.metrics.refused.labels(
            self.caller.namespace, denial.budget.name, denial.code
        ).inc()
        error = GatewayError(
            429,
            denial.message,
            type="insufficient_quota",
            code=denial.code,
            headers={"Retry-After": str(denial.retry_after_seconds)},
        )
        self.finish(None, status=429, error_code=denial.code, crossings=list(denial.crossings))
        raise error

    async def _reserve_shared(self, shared: SharedBudgets, reservation: Reservation) -> None:
        """Reserve in the shared ledger too (several replicas); the local reservation is held
        meanwhile. Refused there: released here, and the same 429 as a local refusal."""
        windows = windows_of(reservation)
        try:
            refused = await shared.reserve(self.request_id, reservation, self.started)
        except asyncio.CancelledError:
            self.windows = windows  # its row settles a reservation the database may hold
            self.finish(None, 499, "cancelled")
            raise
        except SharedLedgerUnavailable as error:
            self.services.metrics.ledger_unavailable.inc()
            if shared.fail_open:
                log.warning("shared ledger unavailable (%s): admitting on local view", error)
                self.windows = windows  # settled when the database is back
                return
            reservation.release()
            self.reservation = None
            self.finish(None, 503, "ledger_unavailable")
            raise GatewayError(
                503,
                "the budget ledger database is unavailable; requests are refused until it "
                "is back (fail-closed)",
                type="server_error",
                code="ledger_unavailable",
                headers={"Retry-After": "5"},
            ) from None
        if refused is None:
            self.windows = windows
            return
        reservation.release()
        self.reservation = None
        self._refuse(refusal(*refused, self.started))

    def prompt_estimate(self) -> int:
        """The tokenizer's count of the prompt (computed once, on demand), else the bound."""
        if self._prompt_exact is None:
            if self._exact_prompt is None:
                return self._prompt_bound
            self._prompt_exact = self._exact_prompt()
        return self._prompt_exact

    def estimate_whole(self, text: str) -> Usage:
        """Usage of a whole answer that reported none: the prompt estimate and its text."""
        return Usage(
            prompt_tokens=self.prompt_estimate(),
            completion_tokens=self.services.tokens.count_text(text),
        )

    def estimate_undelivered(self, whole_answer: bool) -> Usage:
        """Usage of an answer the provider bills but the gateway could not read (a body cut
        after its 200, a timeout after sending, a 200 that is not JSON): the prompt estimate
        and, if the whole answer may have been generated, every completion token reserved
        (its length is unknown: this is the upper bound). A stream that never started stops
        generating when the gateway hangs up: prompt only."""
        completion = self.max_output if whole_answer else 0
        return Usage(prompt_tokens=self.prompt_estimate(), completion_tokens=completion)

    def record_attempt(self, status: int, error_code: str) -> None:
        """A failed attempt before a retry or fallback: its own ledger row, nothing billed."""
        self.attempts += 1
        record = self._record(f"{self.request_id}.{self.attempts}", Usage(), 0, status, error_code)
        record.route_decision = f"attempt {self.attempts} failed; retrying"
        record.windows = ()  # the request's own row settles its reservation
        self.services.ledger.submit(record)
        self.services.metrics.series(self.caller.namespace, self.requested_model).count_status(
            status
        )

    def _record(
        self, request_id: str, usage: Usage, cost_micros: int, status: int, error_code: str | None
    ) -> LedgerRecord:
        backend = self.backend
        return LedgerRecord(
            request_id=request_id,
            ts_ms=int(self.started.timestamp() * 1000),
            namespace=self.caller.namespace,
            key_name=self.caller.key_name,
            budgets=self.reservation.budgets if self.reservation else [],
            project=self.tags.get("project"),
            user_id=self.tags.get("user"),
            session_id=self.tags.get("session"),
            environment=self.tags.get("environment"),
            cost_center=self.tags.get("costCenter"),
            endpoint=self.endpoint,
            requested_model=self.requested_model,
            routed_model=backend.model if backend else "",
            route=self.route.name if self.route else "",
            backend=backend.name if backend else "",
            provider=backend.provider.value if backend else "",
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_micros=cost_micros,
            latency_ms=round((time.perf_counter() - self.t0) * 1000, 3),
            status=status,
            error_code=error_code,
            stream=self.stream,
            route_decision=self.route_decision,
            windows=self.windows,
        )

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def finish(
        self,
        usage: Usage | None,
        status: int,
        error_code: str | None = None,
        estimated: bool = False,
        crossings: list[Crossing] | None = None,
        at_worst_price: bool = False,
    ) -> None:
        """Settle (or release) and record. Only the first call has an effect.

        `at_worst_price`: the usage's split is unknown (an answer never read): it is priced
        at its dearest split, so that the estimate is an upper bound of the provider's bill."""
        if self.finished:
            return
        self.finished = True
        services = self.services
        now = datetime.now(UTC)
        cost_micros, priced = 0, True
        crossings = list(crossings or [])
        if usage is not None and self.backend is not None:
            prices = services.runtime.prices
            if at_worst_price:
                cost = prices.worst_case(self.backend, usage.prompt_tokens, usage.completion_tokens)
            else:
                cost = prices.cost(self.backend, usage)
            cost_micros, priced = cost.micros, cost.priced
        if self.reservation is not None:
            if usage is None or usage.total_tokens == 0:
                self.reservation.release()
            else:
                crossings += self.reservation.settle(cost_micros, usage.total_tokens, now)
        self.cost_micros = cost_micros
        usage = usage or Usage()
        elapsed = time.perf_counter() - self.t0
        ttft = self.first_token_at - self.t0 if self.first_token_at is not None else None
        record = self._record(self.request_id, usage, cost_micros, status, error_code)
        record.latency_ms = round(elapsed * 1000, 3)
        record.ttft_ms = round(ttft * 1000, 3) if ttft is not None else None
        record.estimated = estimated
        record.unpriced = not priced
        services.ledger.submit(record, crossings)
        self._observe(record, elapsed, ttft)

    def _observe(self, record: LedgerRecord, elapsed: float, ttft: float | None) -> None:
        series = self.services.metrics.series(record.namespace, record.requested_model)
        series.count_status(record.status)
        if record.status >= 400 and record.total_tokens == 0:
            return
        series.latency.observe(elapsed)
        if ttft is not None:
            series.ttft.observe(ttft)
        tokens = series.tokens
        tokens["prompt"] += record.prompt_tokens
        tokens["completion"] += record.completion_tokens
        tokens["cached"] += record.cached_tokens
        tokens["reasoning"] += record.reasoning_tokens
        if record.unpriced:
            series.unpriced += 1
        else:
            series.cost_micros += record.cost_micros
        if record.estimated:
            series.estimated += 1
        for budget in record.budgets:  # "namespace/name" of every budget the request matched
            pair = series.budget(budget.partition("/")[2])
            pair[0] += record.prompt_tokens
            pair[1] += record.completion_tokens
