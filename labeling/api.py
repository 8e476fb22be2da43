"""Quorum from Python: open a project as someone, then import, embed, train, ask the queue, label, undo,
export and read the figures, and bring in a model's predictions as suggestions. Every call acts as the :class:`~labeling.team.auth.Identity` the project was
opened with and meets the same role checks as the app (``import``, ``embed``, ``import_predictions``: admins;
``export``: reviewers; labeling and undoing one's own batches: everyone).

>>> import labeling
>>> q = labeling.open_project("demo-project", user="ada")   # local mode: the person named; team mode: a password
>>> labeling.embed_images(q)                                 # whatever is not embedded yet
>>> labeling.train(q)                                        # one round on the current labels
>>> for item in labeling.queue(q, 5):
...     print(item.item_id, item.uri, item.pseudo_label, round(item.confidence, 2))
>>> batch = labeling.label(q, [item.item_id], "zebra")
>>> labeling.undo(q, batch)
>>> labeling.export(q, "parquet", "labels.parquet")
>>> labeling.stats(q)["labels"]
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from labeling.session import Identity, LabelingService, QueueItem, Session
from labeling.team import auth


def open_project(root: str | os.PathLike[str], *, user: str | Identity = "local", password: str | None = None,
                 create: bool = False) -> Session:
    """A project, as ``user``: in local mode the person named (an admin of their own project); in team mode
    the signed-in user (``password`` required), with that user's role. ``create`` makes an empty project."""
    service = LabelingService(root, create=create)
    if isinstance(user, Identity):
        return Session(service, auth.refresh(service.project, user))
    if auth.mode(service.project) == "team":
        if password is None:
            raise auth.AuthError(f"{service.project.root.name} is in team mode: open it with user= and password=")
        return Session(service, auth.sign_in(service.project, user, password))
    return Session(service, auth.local_identity(service.project, user))


def import_images(q: Session, src: str | os.PathLike[str], *, labels_from_folders: bool = False) -> dict:
    """Import the images of ``src`` (a folder inside the project) with the import's checks; admins."""
    return q.data.run_import(src, labels_from_folders=labels_from_folders)


def embed_images(q: Session, *, backbone: str | None = None, device: str = "auto") -> dict:
    """Embed every item not embedded yet (resumable); admins."""
    return q.data.run_embed(backbone=backbone, device=device)


def import_predictions(q: Session, path: str | os.PathLike[str], *, name: str | None = None) -> dict:
    """A model's predictions (label + score, per-class probabilities, or Label Studio predictions) as
    suggestions: the model joins the next rounds as an ensemble member; no label is written. Admins."""
    from labeling.data.predictions import import_predictions as read_in

    who = q.require("admin", "import predictions")
    return read_in(q.service.project, path, name=name, user=who.name)


def train(q: Session, *, device: str = "auto", cv: bool = True) -> int:
    """Train one round on the current labels (with its cross-validated figures); returns the round id."""
    from labeling.model.rounds import train_round

    q.require("annotator", "train a round")
    return train_round(q.service.project, device=device, cv=cv)


def queue(q: Session, n: int = 20, *, strategy: str = "default") -> list[QueueItem]:
    """The next ``n`` items to label, most useful first (the Label page's order)."""
    return q.queue(n, strategy=strategy)


def label(q: Session, item_ids: Sequence[int], label: str | None, *, source: str = "manual") -> str:
    """Label items as one batch (``None``: skip / unsure); returns the batch id for :func:`undo`."""
    return q.label([int(i) for i in item_ids], label, source=source)


def undo(q: Session, batch_id: str | None = None) -> list[int]:
    """Undo a batch (default: this person's newest); another person's needs a reviewer."""
    return q.undo(batch_id)


def export(q: Session, fmt: str, out: str | os.PathLike[str], *, labeled_only: bool = False,
           overwrite: bool = False) -> dict:
    """Write the labels (``csv``, ``jsonl``, ``parquet``, ``coco``, ``hf``, ``imagefolder``) to ``out``;
    reviewers. The project's own files are refused, and an existing ``out`` unless ``overwrite``."""
    from labeling.data.export import export as write

    q.require("reviewer", "export labels")
    return write(q.service.project, fmt, Path(out), labeled_only=labeled_only, overwrite=overwrite)


def stats(q: Session) -> dict:
    """The project's figures: items, labels, classes, the round in use, and the team's agreement."""
    from labeling.team.stats import report

    return report(q.service)
