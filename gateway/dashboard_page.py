"""The built-in dashboard: three static files, no external resources (CDNs, fonts).

GET /dashboard            the page (its script reads the admin API with the admin token,
                          given once as /dashboard#token=... or typed in; kept in the tab's
                          sessionStorage, never in the URL sent to the server)
GET /dashboard/app.js     the script
GET /dashboard/style.css  the styles

The files are public (they hold no data); every number comes from the admin API, which
requires the token. A strict Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from llmbudget_gateway.errors import GatewayError

FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    body = resources.files("llmbudget_gateway").joinpath("dashboard", name).read_bytes()
    return Response(body, media_type=FILES[name], headers=HEADERS)


async def page(request: Request) -> Response:
    return _file("index.html")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES or name == "index.html":
        raise GatewayError(404, f"unknown path {request.url.path}", code="unknown_url")
    return _file(name)
