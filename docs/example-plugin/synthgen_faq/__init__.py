"""synthgen-faq: an example synthgen plugin (see docs/writing-a-generator.md in the synthgen repo)."""

from __future__ import annotations

from .generator import FaqGenerator

__all__ = ["FaqGenerator"]
