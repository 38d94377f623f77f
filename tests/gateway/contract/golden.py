"""Golden files: compare with a checked-in expectation; LLMBUDGET_UPDATE_GOLDEN=1 rewrites it."""

from __future__ import annotations

import json
import os
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden")


def assert_golden(name: str, canonical_json: str) -> None:
    pretty = json.dumps(json.loads(canonical_json), indent=2, sort_keys=True) + "\n"
    path = GOLDEN / name
    if os.environ.get("LLMBUDGET_UPDATE_GOLDEN") == "1":
        path.write_text(pretty)
    assert path.exists(), f"{path} missing: run with LLMBUDGET_UPDATE_GOLDEN=1 to create it"
    assert pretty == path.read_text(), f"{name} differs from golden (LLMBUDGET_UPDATE_GOLDEN=1)"
