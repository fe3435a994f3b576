"""The ``synthgen`` command: a thin shell over the Python API.

Each command calls one API function; one mapper turns a :class:`SynthgenError` into its message on
stderr and exit code 2 (bad input) or 1 (runtime failure). Ctrl-C exits 130 and says how to resume.

One module on purpose (~550 lines): it is the whole command surface (options, help examples, how
results print) and holds no logic of its own, so reading it top to bottom is reading the CLI
contract of DESIGN §3; split across files, the shared error mapper and option conventions would
drift apart command by command.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from synthgen.errors import SynthgenError

F = TypeVar("F", bound=Callable[..., Any])


def _errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SynthgenError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho(
                "interrupted: what finished is kept (a run resumes when re-run the same way)", err=True
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


_outside = click.option(
    "--allow-outside-paths",
    is_flag=True,
    help="Let the recipe read files outside its folder and its seeds' folders (only for recipes you trust).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="synthgen")
def main() -> None:
    """Turn a handful of expert Q&A pairs into a domain assistant's training data.

    \b
    Example (no API key needed):
      synthgen validate recipes/offline-demo/recipe.yaml
      synthgen run recipes/offline-demo/recipe.yaml --offline --out runs/demo
      synthgen report runs/demo
    """


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--language", default="es", show_default=True, help="Language of seeds and prompts (es, en).")
@_errors
def init(directory: Path, language: str) -> None:
    """Scaffold seeds, personas and a recipe for a new faculty in DIRECTORY.

    \b
    Example:
      synthgen init my-faculty --language es
    """
    from synthgen import scaffold

    created = scaffold(directory, language=language)
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"next: edit the seeds, then `synthgen validate {directory / 'recipe.yaml'}`")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@_outside
@_errors
@click.option("--online", is_flag=True, help="Also probe each endpoint and model, as `synthgen doctor` does.")
def validate(recipe: Path, allow_outside_paths: bool, online: bool) -> None:
    """Check RECIPE offline: schema, paths, seeds, generator configs, templates (dry-rendered).

    \b
    Example:
      synthgen validate recipes/faculty-sciences-es/recipe.yaml
      synthgen validate recipes/faculty-sciences-es/recipe.yaml --online
    """
    from synthgen import validate_recipe

    summary = validate_recipe(recipe, allow_outside_paths=allow_outside_paths)
    click.echo(summary)
    if online:
        _doctor(recipe, allow_outside_paths)


def _doctor(recipe: Path, allow_outside_paths: bool) -> None:
    """Print the doctor's table per server; exit 1 when one cannot be used."""
    from synthgen import doctor

    reports = doctor(recipe, allow_outside_paths=allow_outside_paths)
    for report in reports:
        rows = report.rows()
        width = max(len(label) for label, _ in rows)
        click.echo("")
        for label, value in rows:
            click.echo(f"  {label.ljust(width)}  {value}")
    unusable = [r for r in reports if not r.capabilities.reachable]
    if unusable:
        click.secho(
            f"error: {len(unusable)} of {len(reports)} servers cannot be used (see above)", fg="red", err=True
        )
        sys.exit(1)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@_outside
@_errors
def doctor(recipe: Path, allow_outside_paths: bool) -> None:
    """Probe each endpoint + model RECIPE names: reachable, structured output, sampling, limits.

    A few tiny requests per server (not counted as dataset spend) find out whether it enforces,
    ignores or rejects json_schema, whether json_object works, whether temperature/seed change the
    answer, whether usage and x-ratelimit-* headers come back, where reasoning text arrives and
    which token parameter it honours; ``structured_output: auto`` profiles then use what works
    (cached for a day in $SYNTHGEN_HOME/servers.json).

    \b
    Example:
      synthgen doctor recipes/faculty-sciences-es/recipe.yaml
    """
    _doctor(recipe, allow_outside_paths)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pilot", type=click.IntRange(min=1), help="Run N real items per step and extrapolate.")
@click.option("--offline", is_flag=True, help="Simulate with the embedded offline provider.")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=32,  # synthgen.pipeline.estimate.DEFAULT_SAMPLE (not imported: startup time)
    show_default=True,
    help="Items simulated per step (0: every item, slower; the error is then 0).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@_outside
