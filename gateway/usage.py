"""Token usage reported by a provider, normalised across OpenAI and Anthropic.

`prompt_tokens` counts every input token, cached or not; `cached_tokens` (cache reads) and
`cache_write_tokens` are parts of it. `completion_tokens` counts every output token;
`reasoning_tokens` is part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(slots=True, frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """From an OpenAI `usage` object (chat completions or embeddings); None if absent."""
        if not isinstance(usage, dict):
            return None
        prompt_details = _dict(usage.get("prompt_tokens_details"))
        completion_details = _dict(usage.get("completion_tokens_details"))
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=min(_int(prompt_details.get("cached_tokens")), prompt),
            reasoning_tokens=min(_int(completion_details.get("reasoning_tokens")), completion),
        )

    @classmethod
    def from_anthropic(cls, usage: Any) -> Usage | None:
        """From an Anthropic Messages `usage` object: input_tokens excludes cache reads/writes."""
        if not isinstance(usage, dict):
            return None
        cache_read = _int(usage.get("cache_read_input_tokens"))
        cache_write = _int(usage.get("cache_creation_input_tokens"))
        return cls(
            prompt_tokens=_int(usage.get("input_tokens")) + cache_read + cache_write,
            completion_tokens=_int(usage.get("output_tokens")),
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
        )


def _dict(value: Any) -> dict[str, Any]:
    """A details object as a dict; anything else (null, a string) counts as empty."""
    return value if isinstance(value, dict) else {}
