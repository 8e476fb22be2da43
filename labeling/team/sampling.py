"""The sample of auto-accept candidates a person checks before accepting: drawn where errors would show."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeling.team.autoaccept import Candidate


def audit_sample(candidates: Sequence[Candidate], *, n: int, rng: np.random.Generator) -> list[Candidate]:
    """``n`` candidates for a person to check (all of them if fewer), drawn where errors would show, in
    candidate order: every class gets its share (at least one while ``n`` allows), and half of each
    share is that class's least confident candidates, the ones next to its threshold, where a wrong
    class hides (a uniform sample of a few hundred "97 %" items would rarely show one); the rest is
    uniform over the class. Seed ``rng`` for a sample that stays the same across reruns.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative; got {n}")
    if n >= len(candidates):
        return list(candidates)
    by_class: dict[int, list[int]] = {}
    for k, c in enumerate(candidates):
        by_class.setdefault(int(c.class_id), []).append(k)
    order = sorted(by_class, key=lambda c: -len(by_class[c]))  # larger classes first for the remainder
    share = {c: min(len(by_class[c]), max(1, n * len(by_class[c]) // len(candidates))) for c in order}
    for c in order * n:  # spread what rounding left over, then trim what the minimum of one added
        if sum(share.values()) >= n:
            break
        share[c] += share[c] < len(by_class[c])
    for floor, classes in ((1, order), (0, order[::-1])):  # from the largest classes, keeping one each if n allows
        for c in classes:
            while sum(share.values()) > n and share[c] > floor:
                share[c] -= 1
    picked: list[int] = []
    for c in order:
        rows = sorted(by_class[c], key=lambda k: (_shown(candidates[k]), k))
        low = rows[:(share[c] + 1) // 2]
        rest = rows[len(low):]
        picked += low + [rest[int(i)] for i in rng.choice(len(rest), size=share[c] - len(low), replace=False)]
    return [candidates[k] for k in sorted(picked)]


def _shown(c: Candidate) -> float:
    return c.confidence if c.calibrated is None else c.calibrated
