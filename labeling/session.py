"""The facade the pages call: one person's session on one project.

A :class:`Session` binds the shared :class:`~labeling.service.LabelingService` to an
:class:`~labeling.team.auth.Identity`. Every action re-reads that identity first
(:func:`labeling.team.auth.refresh`), so a role an admin changed, or a user an admin disabled,
takes effect on that session's next action; every rule is checked with the one
:func:`labeling.team.auth.require` inside the engine, which the command line and the Python API
reach too. Results are the small records of :mod:`labeling.results`.
"""
from __future__ import annotations

from collections.abc import Sequence

from labeling.model.worker import RetrainWorker
from labeling.project import ProjectError
from labeling.results import CurrentLabel, GridCell, ItemCard, Neighbour, RoundInfo
from labeling.team.autoaccept import Candidate
from labeling.service import QUEUE_STRATEGIES, LabelingService, QueueItem, UnknownClass, matching_neighbours
from labeling.team import auth
from labeling.team import web_sessions as web_cookie
from labeling.team.auth import AuthError, Identity
from labeling.views.data_admin import DEFAULT_EXPORT_NAMES
from labeling.views.cards import RELEASE_FOCUS_HTML, card_is_stale, card_needs_redraw, card_signature, class_keys, key_label, neighbour_strip_html
from labeling.views.bulk import plan_bulk
from labeling.views.projection import COLOR_BY, NO_VALUE
from labeling.views.words import DASH, count, vote_standing
from labeling.data.export import FORMATS

__all__ = ["AuthError", "Candidate", "CurrentLabel", "GridCell", "Identity", "ItemCard", "LabelingService", "Neighbour",
           "QUEUE_STRATEGIES", "QueueItem", "DASH", "count", "vote_standing", "neighbour_strip_html", "key_label", "card_is_stale", "card_needs_redraw", "card_signature", "RELEASE_FOCUS_HTML", "ROLES", "COLOR_BY", "DEFAULT_EXPORT_NAMES", "FORMATS", "NO_VALUE", "ProjectError", "plan_bulk", "RetrainWorker", "RoundInfo", "Session", "UnknownClass", "web_cookie",
           "start_web_session", "resume_web_session", "end_web_session"]

ROLES = auth.ROLES


