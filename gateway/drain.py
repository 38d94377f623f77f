"""Drain on SIGTERM: keep serving for a while, send clients elsewhere, then stop.

When a Pod is deleted, the kubelet sends SIGTERM while the endpoint is still being removed
from Services and kube-proxy's rules (about a second), and clients hold keep-alive
connections to the Pod. Stopping at once refuses the requests on their way. Draining instead:

- `/readyz` answers 503 `draining` (no new traffic from Services that still list the Pod);
- every response carries `Connection: close`, so each keep-alive client finishes its request
  and opens its next connection to a replica that stays;
- after `seconds`, the server stops as before: it accepts no new connection, lets in-flight
  requests finish and flushes the ledger.

A second SIGTERM, or SIGINT, ends the drain early: the server then stops as above (in-flight
requests still finish). `seconds` 0 turns draining off. A SIGTERM that arrives before the
gateway has started (waiting for the previous process to release the SQLite ledger, or for
PostgreSQL) sets `stop_requested`: startup gives up with `StartupCancelled` and the process
exits instead of starting only to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Message, Send

CLOSE = (b"connection", b"close")


@dataclass
class Drain:
    seconds: float = 0.0
    draining: bool = False
    stop_requested: bool = False  # a signal before startup finished


class StartupCancelled(Exception):
    """The process was told to stop while startup was still waiting (ledger lock, database):
    startup fails on purpose and the process exits."""


def closing(send: Send) -> Send:
    """`send`, adding `Connection: close` to the response's headers."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, CLOSE]}
        await send(message)

    return send_closing
