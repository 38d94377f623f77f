"""Limits of the HTTP layer, enforced while a request is parsed, answered as JSON errors.

uvicorn's httptools protocol accepts URLs and headers of any size and count, and answers a
request it cannot parse with a plain-text 400. This protocol stops reading a request whose URL
or headers pass the limits below (nothing more of it is buffered) and answers every refusal in
the gateway's JSON error shape: 414 `uri_too_long`, 431 `headers_too_large`, 400
`invalid_http_request`. The connection is closed after the answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024  # names and values of all headers together
MAX_HEADERS = 100


class _LimitExceeded(Exception):
    pass


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: tuple[int, str, str] | None = None
        self._header_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._refuse(414, "uri_too_long", f"the URL is longer than {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value)
        if len(self.headers) > MAX_HEADERS:
            self._refuse(431, "headers_too_large", f"more than {MAX_HEADERS} headers")
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(
                431, "headers_too_large", f"headers are larger than {MAX_HEADER_BYTES} bytes"
            )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = (status, code, message)
        raise _LimitExceeded(code)  # httptools turns it into HttpParserCallbackError

    def send_400_response(self, msg: str) -> None:
        status, code, message = self._refusal or (
            400,
            "invalid_http_request",
            "the request is not valid HTTP/1.1",
        )
        self._refusal = None
        body = orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        )
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