class Session:
    """What one signed-in (or, in local mode, named) person does to a project.

    Reads act as the identity the session was opened with (a page opens one per rerun from the
    identity it has just re-read); every write re-reads it first (:attr:`who`), so a write never runs
    on a role or an account that changed since.
    """

    def __init__(self, service: LabelingService, who: Identity) -> None:
        self.service = service
        self._who = who

    @property
    def name(self) -> str:
        """Who reads: the identity the session was opened with (no query)."""
        return self._who.name

    @property
    def who(self) -> Identity:
        """The identity as the project knows it now (raises :class:`AuthError` once disabled)."""
        self._who = auth.refresh(self.service.project, self._who)
        return self._who

    def check(self, role: str, action: str | None = None) -> None:
        """For reads: refuse unless the session's identity has ``role`` (no query)."""
        auth.require(self._who, role, action)

    def require(self, role: str, action: str | None = None) -> Identity:
        """For writes: re-read the identity, then refuse unless it has ``role``."""
        who = self.who
        auth.require(who, role, action)
        return who

    @property
    def map(self) -> "MapView":
        """The Map page's reads and writes."""
        return MapView(self)

    @property
    def model(self) -> "ModelView":
        """The Model page's reads, its auto-accept batch and the checked-sample certification."""
        from labeling.views.model_view import ModelView

        return ModelView(self)

    @property
    def review(self) -> "ReviewView":
        """The Review page's queues and figures (reviewers and admins)."""
        return ReviewView(self)

    @property
    def data(self) -> "DataView":
        """The Data page's actions."""
        from labeling.views.data_view import DataView

        return DataView(self)

    # ---- reading -------------------------------------------------------------------------
    def class_names(self) -> list[str]:
        """The active classes in the order they were created (a class keeps its place, and its key on the
        Label page, when classes are added)."""
        return list(self.service.class_names().values())

    def class_keys(self) -> list[tuple[str | None, str]]:
        """``(key, name)`` of every class for the Label page (:func:`labeling.views.cards.class_keys`)."""
        return class_keys(self.class_names())

    def current_round(self) -> RoundInfo | None:
        got = self.service.predictions()
        return None if got is None else RoundInfo.from_row(got[0])

    def newest_round_id(self) -> int | None:
        """The id of the newest finished round: one small query, for polling."""
        return self.service.newest_round_id()

    def find(self, text: str, *, limit: int = 20):
        """Items by file name, path or id, with their current labels (:func:`labeling.views.find.find_items`)."""
        from labeling.views.find import find_items

        return find_items(self.service, text, limit=limit, user=self.name)

    def search_text(self, query: str, *, n: int = 50):
        """Items whose images are most like ``query`` (CLIP backbones; :func:`labeling.search.text.search`)."""
        from labeling.search.text import search

        return search(self.service.project, query, n=n)

    def find_by_text(self, query: str, *, limit: int = 20):
        """Like :meth:`find`, the items whose images are most like ``query`` (CLIP), most similar first."""
        from labeling.views.find import find_by_text

        return find_by_text(self.service, query, limit=limit, user=self.name)

    def can_search_text(self) -> bool:
        """Whether the project's backbone has a text tower (CLIP)."""
        from labeling.embed.names import is_clip

        return is_clip(self.service.project.setting("backbone"))

    def labeled(self, *, label: str | None = None, source: str | None = None, limit: int = 200):
        """Labeled items of a class and/or source, newest first (:func:`labeling.views.find.labeled_items`)."""
        from labeling.views.find import labeled_items

        return labeled_items(self.service, label=label, source=source, limit=limit, user=self.name)

    def full_image(self, item_id: int, *, max_side: int = 2048):
        """The item's image at full size (upright RGB, at most ``max_side`` pixels a side) as an array, for
        a zoomable view; the card itself shows a fitted copy."""
        import numpy as np

        from labeling.data.images import load_rgb

        return np.asarray(load_rgb(self.card(item_id).path, max_side=max_side))

    def disagreement_range(self) -> tuple[float, float] | None:
        """The lowest and highest disagreement (BALD) of the round in use, for a queue filter; None before
        a round has it."""
        got = self.service.predictions()
        bald = None if got is None else got[1].scores.get("bald")
        return None if bald is None or len(bald) == 0 else (float(bald.min()), float(bald.max()))

    def label_sources(self) -> list[str]:
        from labeling.views.find import label_sources

        return label_sources()

    def queue(self, n: int, *, strategy: str = "default", exclude: Sequence[int] = (), suggested: str | None = None,
              disagreement: tuple[float, float] | None = None) -> list[QueueItem]:
        return self.service.queue(n, strategy=strategy, exclude=exclude, user=self.name, suggested=suggested,
                                  disagreement=disagreement)

    def is_open(self, item_id: int) -> bool:
        return self.service.is_open(item_id, user=self.name)

    def card(self, item_id: int) -> ItemCard:
        return self.service.item_card(item_id, user=self.name)

    def display_image(self, path: str):
        """The file to show for the image at ``path`` and its format (:func:`labeling.data.previews.card_image`:
        the original where the image element keeps it as it is, else an upright preview made once)."""
        from labeling.data.previews import card_image

        return card_image(self.service.project.data_dir, path)

    def prepare_next(self, n: int = 3, **queue: object) -> None:
        """Make the images of the next ``n`` cards of the queue (``queue``: :meth:`queue`'s options) ready
        in the background, so that a key press never waits for a large photo's preview."""
        self.service.prepare_images(lambda: [q.item_id for q in self.queue(n, **queue)])

    def neighbours(self, item_id: int, *, k: int = 12) -> list[Neighbour]:
        return self.service.neighbours(item_id, k=k, user=self.name)

    @staticmethod
    def candidates_among(neighbours: Sequence[Neighbour], label: str, *, min_similarity: float = 0.8) -> list[int]:
        """Which of the ``neighbours`` already shown "accept the neighbourhood" would label with the item."""
        return matching_neighbours(neighbours, label, min_similarity)

    def grid(self, label: str, *, n: int = 36) -> list[GridCell]:
        return self.service.grid(label, n=n, user=self.name)

    def history(self, item_id: int) -> list[dict]:
        return self.service.history(item_id, user=self.name)

    def batches(self, *, limit: int = 200, mine: bool = False) -> list[dict]:
        return self.service.batches(limit=limit, user=self.name if mine else None)

    # ---- writing -------------------------------------------------------------------------
    def label(self, item_ids: Sequence[int], label: str | None, *, source: str = "manual",
              model_round: int | None = None, create_class: bool = True) -> str:
        who = self.who
        return self.service.label(item_ids, label, user=who.name, role=who.role, source=source,
                                  model_round=model_round, create_class=create_class)

    def accept_grid(self, item_ids: Sequence[int], misfits: Sequence[int], label: str, *,
                    model_round: int | None = None) -> str | None:
        return self.service.accept_grid(item_ids, misfits, label, user=self.who.name, model_round=model_round)

    def accept_neighbourhood(self, item_id: int, label: str, *, k: int = 12, min_similarity: float = 0.8,
                             model_round: int | None = None) -> tuple[str, list[int]]:
        return self.service.accept_neighbourhood(item_id, label, user=self.who.name, k=k,
                                                 min_similarity=min_similarity, model_round=model_round)

    def undo(self, batch_id: str | None = None) -> list[int]:
        who = self.who
        return self.service.undo(batch_id, user=who.name, role=who.role)

    def adjudicate(self, item_ids: Sequence[int], label: str | None) -> str:
        who = self.who
        return self.service.adjudicate(item_ids, label, user=who.name, role=who.role)

    # ---- team ----------------------------------------------------------------------------
    def set_overlap(self, fraction: float, votes: int = 2) -> None:
        self.service.set_overlap(fraction, votes, role=self.require("admin", "change the overlap setting").role)

    def users(self) -> list[dict]:
        self.check("admin", "list the people of the project")
        return auth.list_users(self.service.project)

    def add_user(self, name: str, password: str, *, role: str = "annotator") -> None:
        auth.add_user(self.service.project, name, password, role=role, by=self.who)

    def set_role(self, name: str, role: str) -> None:
        auth.set_role(self.service.project, name, role, by=self.who)

    def set_disabled(self, name: str, disabled: bool) -> None:
        auth.set_disabled(self.service.project, name, disabled, by=self.who)

    def unlock(self, name: str) -> bool:
        """Clear ``name``'s failed sign-ins and lockout (admins)."""
        return auth.unlock(self.service.project, name, by=self.who)

    def mode(self) -> str:
        return auth.mode(self.service.project)

    def set_mode(self, value: str) -> None:
        auth.set_mode(self.service.project, value, by=self.who)

    def overlap_settings(self) -> tuple[float, int]:
        from labeling.team.review import overlap_settings

        fraction, votes, _salt = overlap_settings(self.service.project)
        return fraction, votes


