"""Seeded randomness: every sampling decision derives from hash(recipe seed, item id), never from the
order in which work completes, so the same recipe and cache give the same dataset.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = ["item_seed"]


def item_seed(recipe_seed: int, *parts: str) -> int:
    """Per-item randomness from hash(recipe seed, item id): independent of completion order."""
    digest = hashlib.sha256("\x1f".join([str(recipe_seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big")
