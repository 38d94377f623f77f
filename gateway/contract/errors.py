"""Precise config errors: which file, which object, which field, and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class ConfigIssue:
    """One reason a config cannot be loaded."""

    source: str  # a file path, or "<name>" for in-memory input
    field: str  # dotted path such as "spec.limits[0].amount", or "" for the whole source
    reason: str
    obj: str = ""  # "TokenBudget marketing/monthly" when the source holds several objects

    def __str__(self) -> str:
        parts = [self.source]
        if self.obj:
            parts.append(self.obj)
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.reason])


class ConfigError(ValueError):
    """A config (file or manifest directory) that cannot be loaded; lists every issue found."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues) or "invalid config")


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """("spec", "limits", 0, "amount") -> "spec.limits[0].amount"."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "union[")) or part in ("str", "int"):
            continue  # pydantic's internal validator names, not field names
        else:
            path = f"{path}.{part}" if path else part
    return path


def issues_from_validation(
    error: ValidationError, source: str, prefix: str = "", obj: str = ""
) -> list[ConfigIssue]:
    """Turn pydantic's errors into ConfigIssues whose fields use the manifest's names."""
    issues = []
    for detail in error.errors(include_url=False):
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            reason = "unknown field"
        elif detail["type"] == "missing":
            reason = "required field is missing"
        issues.append(ConfigIssue(source, field_path(detail["loc"], prefix), reason, obj))
    return issues