# ---- opening a project and signing in (what the app does before any page) ----------------------
def open_project(root: str, *, start_worker: bool = True, min_new_events: int = 5, max_wait_s: float = 5.0,
                 early_labels: int = 50):
    """The service of a project and its retrain worker (None when not started), sharing one ``Project``."""
    service = LabelingService(root)
    worker = None
    if start_worker:
        worker = RetrainWorker(service.project, min_new_events=min_new_events, max_wait_s=max_wait_s,
                               early_labels=early_labels).start()
    return service, worker


def mode(service: LabelingService) -> str:
    """``local`` or ``team``."""
    return auth.mode(service.project)


def sign_in(service: LabelingService, name: str, password: str, client: str | None = None) -> Identity:
    """``client``: the browser's address, throttled as well as the name (see :func:`labeling.team.auth.sign_in`)."""
    return auth.sign_in(service.project, name, password, client=client)


def local_identity(service: LabelingService, name: str) -> Identity:
    return auth.local_identity(service.project, name)


def start_web_session(service: LabelingService, who: Identity) -> str | None:
    """A token that keeps ``who`` signed in across reloads (:mod:`labeling.team.web_sessions`)."""
    return web_cookie.start(service.project, who)


def resume_web_session(service: LabelingService, token) -> Identity | None:
    """Who a browser's session cookie stands for now, or None (raises AuthError for a disabled user)."""
    return web_cookie.resume(service.project, token)


