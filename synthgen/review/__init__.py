"""The review app: people check the data and judge the judge, in a browser on this machine.

``synthgen review RUN_DIR`` (:mod:`synthgen.review.rows`) lets the office approve, reject or edit
dialogues and approve, reject, swap or tie preference pairs; decisions go to ``.synthgen/reviews.jsonl``
(:mod:`synthgen.reviews`) and ``synthgen review --apply`` (:mod:`synthgen.review.apply`) re-finalizes
with them. ``synthgen label EVAL_DIR`` (:mod:`synthgen.review.label`) collects blinded pairwise labels
for ``synthgen evaluate --calibrate``. Both are served by :mod:`synthgen.review.server` (aiohttp, plain
HTML and a little JavaScript in ``static/``; no build step).
"""
