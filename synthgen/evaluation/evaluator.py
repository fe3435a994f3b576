"""Evaluation: candidate models x four question sets, graded by an LLM judge, with clustered CIs.

``synthgen evaluate EVAL_RECIPE [--offline] [--out DIR]`` reads an eval recipe
(:mod:`synthgen.evaluation.recipe`), answers every question with every candidate, and judges.

The sets are reported separately: they measure different things
(:mod:`synthgen.evaluation.questions`). In ``--out``: ``judgments.jsonl`` (every judge call, failed
ones included), ``answers.jsonl``, ``questions.jsonl``, ``summary.json``, ``summary.md``, ``contamination.json``
(:mod:`synthgen.evaluation.contamination`); labels and calibration:
:mod:`synthgen.evaluation.calibration`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from synthgen.errors import CompletionFailed
from synthgen.evaluation.calibration import calibrate as calibrate_labels
from synthgen.evaluation.calibration import export_labels as write_labels
from synthgen.evaluation.calibration import judge_warnings, label_items
from synthgen.evaluation.candidates import VERSION, AnswerSource, build_sources
from synthgen.evaluation.compare import compare_candidates, read_contamination
from synthgen.evaluation.contamination import check_contamination
from synthgen.evaluation.questions import Question, RunData, Sets, build_sets, read_run_dir
from synthgen.evaluation.recipe import PARSE_FAILURES, EvalRecipe, load_eval_recipe
from synthgen.evaluation.retrieval import build_retriever
from synthgen.evaluation.stats import summarize_judgments
from synthgen.evaluation.summary import render_markdown
from synthgen.grounding import facts_block, language_name
from synthgen.judge.ask import Judged
from synthgen.judge.claims import check_claims, verify_reference_claims
from synthgen.judge.modes import compare, grade_single, judge_abstention, judge_coverage
from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.paths import cache_path
from synthgen.reports.eval_html import write_eval_html

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    out: Path
    summary: dict[str, Any]
    warnings: list[str]
    labels: Path | None = None
    calibration: dict[str, Any] | None = None
    html: Path | None = None


class _Evaluation:
    def __init__(self, ev: EvalRecipe, run: RunData, *, offline: bool, use_cache: bool) -> None:
        self.ev, self.run, self.recipe = ev, run, ev.generation
        self.prompts = self.recipe.prompt_library()
        self.language = language_name(self.recipe.language)
        self.judge = ev.profiles()[ev.judge]
        self.seeds = {s.id: s for s in self.recipe.loaded_seeds}
        self.client = ChatClient(cache=ResponseCache(cache_path(), enabled=use_cache), offline=offline)
        self.answers: dict[tuple[str, str], str] = {}
        self.answer_log: list[dict[str, Any]] = []
        self.sets = Sets()
        self.described: list[dict[str, Any]] = []
        self.contamination: dict[str, Any] | None = None  # contamination.json

    def teacher(self, facts: str) -> str:
        """The data generator's grounded assistant turn: what a ``facts: true`` endpoint sees."""
        system = self.recipe.system_prompt
        return self.prompts.render("assistant", system_prompt=system, facts=facts, language=self.language)

    async def answer(self, source: AnswerSource, q: Question, turn: int) -> dict[str, Any]:
        """The candidate's answer to a question (turn 2: to its follow-up), as an answers.jsonl row."""
        turns, key = [{"role": "user", "content": q.text}], q.id
        if turn == 2:
            assert q.follow_up is not None
            previous = self.answers[(source.name, q.id)]
            turns += [{"role": "assistant", "content": previous}, {"role": "user", "content": q.follow_up}]
            key = f"{q.id}#2"
        facts = facts_block([self.seeds[i] for i in q.fact_ids]) if q.fact_ids else None
        entry = {"candidate": source.name, "question_id": key, "set": q.set, "turn": turn}
        try:
            text = await source.answer(key, turns, facts)
        except CompletionFailed as exc:
            return {**entry, "answer": None, "failure": exc.reason, "detail": exc.message[:300]}
        self.answers[(source.name, key)] = text
        return {**entry, "answer": text, "failure": None}

    async def record(
        self, q: Question, mode: str, call: Awaitable[Judged[Any]], **where: Any
    ) -> dict[str, Any]:
        """One judge call as a judgments.jsonl row; a failed call is a row with its reason, never lost."""
        row: dict[str, Any] = {
            "mode": mode,
            "set": q.set,
            "question_id": q.id,
            "cluster": q.cluster,
            "topic": q.topic,
        }
        row |= {"candidate": None, "pair": None, "order": None, **where}
        try:
            judged = await call
        except CompletionFailed as exc:
            failed = {"parse_failure": exc.reason in PARSE_FAILURES, "failure": exc.reason}
            return {
                **row,
                "verdict": None,
                **failed,
                "detail": exc.message[:300],
                "judge_model": None,
                "cached": False,
            }
        return {
            **row,
            "verdict": judged.verdict.model_dump(),
            **{
                "parse_failure": False,
                "failure": None,
                "judge_model": judged.judge_model,
                "cached": judged.cached,
            },
        }

    def judgments(self, q: Question, names: list[str]) -> list[Awaitable[dict[str, Any]]]:
        """Every judge call for one question, in a fixed order (the order of judgments.jsonl)."""
        modes, client, judge = self.ev.modes, self.client, self.judge
        common: dict[str, Any] = {"prompts": self.prompts, "language": self.language, "version": VERSION}
        extra = "\n\n".join(self.seeds[i].answer.strip() for i in q.fact_ids if i != q.seed_id)
        graded: dict[str, Any] = {"reference": q.reference, "facts": extra, **common}
        asked = [{"role": "user", "content": q.text}]
        calls: list[Awaitable[dict[str, Any]]] = []
        call: Awaitable[Judged[Any]]
        for name in names:
            answer = self.answers.get((name, q.id))
            if answer is None:
                continue
            if q.set == "out_of_scope":
                call = judge_abstention(client, judge, question=q.text, answer=answer, **common)
                calls.append(self.record(q, "abstention", call, candidate=name))
                continue
            if q.set == "real":
                call = judge_coverage(client, judge, question=q.text, answer=answer, facts=extra, **common)
                calls.append(self.record(q, "coverage", call, candidate=name))
                continue
            if modes.single:
                call = grade_single(client, judge, conversation=asked, answer=answer, **graded)
                calls.append(self.record(q, "single", call, candidate=name))
            if modes.claims:
                call = check_claims(client, judge, answer=answer, reference=q.reference, **common)
                calls.append(self.record(q, "claims", call, candidate=name))
                call = verify_reference_claims(client, judge, answer=answer, reference=q.reference, **common)
                calls.append(self.record(q, "recall", call, candidate=name))
            second = self.answers.get((name, f"{q.id}#2"))
            if q.follow_up and second is not None:
                context = [
                    *asked,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": q.follow_up},
                ]
                call = grade_single(client, judge, conversation=context, answer=second, **graded)
                calls.append(self.record(q, "multi_turn", call, candidate=name))
        for x, y in combinations(names, 2) if modes.pairwise else ():
            ax, ay = self.answers.get((x, q.id)), self.answers.get((y, q.id))
            if ax is None or ay is None:
                continue
            for order, (a, b) in ((1, (ax, ay)), (2, (ay, ax))):  # both orders: judges favour a position
                call = compare(client, judge, conversation=asked, answer_a=a, answer_b=b, **graded)
                calls.append(self.record(q, "pairwise", call, pair=[x, y], order=order))
        return calls

    async def execute(self) -> list[dict[str, Any]]:
        async with self.client:
            sources = build_sources(  # first: a missing extra fails before the paraphrases are paid for
                self.ev.candidates,
                client=self.client,
                profiles=self.ev.profiles(),
                system_prompt=self.recipe.system_prompt,
                teacher=self.teacher,
                in_context=self.recipe.grounding == "in_context",
                retriever=lambda spec: build_retriever(self.recipe, self.run.splits, spec.documents),
            )
            self.sets = await build_sets(self.ev, self.run, self.client, self.prompts, self.language)
            if self.ev.contamination is not None:
                self.sets, self.contamination = check_contamination(
                    self.sets, self.run.path, self.ev.contamination
                )
            questions = self.sets.questions
            self.described = [s.describe() for s in sources]
            first = await asyncio.gather(*(self.answer(s, q, 1) for s in sources for q in questions))
            follow = [
                (s, q) for s in sources for q in questions if q.follow_up and (s.name, q.id) in self.answers
            ]
            self.answer_log = [*first, *await asyncio.gather(*(self.answer(s, q, 2) for s, q in follow))]
            names = [s.name for s in sources]
            return list(await asyncio.gather(*(c for q in questions for c in self.judgments(q, names))))


