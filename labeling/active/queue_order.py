"""The queue's orders: each strategy turns a round's predictions into a row order (and the score a card
shows), and a queue filter narrows that order. Pure functions of :class:`~labeling.model.rounds.RoundPredictions`."""
from __future__ import annotations

import numpy as np

from labeling.active.acquisition import STRATEGIES
from labeling.model.round_files import RoundPredictions


def _order_default(p: RoundPredictions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return p.default_order, p.scores.get("margin", p.scores.get("typicality"))


def _order_random(p: RoundPredictions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return np.random.default_rng(seed).permutation(len(p.item_ids)), np.zeros(len(p.item_ids))


def _order_most_confident(p: RoundPredictions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return np.argsort(-p.confidence, kind="stable"), p.confidence


def _order_by_score(name: str):
    def order(p: RoundPredictions, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if name not in p.scores:
            raise ValueError(f"round {p.round_id} has no {name!r} scores (it had no labels yet)")
        return np.argsort(-p.scores[name], kind="stable"), p.scores[name]

    return order


QUEUE_ORDERS = {"default": _order_default,
                **{s: _order_by_score(s) for s in sorted(set(STRATEGIES) - {"random", "most_confident"})},
                "most_confident": _order_most_confident, "random": _order_random}
"""Queue strategy name -> ``order(round predictions, seed) -> (row order, the score shown per row)``."""
QUEUE_STRATEGIES = tuple(QUEUE_ORDERS)


def blind_first(p, order, blind: set[int], skip: set[int], n: int) -> list[int]:
    """Rows of the overlap items awaiting this person's independent vote, in rank order (at most ``n``);
    their items join ``skip``."""
    if not blind:
        return []
    rank_of = np.empty(len(order), np.int64)
    rank_of[np.asarray(order)] = np.arange(len(order))
    row_of = p.row_of()
    firsts = sorted((row_of[i] for i in blind if i in row_of and i not in skip), key=lambda r: rank_of[r])
    skip |= {int(p.item_ids[r]) for r in firsts[:n]}
    return [int(r) for r in firsts[:n]]


def narrowed(p, order: np.ndarray, class_id: dict[str, int], suggested: str | None,
              disagreement: tuple[float, float] | None) -> np.ndarray:
    """``order`` without the rows a queue filter leaves out (an unknown class leaves out every row)."""
    keep = np.ones(len(p.item_ids), dtype=bool)
    if suggested is not None:
        keep &= p.pseudo == class_id.get(suggested, -2)
    if disagreement is not None and "bald" in p.scores:
        keep &= (p.scores["bald"] >= disagreement[0]) & (p.scores["bald"] <= disagreement[1])
    return order[keep[order]]
