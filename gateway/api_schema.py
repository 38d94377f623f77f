"""GET /openapi.json: the gateway's API as OpenAPI 3, from gateway/openapi.yaml.

Public: it describes the endpoints and holds no data. The fuzz suite (tests/gateway/
test_fuzz.py) generates requests from it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response


@cache
def schema_json() -> bytes:
    text = resources.files("llmbudget_gateway").joinpath("openapi.yaml").read_text("utf-8")
    return orjson.dumps(yaml.safe_load(text))


async def openapi(request: Request) -> Response:
    return Response(schema_json(), media_type="application/json")
