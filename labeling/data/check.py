"""``check``: verify a project and repair what can be rebuilt from the images.

Checks that the database opens at the current schema, that every readable item's file is still
there, that thumbnails exist, that the active vectors cover the readable items and nothing else,
that every finished round's predictions file exists, and that no round is left ``running`` by a
killed process. With ``repair``: thumbnails are remade, interrupted rounds are marked discarded,
finished rounds without a predictions file are marked failed, stale temporary files are removed,
and missing vectors are embedded (when the backbone can be loaded).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from labeling.data.images import ImageError
from labeling.data.thumbnails import make_thumbnail
from labeling.project import Project
from storage import items as items_q
from storage import rounds as rounds_q
from storage.schema import MIGRATIONS
from storage.vectors import VectorStore

LOG = logging.getLogger(__name__)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"healthy": self.healthy, "problems": self.problems, "repaired": self.repaired}


def check_project(project: Project, *, repair: bool = False, embed_missing: bool = True) -> CheckReport:
    """Verify ``project``; with ``repair``, rebuild what can be rebuilt. Problems left are listed."""
    report = CheckReport()
    version = project.db.migrate()
    if version != len(MIGRATIONS):
        report.problems.append(f"schema version {version}, expected {len(MIGRATIONS)}")
    ids, uris = _ok_items(project)
    with project.db.session() as con:
        info = items_q.items_by_ids(con, ids.tolist())

    _check_files(project, uris, report)
    _check_thumbnails(project, ids, info, report, repair=repair)
    _check_vectors(project, ids, report, repair=repair, embed_missing=embed_missing)
    _check_rounds(project, report, repair=repair)
    _check_temp_files(project, report, repair=repair)
    return report


def _check_files(project: Project, uris: list[str], report: CheckReport) -> None:
    missing_files = [u for u in uris if not (project.root / u).exists()]
    for uri in missing_files[:20]:
        report.problems.append(f"image file missing: {uri}")
    if len(missing_files) > 20:
        report.problems.append(f"... and {len(missing_files) - 20} more missing image files")


def _check_thumbnails(project: Project, ids: np.ndarray, info: dict, report: CheckReport, *, repair: bool) -> None:
    thumbs_missing = [i for i in ids.tolist()
                      if info[i]["sha256"] and not project.thumb_path(info[i]["sha256"]).exists()]
    if not thumbs_missing:
        return
    if not repair:
        report.problems.append(f"{len(thumbs_missing)} thumbnails missing (run check --repair)")
        return
    made = 0
    for i in thumbs_missing:
        src = project.root / info[i]["uri"]
        if src.exists():
            try:
                make_thumbnail(src, project.thumb_path(info[i]["sha256"]))
                made += 1
            except (ImageError, OSError, ValueError) as exc:
                report.problems.append(f"thumbnail for {info[i]['uri']} could not be made: {exc}")
    report.repaired.append(f"remade {made} thumbnails")


def _check_temp_files(project: Project, report: CheckReport, *, repair: bool) -> None:
    stale = [p for p in project.data_dir.rglob("*.tmp*") if p.is_file()]
    if not stale:
        return
    if repair:
        for p in stale:
            p.unlink(missing_ok=True)
        report.repaired.append(f"removed {len(stale)} temporary files left by an interrupted write")
    else:
        report.problems.append(f"{len(stale)} temporary files left by an interrupted write (run check --repair)")


def _ok_items(project: Project) -> tuple[np.ndarray, list[str]]:
    with project.db.session() as con:
        return items_q.ok_items(con)


def _check_vectors(project: Project, ids: np.ndarray, report: CheckReport, *, repair: bool, embed_missing: bool) -> None:
    key, dim = project.setting("vector_key"), project.setting("vector_dim")
    if not key or not dim:
        report.problems.append("no embeddings yet (run embed)")
        return
    store = VectorStore(project.vectors_dir(key), key=key, dim=int(dim))
    have = np.asarray(store.ids(), dtype=np.int64)
    missing = np.setdiff1d(ids, have)
    extra = np.setdiff1d(have, ids)
    if len(extra):
        if repair:
            store.remove(extra)
            report.repaired.append(f"removed {len(extra)} vectors of items that are no longer readable")
        else:
            report.problems.append(f"{len(extra)} vectors belong to no readable item (run check --repair)")
    if len(missing):
        if repair and embed_missing and not key.startswith("precomputed-"):
            from labeling.embed.pipeline import embed_project
            embed_project(project, progress=False)
            report.repaired.append(f"embedded {len(missing)} items that had no vector")
        else:
            report.problems.append(f"{len(missing)} readable items have no vector (run embed)")


def _check_rounds(project: Project, report: CheckReport, *, repair: bool) -> None:
    with project.db.session() as con:
        rounds = rounds_q.list_rounds(con)
    running = [r for r in rounds if r["status"] == "running"]
    lost = [r for r in rounds if r["status"] == "finished"
            and not (project.data_dir / "rounds" / (r["predictions_file"] or "")).is_file()]
    if running and _worker_active(project):
        report.repaired.append(f"{len(running)} round(s) running in a live retrain worker: left alone")
        running = []
    if running:
        if repair:
            with project.db.session() as con:
                rounds_q.discard_running(con)
            report.repaired.append(f"marked {len(running)} interrupted round(s) discarded")
        else:
            report.problems.append(f"{len(running)} round(s) left running by a stopped process (run check --repair)")
    for r in lost:
        if repair:
            with project.db.session() as con:
                rounds_q.fail_round(con, r["id"], error="predictions file missing")
            report.repaired.append(f"round {r['id']} had no predictions file: marked failed")
        else:
            report.problems.append(f"round {r['id']} has no predictions file (run check --repair)")


def _worker_active(project: Project) -> bool:
    """Whether a retrain worker (this or another process) holds the project's worker lock."""
    from labeling.model.worker import _try_lock

    with open(project.data_dir / "worker.lock", "a+") as fh:
        return not _try_lock(fh)  # closing the file releases a lock we just took
