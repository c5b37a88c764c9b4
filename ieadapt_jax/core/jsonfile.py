"""Reading the small JSON files checkpoints and pipelines carry (config.json, model_index.json, ...)."""
from __future__ import annotations

import json
from pathlib import Path


def read_json_object(file: str | Path, error: type[Exception] = ValueError) -> dict:
    """The JSON object in ``file``; ``error`` (naming the file) when it cannot be read, parsed, or is not an object."""
    file = Path(file)
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"cannot parse {file}: {e}") from None
    if not isinstance(value, dict):
        raise error(f"{file} must hold a JSON object, got {type(value).__name__}")
    return value
