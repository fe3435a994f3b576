"""``synthgen review RUN_DIR``: the rows to review and the decisions people post, as a JSON API.

The rows are the ones the pipeline made (:func:`synthgen.reviews.read_unreviewed`), each with its
content hash and its standing decision folded from ``.synthgen/reviews.jsonl``; the log is read on
every request, so two reviewers (two tabs, two servers) see each other's decisions on reload. A post
whose hash no longer matches the row (the run was re-finalized since the page loaded) is refused with
409: the reviewer reloads and decides on what is there now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from synthgen.errors import ConfigError
from synthgen.review.server import json_body, make_app, page_handler
from synthgen.reviews import ACTIONS, AppendLog, Reviews, content_hash, make_review, read_unreviewed
from synthgen.rundir import RunDir

__all__ = ["ReviewRows", "review_app"]


class ReviewRows:
    """A RUN_DIR's reviewable rows, re-read when finalize rewrote them."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.rundir = RunDir(run_dir)
        self.log = AppendLog(self.rundir.reviews)
        self._stamp: tuple[float, float] | None = None
        self._rows: list[dict[str, Any]] = []
        self.load()
        if not self._rows:
            raise ConfigError(
                "no dialogues or preference pairs to review",
                path=run_dir,
                hint=f"run `synthgen run RECIPE --out {run_dir}` first",
            )

    def _mtimes(self) -> tuple[float, float]:
        def mtime(path: Path) -> float:
            return path.stat().st_mtime if path.exists() else 0.0

        return mtime(self.rundir.unreviewed), mtime(self.rundir.run_json)

    def load(self) -> list[dict[str, Any]]:
        stamp = self._mtimes()
        if stamp != self._stamp:
            if not self.rundir.run_json.is_file():
                raise ConfigError(
                    "not a finished RUN_DIR (no run.json)",
                    path=self.run_dir,
                    hint=f"run `synthgen run RECIPE --out {self.run_dir}` first",
                )
            self._rows = [{**r, "hash": content_hash(r["row"])} for r in read_unreviewed(self.run_dir)]
            self._stamp = stamp
        return self._rows

    def listing(self) -> dict[str, Any]:
        reviews = Reviews(self.log.read())
        rows = []
        for r in self.load():
            decision, stale = reviews.decision(r["config"], r["key"], r["hash"])
            rows.append({**r, "decision": decision.to_json() if decision else None, "stale": stale})
        return {
            "run": self.run_dir.name,
            "rows": rows,
            "actions": ACTIONS,
            "decisions": len(reviews.records),
        }

    def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        row = next(
            (r for r in self.load() if r["config"] == body.get("config") and r["key"] == body.get("key")),
            None,
        )
        if row is None:
            raise web.HTTPNotFound(text="no such row: reload the page")
        if body.get("hash") != row["hash"]:
            raise web.HTTPConflict(text="the row changed since the page loaded: reload the page")
        turn = body.get("turn")
        if body.get("action") == "edit":
            messages = row["row"].get("messages", [])
            if not isinstance(turn, int) or not 0 <= turn < len(messages):
                raise ConfigError(f"turn {turn!r} is not a turn of the dialogue", field="turn")
            if messages[turn]["role"] != "assistant":
                raise ConfigError(f"turn {turn} is a {messages[turn]['role']} turn", field="turn",
                                  hint="only the assistant's turns are edited")  # fmt: skip
        record = make_review(
            config=row["config"],
            key=row["key"],
            hash=row["hash"],
            action=str(body.get("action", "")),
            reviewer=str(body.get("reviewer", "")),
            reason=str(body.get("reason", "")),
            turn=turn,
            text=body.get("text"),
        )
        self.log.append(record)
        records = [
            r for r in self.log.read() if r.get("config") == row["config"] and r.get("key") == row["key"]
        ]
        decision, stale = Reviews(records).decision(row["config"], row["key"], row["hash"])
        return {"key": row["key"], "decision": decision.to_json() if decision else None, "stale": stale}


def review_app(run_dir: Path) -> Any:
    """The application factory ``serve`` takes (token -> app) for one RUN_DIR; checks the RUN_DIR now."""
    rows = ReviewRows(run_dir)

    def build(token: str | None) -> web.Application:
        app = make_app(token)

        async def listing(request: web.Request) -> web.StreamResponse:
            return web.json_response(rows.listing())

        async def decide(request: web.Request) -> web.StreamResponse:
            return web.json_response(rows.decide(await json_body(request)))

        app.router.add_get("/", page_handler("review.html"))
        app.router.add_get("/static/review.js", page_handler("review.js"))
        app.router.add_get("/api/rows", listing)
        app.router.add_post("/api/review", decide)
        return app

    return build
