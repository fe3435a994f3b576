"""Progress lines for runs without a terminal (nohup, CI): how often, and where they go."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from synthgen.errors import ConfigError

__all__ = ["Stderr", "progress_seconds", "show_progress_lines"]


def progress_seconds() -> float | None:
    """Seconds between progress lines without a bar: ``SYNTHGEN_PROGRESS_SECONDS`` (0: none), else 30."""
    raw = os.environ.get("SYNTHGEN_PROGRESS_SECONDS", "").strip()
    try:
        seconds = float(raw) if raw else 30.0
    except ValueError:
        raise ConfigError(
            f"SYNTHGEN_PROGRESS_SECONDS={raw!r} is not a number", hint="seconds between progress lines, or 0"
        ) from None
    return seconds if seconds > 0 and math.isfinite(seconds) else None


class Stderr(logging.StreamHandler):
    """To whatever ``sys.stderr`` is when a line is written (a redirect made after the run started)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def show_progress_lines() -> None:
    """Without a terminal nothing else shows progress: its lines go to stderr unless the application
    configured logging itself (then they reach its handlers as ``synthgen.progress`` INFO records)."""
    progress = logging.getLogger("synthgen.progress")
    if progress.handlers or logging.getLogger().handlers:
        return
    handler = Stderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False