def end_web_session(service: LabelingService, token) -> bool:
    return web_cookie.end(service.project, token)


def refresh(service: LabelingService, who: Identity) -> Identity:
    return auth.refresh(service.project, who)


class MapView:
    """The Map page's reads and its one write, for one session (``Session.map``)."""

    def __init__(self, session: "Session") -> None:
        self.session = session

    def builder(self):
        """The project's UMAP builder: one per project per process, kept on the project's caches."""
        from labeling.views.layouts import MapBuilder

        project = self.session.service.project
        return project.caches.get("map_builder", str(project.root), lambda: MapBuilder(project))

    def layout(self, *, build: bool = True):
        """``(item ids, xy, method)``: UMAP when built (starting the build when ``build``), PCA meanwhile."""
        from labeling.views.projection import get_layout

        return get_layout(self.session.service, builder=self.builder() if build else None)

    def frame(self, xy, item_ids, *, color_by: str = "label"):
        from labeling.views.projection import map_frame

        return map_frame(self.session.service, xy, item_ids, color_by=color_by, user=self.session.name)

    def thumbnails(self, item_ids: Sequence[int]):
        from labeling.views.projection import thumbnails

        return thumbnails(self.session.service, item_ids)

    def selection(self, item_ids: Sequence[int]):
        """The selected items with the labels they carry now, as this person may see them."""
        from labeling.views.bulk import selection_rows

        return selection_rows(self.session.service, item_ids, user=self.session.name)

    def resolve(self, text: str) -> list[int]:
        """Items typed as ids, file names or paths (:func:`labeling.views.bulk.resolve_selection`)."""
        from labeling.views.bulk import resolve_selection

        return resolve_selection(self.session.service, text)

    def label(self, item_ids: Sequence[int], label: str, *, overwrite: bool = False, leave_out: Sequence[int] = ()):
        """One ``lasso`` batch; a person's labels are left alone unless ``overwrite`` (a ``BulkResult``)."""
        from labeling.views.bulk import label_selection

        return label_selection(self.session.service, item_ids, label, user=self.session.who.name,
                               overwrite=overwrite, leave_out=leave_out)


class ReviewView:
    """The Review page (reviewers and admins; every read checks the role): ``Session.review``."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.service = session.service

    def _reviewer(self) -> None:
        self.session.check("reviewer", "open the review queues")

    def stats(self) -> dict:
        from labeling.team.stats import project_stats

        self._reviewer()
        return project_stats(self.service.project)

    def disagreements(self) -> list[dict]:
        from labeling.team.review import disagreements

        self._reviewer()
        return disagreements(self.service.project)

    def model_weighted(self):
        from labeling.team.consensus import model_weighted

        self._reviewer()
        return model_weighted(self.service)

    def apply_model_weighted(self) -> tuple[str | None, list[int]]:
        from labeling.team.consensus import apply_model_weighted

        who = self.session.who
        return apply_model_weighted(self.service, user=who.name, role=who.role)

    def suspected_errors(self) -> list[dict]:
        from labeling.team.review import suspected_errors

        self._reviewer()
        return suspected_errors(self.service)

    def audits(self) -> list[dict]:
        from labeling.team.review import audits

        self._reviewer()
        return audits(self.service.project)

    def attach_uris(self, rows: list[dict]) -> None:
        from labeling.team.review import attach_uris

        attach_uris(self.service.project, rows)

    def current_labels(self) -> dict:
        self._reviewer()
        return self.service.current_labels()

    def source_precision(self) -> dict:
        from labeling.team.review import source_precision

        self._reviewer()
        return source_precision(self.service.project)