@_errors
def estimate(
    recipe: Path, pilot: int | None, offline: bool, sample: int, as_json: bool, allow_outside_paths: bool
) -> None:
    """Planned calls, tokens and USD per step and model, before spending.

    \b
    Example:
      synthgen estimate recipes/faculty-sciences-es/recipe.yaml --pilot 5
    """
    from synthgen import estimate as estimate_recipe

    result = estimate_recipe(
        recipe, pilot=pilot, offline=offline, sample=sample or None, allow_outside_paths=allow_outside_paths
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    reused = " (reused: same recipe, sample and prices)" if result.cached else ""
    click.echo(f"method: {result.method}; tokens counted with {result.token_counter}{reused}")
    for name, step in result.steps.items():
        simulated = f" ({step.sampled} simulated)" if step.sampled < step.items else ""
        free = f" + {step.cached_calls:.0f} answered by the cache" if step.cached_calls else ""
        click.echo(
            f"{name}: {step.items} items{simulated}, ~{step.calls:.0f} calls{free}, ~{step.prompt_tokens:.0f} "
            f"prompt + ~{step.completion_tokens:.0f} completion tokens, ~${step.usd:.2f}"
            + (f"; Batch API: ~{step.waves} waves" if step.waves else "")
        )
        for model, m in step.by_model.items():
            usd = (
                f"~${m['usd']:.2f}" if m.get("priced", True) else "n/a (unpriced: set prices on its profile)"
            )
            batch = " at the batch price" if m.get("batch") and m.get("priced", True) else ""
            click.echo(f"  {model}: ~{m['calls']:.0f} calls, {usd}{batch}")
    unpriced = f" + n/a for unpriced {', '.join(result.unpriced)}" if result.unpriced else ""
    error = f" (±{result.error:.0%} sampling error, 95%)" if result.error else ""
    click.echo(f"total: ~{result.tokens:.0f} tokens, ~${result.usd:.2f}{unpriced}{error}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="RUN_DIR (default runs/<name>)."
)
@click.option("--offline", is_flag=True, help="Use the embedded offline provider (no key, no network).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N work items per step.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1024),  # synthgen.llm.profile.MAX_CONCURRENCY (not imported: startup time)
    help="Override every profile's max_concurrency (1-1024).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the response cache.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask when the estimate exceeds the budget.")
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Retry every failed item (a re-run always retries transient failures: network, 429, 5xx).",
)
@_outside
@_errors
def run(
    recipe: Path,
    out: Path | None,
    offline: bool,
    limit: int | None,
    concurrency: int | None,
    no_cache: bool,
    yes: bool,
    retry_failed: bool,
    allow_outside_paths: bool,
) -> None:
    """Generate the recipe's datasets into RUN_DIR; re-running on the same RUN_DIR resumes.

    \b
    Example:
      synthgen run recipes/offline-demo/recipe.yaml --offline --out runs/demo
    """
    from synthgen import run as run_recipe

    result = run_recipe(
        recipe,
        out=out,
        offline=offline,
        limit=limit,
        concurrency=concurrency,
        use_cache=not no_cache,
        progress=sys.stderr.isatty(),
        confirm=None if yes else _confirm,
        retry_failed=retry_failed,
        allow_outside_paths=allow_outside_paths,
        notify=lambda message: click.secho(f"note: {message}", fg="yellow", err=True),
    )
    for name, c in result.steps.items():
        click.echo(
            f"{name}: {c.rows} rows from {c.items} items ({c.failed} failed, {c.rejected} rejected, "
            f"{c.not_started} not started)"
        )
    unpriced = result.usage.get("unpriced_models") or []
    click.echo(
        f"cost ${result.cost_usd:.4f}"
        + (f" + n/a for unpriced {', '.join(unpriced)}" if unpriced else "")
        + f"; {result.usage['total']['total_tokens']} tokens; {result.usage['cache_hits']} cache hits"
    )
    if result.budget["exhausted"]:
        left = sum(c.not_started for c in result.steps.values())
        click.secho(
            f"budget reached: this dataset has spent ${result.budget['spent_usd']:.4f} of budget.max_usd "
            f"${result.budget['max_usd']:.2f}; {left} item(s) not started (what was paid for is in the "
            "dataset; raise budget.max_usd and re-run the same command to continue)",
            fg="yellow",
        )
    click.echo(f"wrote {out or Path('runs') / result.recipe}")


