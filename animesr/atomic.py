"""Never a half-written output: write beside the target, rename onto it on success."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_on_success(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that pick the
    format from the name); rename it onto `path` when the block succeeds, remove it when the
    block fails, so `path` keeps its previous content."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
