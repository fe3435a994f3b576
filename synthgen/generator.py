"""Deprecated: the generator API moved to :mod:`synthgen.generators.base` (import it from ``synthgen``).

Kept for one minor release so plugins written against the first release keep working; every name
read from here emits a ``DeprecationWarning`` naming its new home.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {
    "item_seed": "synthgen.determinism",
    "Generator": "synthgen.generators.base",
    "GeneratorContext": "synthgen.generators.base",
    "Rejected": "synthgen.generators.base",
    "WorkItem": "synthgen.generators.base",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'synthgen.generator' has no attribute {name!r}")
    warnings.warn(
        f"synthgen.generator.{name} is deprecated; use `from synthgen import {name}`",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(module), name)
