"""A round's files: ``round-<id>.npz`` (its predictions, :class:`RoundPredictions`) and, once
cross-validated, ``round-<id>.cv.npz`` (the held-out outputs). Written to a temporary name and renamed,
read back as plain arrays (no pickles)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage import rounds as rounds_q


@dataclass
class RoundPredictions:
    round_id: int
    item_ids: np.ndarray  # (N,)
    class_ids: np.ndarray  # (C,)
    class_names: list[str]
    pseudo: np.ndarray  # (N,) class id, -1 when the round had no labels
    confidence: np.ndarray  # (N,)
    top_idx: np.ndarray  # (N, 3) class ids
    top_p: np.ndarray  # (N, 3)
    votes: np.ndarray  # (M, N) class id voted by each member
    member_names: list[str]
    scores: dict[str, np.ndarray]
    default_order: np.ndarray  # (N,) row positions, default policy first
    phase: str
    suggestions: np.ndarray | None = None  # (N,) str: backbone ImageNet proposals before any label
    cv: dict[str, np.ndarray] = field(default_factory=dict)
    """Cross-validated outputs on human labels, one entry per held-out item (empty without CV):
    ``item_ids`` (n,), ``confidence`` (n,), ``predicted`` (n,) class id, ``true`` (n,) class id."""
    member_weights: np.ndarray | None = None
    """(M,) each member's share of the mean that ``pseudo``, ``confidence``, ``top_p`` and every score
    read (absent in older rounds and before the first labels)."""
    model_names: list[str] = field(default_factory=list)
    """Imported models in the round (``import-predictions``), each also a member ``model:<name>``."""
    model_top: np.ndarray | None = None  # (E, N) each model's own suggestion, class id (-1: it predicted none)
    model_p: np.ndarray | None = None  # (E, N) its probability

    def row_of(self) -> dict[int, int]:
        """item_id -> row, built once per loaded round (the label page asks on every rerun)."""
        index = self.__dict__.get("_row_index")
        if index is None:
            index = {int(i): r for r, i in enumerate(self.item_ids.tolist())}
            self.__dict__["_row_index"] = index
        return index


def save_predictions(p: RoundPredictions, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {f"score__{k}": v for k, v in p.scores.items()}
    arrays.update({f"cv__{k}": v for k, v in p.cv.items()})
    with open(tmp, "wb") as fh:
        np.savez(fh, round_id=p.round_id, item_ids=p.item_ids, class_ids=p.class_ids,
                 class_names=np.array(p.class_names, dtype=str), pseudo=p.pseudo, confidence=p.confidence,
                 top_idx=p.top_idx, top_p=p.top_p, votes=p.votes, member_names=np.array(p.member_names, dtype=str),
                 default_order=p.default_order, phase=p.phase,
                 **({} if p.suggestions is None else {"suggestions": np.asarray(p.suggestions, dtype=str)}),
                 **({} if p.member_weights is None else {"member_weights": p.member_weights}),
                 **({} if not p.model_names else {"model_names": np.array(p.model_names, dtype=str),
                                                  "model_top": p.model_top, "model_p": p.model_p}), **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def cv_file(round_path: Path) -> Path:
    """Where a round's held-out outputs go, once cross-validated: ``round-<id>.cv.npz``."""
    return round_path.with_name(f"{round_path.stem}.cv.npz")


def save_cv(cv: dict[str, np.ndarray], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **cv)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_predictions(path: Path) -> RoundPredictions:
    with np.load(path) as z:  # no pickles: plain arrays only
        scores = {k[len("score__"):]: z[k] for k in z.files if k.startswith("score__")}
        cv = {k[len("cv__"):]: z[k] for k in z.files if k.startswith("cv__")}  # rounds before deferred CV
        if not cv and cv_file(path).is_file():
            with np.load(cv_file(path)) as held:
                cv = {k: held[k] for k in held.files}
        return RoundPredictions(int(z["round_id"]), z["item_ids"], z["class_ids"], [str(s) for s in z["class_names"]],
                                z["pseudo"], z["confidence"], z["top_idx"], z["top_p"], z["votes"],
                                [str(s) for s in z["member_names"]], scores, z["default_order"], str(z["phase"]),
                                cv=cv, suggestions=z["suggestions"] if "suggestions" in z.files else None,
                                member_weights=z["member_weights"] if "member_weights" in z.files else None,
                                **({} if "model_names" not in z.files else {
                                    "model_names": [str(s) for s in z["model_names"]], "model_top": z["model_top"],
                                    "model_p": z["model_p"]}))


def latest_predictions(project) -> tuple[dict, RoundPredictions] | None:
    """The newest finished round and its predictions, or None before the first round (``project``: a
    :class:`labeling.project.Project`)."""
    with project.db.session() as con:
        rnd = rounds_q.latest_finished(con)
    if rnd is None:
        return None
    return rnd, load_predictions(project.data_dir / "rounds" / rnd["predictions_file"])