def evaluate(
    eval_recipe: EvalRecipe | str | Path,
    *,
    out: str | Path | None = None,
    offline: bool = False,
    export_labels: str | Path | None = None,
    calibrate: str | Path | None = None,
    use_cache: bool = True,
    html: str | Path | None = None,
) -> EvalResult:
    """Answer, judge and summarise; write the files into ``out`` (default ``runs/<name>``).

    ``export_labels`` also writes the blinded labelling sheet there; ``calibrate`` reads a filled one
    and adds the judge's agreement with it to the summary (see :mod:`synthgen.evaluation.calibration`);
    ``html`` writes the self-contained HTML report (:func:`synthgen.reports.eval_html.write_eval_html`).
    """
    ev = eval_recipe if isinstance(eval_recipe, EvalRecipe) else load_eval_recipe(eval_recipe)
    run = read_run_dir(ev.run_dir, recipe=ev.generation, eval_path=ev._path)
    out = Path(out) if out is not None else Path("runs") / ev.name
    evaluation = _Evaluation(ev, run, offline=offline, use_cache=use_cache)
    records = asyncio.run(evaluation.execute())  # the client closes its cache on the way out
    names, judge, boot = [c.name for c in ev.candidates], evaluation.judge, ev.bootstrap
    warnings = [*run.notes, *judge_warnings(judge.model, run.labelling_models, run.path)]
    summary: dict[str, Any] = {
        "name": ev.name,
        "description": ev.description,
        "offline": offline,
        "recipe": str(ev.recipe),
        "run_dir": str(ev.run_dir),
        "judge": {"profile": ev.judge, "model": judge.model, "base_url": judge.resolved_base_url},
        "candidates": evaluation.described,
        "warnings": warnings,
        "bootstrap": {"samples": boot.samples, "confidence": boot.confidence, "seed": ev.seed},
        "sets": evaluation.sets.stats,
        **summarize_judgments(
            records,
            answer_log=evaluation.answer_log,
            candidates=names,
            sets=list(evaluation.sets.stats),
            samples=boot.samples,
            confidence=boot.confidence,
            seed=ev.seed,
        ),
    }
    questions = [q.to_json() for q in evaluation.sets.questions]
    summary["comparison"] = compare_candidates(
        records,
        questions=questions,
        answer_log=evaluation.answer_log,
        candidates=names,
        sets=list(evaluation.sets.stats),
        samples=boot.samples,
        confidence=boot.confidence,
        seed=ev.seed,
        min_topic_questions=ev.report.min_topic_questions,
    )
    items = label_items(questions, evaluation.answers, names, ev.seed)
    result = EvalResult(out=out, summary=summary, warnings=warnings)
    if export_labels is not None:
        result.labels = write_labels(Path(export_labels), items, evaluation.answers)
    if calibrate is not None:
        result.calibration = summary["calibration"] = calibrate_labels(Path(calibrate), items, records, names)
    out.mkdir(parents=True, exist_ok=True)
    _jsonl(out / "judgments.jsonl", records)
    _jsonl(out / "answers.jsonl", evaluation.answer_log)
    _jsonl(out / "questions.jsonl", [*questions, *evaluation.sets.dropped])
    checked = out / "contamination.json"  # read by the summary and the HTML report
    if evaluation.contamination is not None:
        checked.write_text(
            json.dumps(evaluation.contamination, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    else:
        checked.unlink(missing_ok=True)  # a check turned off leaves no stale verdict of an older run
    contamination = read_contamination(out)
    if contamination is not None:
        summary.setdefault("contamination", contamination)
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "summary.md").write_text(render_markdown(summary), encoding="utf-8")
    if html is not None:
        result.html = write_eval_html(out, html)
    return result


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
