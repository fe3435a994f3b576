"""``synthgen review --apply RUN_DIR``: re-finalize the dataset with people's decisions on top.

Applying is finalizing: the resumed ``synthgen run`` of the recipe that made the RUN_DIR (its path and
the last run's ``--limit`` are kept in ``.synthgen/state.json``) with ``generate=False``: it sends no
request (no retry, no missing item), reads what is journaled, and writes the dataset, card and manifest
anew in one swap with the decisions applied (:func:`synthgen.reviews.apply_reviews`). ``synthgen run``
on the RUN_DIR applies them too, generating what is missing first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthgen.errors import ConfigError
from synthgen.pipeline.result import RunResult
from synthgen.pipeline.runner import run
from synthgen.rundir import RunDir

__all__ = ["apply_reviews_to"]


def apply_reviews_to(
    run_dir: str | Path, *, recipe: str | Path | None = None, notify: Callable[[str], None] | None = None
) -> RunResult:
    """Re-finalize ``run_dir`` with its review decisions; ``recipe`` when its recipe file has moved."""
    run_dir = Path(run_dir)
    state = RunDir(run_dir).read_state()
    if state is None:
        raise ConfigError(
            "no .synthgen/state.json: not a RUN_DIR synthgen made here",
            path=run_dir,
            hint="pass the --out folder of `synthgen run`",
        )
    kept = state.get("recipe_path")  # relative to the RUN_DIR
    path = Path(recipe) if recipe is not None else (run_dir / kept if kept else None)
    if not path or not Path(path).is_file():
        raise ConfigError(
            f"the recipe that made {run_dir} is not known or not there ({path or 'not recorded'})",
            path=run_dir,
            hint="pass it: synthgen review --apply RUN_DIR --recipe RECIPE",
        )
    limit = state.get("limit")
    return run(
        Path(path),
        out=run_dir,
        offline=bool(state.get("offline")),
        limit=limit if isinstance(limit, int) else None,
        notify=notify,
        generate=False,
    )
