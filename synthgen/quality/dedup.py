"""Duplicate rows: an exact copy or a near copy of a kept row teaches nothing and skews the mix.

The runner feeds rows to :class:`NearDuplicates` at finalize, in a fixed order, with each output
kind's ``dedup_text`` (:data:`synthgen.records.OUTPUT_KINDS`) as what two rows must not share; the
first row of a group is kept, later ones are rejected with reason ``duplicate`` (same normalised
tokens) or ``near_duplicate`` (Jaccard on word 3-shingles at or above the threshold,
``QualityConfig.near_duplicate_threshold``).
"""

from __future__ import annotations

import hashlib

from synthgen.quality.filters import Rejection
from synthgen.quality.text import tokenize

__all__ = ["NearDuplicates"]


def _bands(threshold: float, num_perm: int, recall: float = 0.999) -> tuple[int, int]:
    """LSH (bands, rows): the most rows per band (fewest false candidates) that still propose a pair
    of Jaccard ``threshold`` with probability ``recall``."""
    for rows in range(num_perm, 1, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


class NearDuplicates:
    """Exact (normalised hash) and near (Jaccard on word 3-shingles) duplicate finder.

    MinHashLSH only proposes candidates, banded so that a pair at the threshold is proposed with
    probability >= 0.999; each candidate is then verified on its exact shingle Jaccard, so the outcome
    does not hang on MinHash noise, and ties go to the earliest key: deterministic for a given order.
    """

    def __init__(self, threshold: float = 0.85, *, num_perm: int = 128, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        self.threshold, self._num_perm, self._seed = threshold, num_perm, seed
        self._lsh = MinHashLSH(num_perm=num_perm, params=_bands(threshold, num_perm))
        self._exact: dict[str, str] = {}
        self._shingles: dict[str, frozenset[str]] = {}
        self._order: dict[str, int] = {}

    def add(self, key: str, text: str) -> str | None:
        """The key of an earlier duplicate or near duplicate of ``text``; else register it, return None."""
        found = self._match(key, text)
        return found[1] if found else None

    def check(self, key: str, text: str) -> Rejection | None:
        """Like :meth:`add`, as a ``duplicate`` or ``near_duplicate`` rejection."""
        found = self._match(key, text)
        if found is None:
            return None
        reason, other, similarity = found
        return Rejection(reason, f"{reason.replace('_', ' ')} of {other} (Jaccard {similarity:.2f})")

    def _match(self, key: str, text: str) -> tuple[str, str, float] | None:
        from datasketch import MinHash  # scipy-heavy import (~0.8 s): only when dedup runs

        if key in self._order:
            raise ValueError(f"key {key!r} was already added")
        tokens = tokenize(text)
        digest = hashlib.sha256(" ".join(tokens).encode()).hexdigest()
        if digest in self._exact:
            return "duplicate", self._exact[digest], 1.0
        shingles = frozenset(" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2)) if tokens)
        minhash = MinHash(num_perm=self._num_perm, seed=self._seed)
        minhash.update_batch(s.encode() for s in sorted(shingles))
        candidates = self._lsh.query(minhash) if shingles else []
        near = [(-self._jaccard(shingles, other), self._order[other], other) for other in candidates]
        near = [n for n in near if -n[0] >= self.threshold]
        if near:
            similarity, _, other = min(near)  # most similar, then earliest: independent of set order
            return "near_duplicate", other, -similarity
        self._exact[digest], self._shingles[key], self._order[key] = key, shingles, len(self._order)
        if shingles:
            self._lsh.insert(key, minhash)
        return None

    def _jaccard(self, shingles: frozenset[str], other: str) -> float:
        theirs = self._shingles[other]
        return len(shingles & theirs) / len(shingles | theirs)
