"""LLM-as-judge. Rubric grading of one answer against the office's reference answer.

The preference generator grades each candidate with it; the quality filters verify claims with
:func:`verify_claims`. Evaluation (:mod:`synthgen.evaluation.evaluator`) adds the MT-Bench-style modes below the
rubric, each one structured-output call with its own schema and template, taking a plain
:class:`ChatClient` and :class:`ModelProfile` rather than a generator context:

* :func:`grade_single`: one 1-10 score with a rationale; on a longer conversation it grades the last
  answer in context (multi-turn, with scripted follow-up questions);
* :func:`compare`: which of two answers is better, in one order; :func:`combine_orders` merges the two
  orders (a disagreement is a tie, as in MT-Bench) and says whether the judge was order-consistent;
* :func:`check_claims` (precision, contradictions; :func:`verify_claims` without the call's metadata)
  and :func:`verify_reference_claims` (recall: the gold answer's claims checked against the answer);
* :func:`judge_abstention`: was an out-of-scope question declined and referred to the office;
* :func:`judge_coverage`: a real student query answered correctly, wrongly, or declined.

A call that ends without a valid answer raises :class:`~synthgen.errors.CompletionFailed`: the caller
records it (evaluation counts parse failures, it never drops them). Calls are cached by the client.

Why a rubric with anchors and not one overall number: judges give steadier scores when each
criterion is defined and anchored. The per-criterion scores also say *why* a pair was chosen.
"""
