"""Who a request is for: tags from headers (and the OpenAI `user` field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmbudget_gateway.errors import bad_request

MAX_TAG_LENGTH = 128
TAG_HEADERS = {
    "project": "x-project",
    "user": "x-user-id",
    "session": "x-session-id",
    "environment": "x-environment",
    "costCenter": "x-cost-center",
}


def request_tags(headers: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, str]:
    """Tag name -> value. The namespace is never a tag: it comes from the API key."""
    tags: dict[str, str] = {}
    for tag, header in TAG_HEADERS.items():
        value = headers.get(header)
        if value is None and tag == "user" and isinstance(body.get("user"), str):
            value = body["user"]
        if value is None or value == "":
            continue
        if len(value) > MAX_TAG_LENGTH:
            raise bad_request(
                f"{header} is longer than {MAX_TAG_LENGTH} characters", code="invalid_tag"
            )
        tags[tag] = value
    return tags
