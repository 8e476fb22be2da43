"""What the Map page shows: coordinates, one row per item, thumbnails, typed ids, the lasso batch.

A page asks :func:`get_layout` for coordinates. It gets the UMAP layout when one is cached for the
current vectors, otherwise a PCA layout (a fraction of a second) while a
:class:`~labeling.views.layouts.MapBuilder` computes UMAP in the background; nothing the page does
waits for it. The layouts themselves live in :mod:`labeling.views.layouts`.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from labeling.embed.pipeline import load_vectors
from labeling.service import LabelingService
from labeling.views.colors import category_colors
from labeling.views.layouts import Layout, MapBuilder, ProjectionCache, pca_2d
from storage import items as items_q
from storage import labels as labels_q

LOG = logging.getLogger(__name__)


COLOR_BY = ("label", "pseudo_label", "disagreement", "annotator")
"""The columns the map can be coloured by."""
DISAGREEMENT_SCORES = ("bald", "margin", "typicality")
"""Round scores used as the map's disagreement, first present wins (typicality before any labels)."""
NO_VALUE = "(none)"
"""The colour category of items without a label, pseudo-label or annotator."""


def get_layout(
    service: LabelingService, *, builder: MapBuilder | None = None
) -> tuple[np.ndarray, Layout, str]:
    """The map of the active vectors: UMAP when cached, else PCA (cached too).

    Parameters
    ----------
    service : LabelingService
        The project.
    builder : MapBuilder, optional
        When given and no UMAP layout is cached, its background build is started (idempotent).

    Returns
    -------
    item_ids : ndarray, shape (N,), int64
    xy : ndarray, shape (N, 2), float32
        Row-aligned with ``item_ids``.
    method : {"umap", "pca"}
    """
    project = service.project
    pv = load_vectors(project)
    cache = ProjectionCache(project)
    xy = cache.load(pv, "umap")
    if xy is not None:
        return pv.item_ids, xy, "umap"
    xy = cache.load(pv, "pca")
    if xy is None:
        xy = pca_2d(pv.vectors)
        cache.save(pv, "pca", xy)
    if builder is not None:
        builder.start(pv)
    return pv.item_ids, xy, "pca"


# ---- what the map shows --------------------------------------------------------------------
def _checked_inputs(xy: npt.ArrayLike, item_ids: npt.ArrayLike, color_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids as int64, xy as float32), after checking ``color_by`` and the shapes."""
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown color_by {color_by!r}; valid: {', '.join(COLOR_BY)}")
    ids = np.asarray(item_ids, dtype=np.int64)
    xy = np.asarray(xy, dtype=np.float32)
    if xy.shape != (len(ids), 2):
        raise ValueError(f"xy shape {xy.shape} does not match {len(ids)} item ids")
    return ids, xy


def _model_columns(service: LabelingService, ids: np.ndarray, names: dict) -> tuple[list, np.ndarray, np.ndarray, str | None]:
    """(pseudo labels, confidence, disagreement score, the score's name) from the newest round, per item."""
    n = len(ids)
    pseudo: list[str | None] = [None] * n
    confidence = np.full(n, np.nan, dtype=np.float32)
    disagreement = np.full(n, np.nan, dtype=np.float32)
    score_name = None
    got = service.predictions()
    if got is not None:
        _rnd, p = got
        row_of = p.row_of()
        rows = np.array([row_of.get(int(i), -1) for i in ids], dtype=np.int64)
        have = rows >= 0
        score_name = next((s for s in DISAGREEMENT_SCORES if s in p.scores), None)
        confidence[have] = p.confidence[rows[have]]
        if score_name is not None:
            disagreement[have] = p.scores[score_name][rows[have]]
        for k in np.flatnonzero(have):
            c = int(p.pseudo[rows[k]])
            pseudo[k] = names.get(c) if c >= 0 else None
    return pseudo, confidence, disagreement, score_name


def map_frame(
    service: LabelingService,
    xy: npt.ArrayLike,
    item_ids: npt.ArrayLike,
    *,
    color_by: str = "label",
    user: str | None = None,
) -> pd.DataFrame:
    """One row per item with everything the map plots and hovers.

    Parameters
    ----------
    service : LabelingService
        The project.
    xy : array_like, shape (N, 2)
        Coordinates, row-aligned with ``item_ids``.
    item_ids : array_like, shape (N,)
        The items.
    color_by : {"label", "pseudo_label", "disagreement", "annotator"}
        Which column is copied into ``color``.
    user : str, optional
        Who looks: overlap items whose votes that person may not see yet show no label and no
        annotator (as if unlabeled), exactly as their cards do.

    Returns
    -------
    DataFrame
        Columns ``item_id, x, y, uri, sha256, label, pseudo_label, confidence, disagreement,
        annotator, color``. ``label`` and ``annotator`` are None for unlabeled items,
        ``pseudo_label`` is None before a round with labels; ``confidence`` and ``disagreement``
        are NaN for items the newest round did not score. ``color`` is categorical text
        (``NO_VALUE`` for None) except for disagreement, where it is the score (higher = the model
        is less sure). ``frame.attrs["disagreement"]`` names the score used (or None);
        ``frame.attrs["colors"]`` maps each category to its colour in drawing order (no value first,
        then classes in creation order), the same colour for a class in every mode and every round.

    Raises
    ------
    ValueError
        For an unknown ``color_by`` or mismatched shapes.
    """
    ids, xy = _checked_inputs(xy, item_ids, color_by)
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, ids.tolist())
        state = labels_q.current_state(con)
        names = dict(labels_q.classes(con))
    from labeling.team.review import blind_items

    blind = blind_items(service.project, user)
    current = {int(r.item_id): (r.class_id, r.user_name) for r in state
               if r.kind == "label" and int(r.item_id) not in blind}
    pseudo, confidence, disagreement, score_name = _model_columns(service, ids, names)
    labels = [names.get(int(current[i][0])) if int(i) in current else None for i in ids.tolist()]
    annotators = [current[i][1] if int(i) in current else None for i in ids.tolist()]
    frame = pd.DataFrame({
        "item_id": ids,
        "x": xy[:, 0],
        "y": xy[:, 1],
        "uri": [info[i]["uri"] if i in info else None for i in ids.tolist()],
        "sha256": [info[i]["sha256"] if i in info else None for i in ids.tolist()],
        "label": labels,
        "pseudo_label": pseudo,
        "confidence": confidence,
        "disagreement": disagreement,
        "annotator": annotators,
    })
    if color_by == "disagreement":
        frame["color"] = frame["disagreement"]
    else:
        frame["color"] = frame[color_by].fillna(NO_VALUE).astype(str)
        frame.attrs["colors"] = category_colors(frame["color"], {n: i for i, n in names.items()}, none=NO_VALUE,
                                                by_class=color_by != "annotator")
    frame.attrs["disagreement"] = score_name
    return frame


def thumbnails(service: LabelingService, item_ids: Sequence[int]) -> list[tuple[int, Path, str]]:
    """``(item_id, image file, uri)`` of each known item in order; the thumbnail when one was made."""
    project = service.project
    with project.db.session() as con:
        info = items_q.items_by_ids(con, item_ids)
    out = []
    for i in item_ids:
        it = info.get(int(i))
        if it is None:
            continue
        thumb = project.thumb_path(it["sha256"]) if it["sha256"] else None
        path = thumb if thumb is not None and thumb.exists() else project.resolve_uri(it["uri"])
        out.append((int(i), path, it["uri"]))
    return out
