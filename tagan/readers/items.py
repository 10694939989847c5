"""The items.jsonl format written by the tags_data stage: one tagged image per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tagan.errors import UserError


def read_items(path: Path) -> list[dict[str, Any]]:
    """Rows of an items.jsonl written by this stage."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run `dvc repro tags_data` first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
