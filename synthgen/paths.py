"""Where synthgen keeps state outside a RUN_DIR: ``$SYNTHGEN_HOME`` (default ``~/.cache/synthgen``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_path", "home"]


def home() -> Path:
    return Path(os.environ.get("SYNTHGEN_HOME") or Path.home() / ".cache" / "synthgen").expanduser()


def cache_path() -> Path:
    return home() / "cache.sqlite3"