def _confirm(question: str) -> bool:
    """Ask on a terminal; without one (nohup, CI) nobody can answer: say so instead of 'Aborted!'."""
    if not sys.stdin.isatty():
        click.secho(
            f"{question} -- no terminal to answer on: pass --yes to run anyway", fg="yellow", err=True
        )
        return False
    return click.confirm(question, default=False)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report (plots, searchable sample) to FILE.",
)
@_errors
def report(run_dir: Path, html: Path | None) -> None:
    """Summarise a RUN_DIR: counts, coverage, lengths, diversity, language, judge scores, cost.

    \b
    Example:
      synthgen report runs/demo --html runs/demo-report.html
    """
    from synthgen import report as report_run

    click.echo(report_run(run_dir, html=html))
    if html is not None:
        click.echo(f"wrote {html}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_errors
def status(run_dir: Path, as_json: bool) -> None:
    """Items, failures, spend and OpenAI batches (state, counts, age) of a RUN_DIR, from its journals.

    \b
    Example:
      synthgen status runs/faculty-sciences-es
    """
    from synthgen import run_status

    result = run_status(run_dir)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else "\n".join(result.lines()))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--repo-id", help="ORG/NAME of the dataset repo (default: the recipe's output.hub.repo_id).")
@click.option(
    "--private/--public", default=None, help="Visibility when the repo is created (default: the recipe's)."
)
@click.option("--revision", help="Branch to commit to (default main; created when missing).")
@click.option("--tag", help="Tag the published commit, e.g. v1.")
@click.option("--allow-pii", is_flag=True, help="Publish even though personal data was found.")
@_errors
def publish(
    run_dir: Path,
    repo_id: str | None,
    private: bool | None,
    revision: str | None,
    tag: str | None,
    allow_pii: bool,
) -> None:
    """Publish RUN_DIR as a Hugging Face dataset (card, data, run.json) in one commit.

    Uses HF_TOKEN or the saved login (`hf auth login`). Refuses personal data (e-mails, phone, DNI/NIE,
    IBAN, passport, student codes; docs/privacy.md) unless --allow-pii; unchanged content makes no
    new commit.

    \b
    Example:
      synthgen publish runs/demo --repo-id my-faculty/assistant-data --tag v1
    """
    from synthgen import publish as publish_run

    result = publish_run(run_dir, repo_id, private=private, revision=revision, tag=tag, allow_pii=allow_pii)
    if result.changed:
        click.echo(
            f"published {result.repo_id}@{result.revision}: commit {result.commit_sha} "
            f"({len(result.uploaded)} file(s) uploaded, {len(result.deleted)} deleted)"
        )
    else:
        click.echo(
            f"unchanged: {result.repo_id}@{result.revision} already holds this data at {result.commit_sha}"
        )
    if result.tag:
        click.echo(f"tag {result.tag} -> {result.commit_sha}")
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    click.echo(result.commit_url)
    pin = result.tag or result.commit_sha
    click.echo(f"pin it: dataset_revision: {pin} (recorded in .synthgen/publish.json)")


@main.command()
@click.argument("eval_recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--offline", is_flag=True, help="Use the embedded offline provider (no key, no network).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default runs/<eval name>).",
)
@click.option(
    "--export-labels",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a blinded CSV labelling sheet for human calibration to FILE.",
)
@click.option(
    "--calibrate",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Compare a filled labelling sheet with the judge (agreement, weighted kappa).",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the self-contained HTML report (headline, forest plots, answers side by side) to FILE.",
)
@_errors
def evaluate(
    eval_recipe: Path,
    offline: bool,
    out: Path | None,
    export_labels: Path | None,
    calibrate: Path | None,
    html: Path | None,
) -> None:
    """Grade candidate models with an LLM judge on four question sets; write summary.md/json.

    Sets: paraphrases of trained seeds, held-out seeds, out-of-scope questions (must be declined),
    real student queries (coverage). 95% bootstrap intervals resample seeds, not questions.

    \b
    The labelling sheet's columns: item_id, set, question, reference, answer_a, answer_b (order
    randomised, model names hidden), human_score_a, human_score_b (1-10), human_preference (a/b/tie).

    \b
    Example (after `synthgen run recipes/offline-demo/recipe.yaml --offline --out runs/offline-demo`):
      synthgen evaluate recipes/offline-demo/eval.yaml --offline --out runs/offline-demo-eval
      synthgen evaluate recipes/offline-demo/eval.yaml --offline --export-labels labels.csv
      synthgen evaluate recipes/offline-demo/eval.yaml --offline --calibrate labels-filled.csv
      synthgen evaluate recipes/offline-demo/eval.yaml --offline --html runs/offline-demo-eval.html
    """
    from synthgen import evaluate as evaluate_models

    result = evaluate_models(
        eval_recipe, out=out, offline=offline, export_labels=export_labels, calibrate=calibrate, html=html
    )
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    summary = result.summary
    for name, found in summary["sets"].items():
        click.echo(
            f"{name}: {found['questions']} questions ({found['flagged']} flagged, {found['dropped']} dropped)"
        )
    failures = summary["failures"]
    click.echo(
        f"{failures['calls']} judge calls; {failures['parse_failures']} parse failures, "
        f"{failures['other_failures']} other failures (counted in the summary)"
    )
    if result.labels is not None:
        click.echo(f"wrote labelling sheet {result.labels}")
    if result.calibration is not None:
        c = result.calibration
        click.echo(
            f"calibration: preference agreement {c['preference']['accuracy_with_ties']} with ties "
            f"(n={c['preference']['n']}), {c['preference']['accuracy_without_ties']} without "
            f"(n={c['preference']['n_without_ties']}); kappa linear {c['scores']['kappa_linear']}, "
            f"quadratic {c['scores']['kappa_quadratic']} (n={c['scores']['n']})"
        )
    click.echo(f"wrote {result.out / 'summary.md'}")
    if result.html is not None:
        click.echo(f"wrote {result.html}")


def _serving(func: F) -> F:
    """--host, --port and --open of the two browser commands (review, label)."""
    func = click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")(func)
    func = click.option(
        "--port", type=click.IntRange(0, 65535), default=0, help="Port (default: a free one)."
    )(func)
    return click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to listen on; any but loopback requires the token the printed URL carries.",
    )(func)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--apply", "apply_", is_flag=True, help="Re-finalize the dataset with the decisions, then exit."
)
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --apply: the recipe, when the one that made RUN_DIR has moved.",
)
@_serving
@_errors
def review(
    run_dir: Path, apply_: bool, recipe: Path | None, host: str, port: int, open_browser: bool
) -> None:
    """Review a RUN_DIR in the browser: approve, reject or edit dialogues; approve, reject, swap or tie pairs.

    Decisions are appended to RUN_DIR/.synthgen/reviews.jsonl at once; --apply (or `synthgen run`
    on the RUN_DIR) re-finalizes the dataset with them.

    \b
    Example:
      synthgen review runs/demo --open
      synthgen review --apply runs/demo
    """
    if apply_:
        from synthgen.review.apply import apply_reviews_to

        result = apply_reviews_to(
            run_dir, recipe=recipe, notify=lambda m: click.secho(m, fg="yellow", err=True)
        )
        r = result.review
        if not r.get("decisions"):
            click.echo(f"no review decisions in {run_dir} yet: re-finalized as it was")
            return
        click.echo(
            f"applied {r.get('decisions', 0)} decisions: {r.get('reviewed', 0)} rows reviewed "
            f"({r.get('approved', 0)} approved, {r.get('edited', 0)} edited, {r.get('swapped', 0)} swapped, "
            f"{r.get('rejected', 0)} rejected), {r.get('unreviewed', 0)} not reviewed, "
            f"{len(r.get('stale', []))} not applied (row changed since)"
        )
        click.echo(f"wrote {run_dir}")
        return
    from synthgen.review.rows import review_app
    from synthgen.review.server import serve

    serve(review_app(run_dir), host=host, port=port, path="/", open_browser=open_browser, notify=click.echo)


@main.command()
@click.argument("eval_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_serving
@_errors
def label(eval_dir: Path, host: str, port: int, open_browser: bool) -> None:
    """Label an evaluation's answer pairs, blinded, in the browser (for evaluate --calibrate).

    Each labeller's labels are written to EVAL_DIR/labels/NAME.csv, the sheet --calibrate reads.

    \b
    Example:
      synthgen label runs/demo-eval --open
      synthgen evaluate recipes/offline-demo/eval.yaml --offline --calibrate runs/demo-eval/labels/ana.csv
    """
    from synthgen.review.label import label_app
    from synthgen.review.server import serve

    serve(label_app(eval_dir), host=host, port=port, path="/", open_browser=open_browser, notify=click.echo)


@main.command()
@_errors
def generators() -> None:
    """List installed generators (entry point group synthgen.generators) with their versions.

    \b
    Example:
      synthgen generators
    """
    from synthgen import available_generators
    from synthgen.generators.registry import conflicts

    for name, cls in available_generators().items():
        summary = cls.description or (cls.__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name:<14} v{cls.version:<6} {cls.output:<6} {summary}")
    for name, providers in conflicts().items():
        click.echo(f"{name:<14} CONFLICT: registered by {', '.join(providers)}; rename one", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
