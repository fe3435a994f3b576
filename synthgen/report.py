"""Reports on a RUN_DIR: the terminal summary (the HTML report builds on the same numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["summary"]


def _load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no run.json",
            path=run_dir,
            hint="run `synthgen run RECIPE --out RUN_DIR` first (or let it finish)",
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def summary(run_dir: str | Path) -> str:
    """Counts per step, failure and rejection reasons, tokens and cost."""
    run_dir = Path(run_dir)
    result = _load(run_dir)
    lines = [
        f"{result['recipe']} ({'offline' if result['offline'] else 'online'}) in {run_dir}",
        f"splits: {result['splits']}",
    ]
    for name, c in result["steps"].items():
        lines.append(
            f"{name} [{c['generator']} v{c['version']} -> {c['output']}]: {c['items']} items: "
            f"{c['ok']} ok, {c['failed']} failed, {c['rejected']} rejected, {c['not_started']} not started; "
            f"{c['rows']} rows"
        )
        for label, reasons in (("failures", c["failures"]), ("rejections", c["rejections"])):
            if reasons:
                lines.append(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    total = result["usage"]["total"]
    lines.append(
        f"tokens: {total['prompt_tokens']} prompt + {total['completion_tokens']} completion; "
        f"cost ${result['cost_usd']:.4f}; cache hits {result['usage']['cache_hits']}"
    )
    lines.append(f"models: {', '.join(result['response_models'])}")
    return "\n".join(lines)
