"""Search images by text, with a CLIP backbone: the query goes through the text tower and the project's
neighbour index (:class:`~labeling.search.index.NeighbourIndex`, cosine) over the image vectors ranks
the items. The results can be labeled as one batch like any selection (undo and audit as usual)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.embed.names import is_clip
from labeling.project import Project

MAX_QUERY = 300


@dataclass(frozen=True)
class TextHit:
    item_id: int
    uri: str
    similarity: float


def _index(project: Project):
    """The neighbour index over the project's raw image vectors, built once per vector version."""
    from labeling.embed.pipeline import vector_source, vectors_of
    from labeling.search.index import NeighbourIndex
    from storage.vectors import VectorStore

    key, dim, ids, uris = vector_source(project)
    version = VectorStore(project.vectors_dir(key), key=key, dim=dim).version

    def build():
        pv = vectors_of(project, key, dim, ids, uris)
        index = NeighbourIndex.build(pv.vectors, pv.item_ids, kind="flat", device="cpu")
        return index, dict(zip(np.asarray(ids).tolist(), uris))
    return project.caches.get("text_search_index", (key, version), build)


def search(project: Project, query: str, *, n: int = 50) -> list[TextHit]:
    """The ``n`` items whose images are most like ``query``, most similar first."""
    from labeling.model.zero_shot import text_vectors

    text = str(query).strip()
    if not text:
        raise ValueError("type what to search for, e.g. 'a red car'")
    if len(text) > MAX_QUERY or any(ord(ch) < 32 for ch in text):
        raise ValueError(f"a search is one line of at most {MAX_QUERY} characters")
    backbone = project.setting("backbone")
    if not is_clip(backbone):
        raise ValueError(f"text search needs a CLIP backbone; this project's vectors come from {backbone or 'none'} "
                         "(embed with --backbone clip_vitb32, weights as the README says)")
    vectors, _scale = text_vectors(project, backbone, project.setting("backbone_weights", "default"), [text],
                                   keep=False)
    index, uri_of = _index(project)
    sims, ids = index.search(vectors, max(1, int(n)))
    return [TextHit(int(i), uri_of.get(int(i), ""), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0
            and np.isfinite(s)]
