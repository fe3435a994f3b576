"""Deprecated: generator discovery moved to :mod:`synthgen.generators.registry`.

``synthgen.registry.refresh()`` keeps working for one minor release, with a ``DeprecationWarning``;
use ``synthgen.refresh_generators()``.
"""

from __future__ import annotations

import warnings


def refresh() -> None:
    """Forget cached entry points (deprecated alias of :func:`synthgen.refresh_generators`)."""
    warnings.warn(
        "synthgen.registry.refresh() is deprecated; use synthgen.refresh_generators()",
        DeprecationWarning,
        stacklevel=2,
    )
    from synthgen.generators.registry import refresh_generators

    refresh_generators()
