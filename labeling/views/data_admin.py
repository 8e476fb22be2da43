"""Project administration behind the Data page: import and embed, classes, export, statistics.

Classes
-------
Class names are stored verbatim (only surrounding white space is stripped) and always passed to
the database as parameters; the pages show them as plain text.

A **merge** keeps the append-only history: it appends one ``label`` event per item currently
labeled with the source class, pointing at the target, as ONE batch (id ``merge-<source id>-…``,
source ``merge``), and marks the source class ``merged_into`` the target. From then on the source
class is hidden from the class list and a label given with its name lands on the target.

:func:`undo_merge` reverses it: it undoes that batch (the items get their source labels back,
unless someone relabeled them since) and makes the source class active again. Undoing the merge
batch through the ordinary undo (for instance the merging person's "undo last batch") restores
the source labels too but leaves the class merged; :func:`class_table` then shows the merged
class with a non-zero count, and :func:`undo_merge` completes the reversal.
"""
from __future__ import annotations

import io
import logging
import mimetypes
import os
import re
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from labeling.data.export import FORMATS, export
from labeling.data.importer import import_folder, import_manifest
from labeling.embed.pipeline import embed_project
from labeling.project import ProjectError
from labeling.service import LabelingService, UnknownClass
from storage import classes_admin as admin_q
from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q

LOG = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with ``(done, total)`` as work advances."""

FILE_FORMATS = ("csv", "jsonl", "parquet", "coco", "labelstudio")
"""Export formats that produce one file (and so can be downloaded); ``imagefolder`` is a tree."""

EXPORTS_DIR = "exports"
"""The one folder, inside the project, that exports from a browser are written to."""
DEFAULT_EXPORT_NAMES = {"csv": "labels.csv", "jsonl": "labels.jsonl", "parquet": "labels.parquet",
                        "imagefolder": "imagefolder", "coco": "labels.coco.json", "hf": "hf-imagefolder",
                        "fiftyone": "fiftyone-dataset", "labelstudio": "labelstudio-tasks.json"}
"""Suggested export names (inside :data:`EXPORTS_DIR`)."""
_EXPORT_NAME = re.compile(r"[\w][\w\-. ]{0,99}")


# ---- classes -----------------------------------------------------------------------------------
def _clean_name(name: str, *, what: str = "class name") -> str:
    if not isinstance(name, str):
        raise ValueError(f"a {what} must be text, got {type(name).__name__}")
    cleaned = name.strip()
    if not cleaned:
        raise ValueError(f"a {what} cannot be empty")
    return cleaned


def _require_user(user: str) -> str:
    if not user or not user.strip():
        raise ValueError("a user name is required")
    return user.strip()


def _active_class(con, name: str) -> int:
    found = admin_q.class_by_name(con, name)
    if found is None:
        raise UnknownClass(f"no class called {name!r}")
    if found.merged_into is not None:
        raise ValueError(f"class {name!r} was merged into another class; un-merge it first")
    return found.id


def add_class(service: LabelingService, name: str, *, user: str) -> int:
    """Create a class.

    Parameters
    ----------
    service : LabelingService
    name : str
        Stored verbatim after stripping surrounding white space.
    user : str
        Recorded as the class's creator.

    Returns
    -------
    int
        The new class id.

    Raises
    ------
    ValueError
        The name is empty, longer than 100 characters, has a control character, or a class
        (active or merged) already has it.
    """
    name = labels_q.check_class_name(_clean_name(name))
    user = _require_user(user)
    with service.project.db.session() as con:
        found = admin_q.class_by_name(con, name)
        if found is not None:
            state = " (merged into another class)" if found.merged_into is not None else ""
            raise ValueError(f"a class called {name!r} already exists{state}")
        return admin_q.insert_class(con, name, user=user)


def rename_class(service: LabelingService, old: str, new: str, *, user: str) -> None:
    """Rename an active class; its labels follow it (they refer to the class id).

    Raises
    ------
    LookupError
        No class is called ``old``.
    ValueError
        ``new`` is empty, equals ``old``, or is taken (merge the two classes instead), or ``old``
        is merged.
    """
    _require_user(user)
    old = _clean_name(old)
    new = labels_q.check_class_name(_clean_name(new, what="new class name"), what="new class name")
    if new == old:
        raise ValueError(f"class {old!r} already has that name")
    with service.project.db.session() as con:
        class_id = _active_class(con, old)
        if admin_q.class_by_name(con, new) is not None:
            raise ValueError(f"a class called {new!r} already exists; merge {old!r} into {new!r} instead")
        labels_q.rename_class(con, class_id, new)
    LOG.info("%s renamed class %r to %r", user, old, new)


def merge_classes(service: LabelingService, source: str, target: str, *, user: str) -> dict:
    """Merge ``source`` into ``target``: its labels move as one undoable batch; no event is rewritten.

    Parameters
    ----------
    service : LabelingService
    source, target : str
        Names of two different active classes.
    user : str
        Recorded on the relabel events.

    Returns
    -------
    dict
        ``batch_id`` (None when no item carried ``source``), ``moved`` (item count),
        ``source`` and ``target``.

    Raises
    ------
    LookupError
        Either class does not exist.
    ValueError
        The two are the same, or either is already merged.
    """
    user = _require_user(user)
    source, target = _clean_name(source), _clean_name(target)
    if source == target:
        raise ValueError("cannot merge a class into itself")
    with service.project.db.session() as con:
        source_id = _active_class(con, source)
        target_id = _active_class(con, target)
        items = admin_q.items_labeled(con, source_id)
        batch_id = f"merge-{source_id}-{uuid.uuid4()}" if items else None
        if batch_id is not None:
            admin_q.append_relabel(con, items, target_id, user=user, batch_id=batch_id)
        admin_q.repoint_merged(con, source_id, target_id)
        admin_q.set_merged_into(con, source_id, target_id)
    return {"batch_id": batch_id, "moved": len(items), "source": source, "target": target}


def undo_merge(service: LabelingService, source: str, *, user: str) -> list[int]:
    """Reverse the newest merge of ``source``: undo its relabel batch and make ``source`` active again.

    Items relabeled after the merge keep their newer label. Classes that had been merged into
    ``source`` before stay merged into the target.

    Returns
    -------
    list of int
        The items whose merge event was revoked (empty when the batch was already undone).

    Raises
    ------
    LookupError
        No class is called ``source``.
    ValueError
        ``source`` is not merged, or its name is needed elsewhere.
    """
    user = _require_user(user)
    source = _clean_name(source)
    with service.project.db.session() as con:
        found = admin_q.class_by_name(con, source)
        if found is None:
            raise UnknownClass(f"no class called {source!r}")
        source_id, merged_into = found
        if merged_into is None:
            raise ValueError(f"class {source!r} is not merged")
        items: list[int] = []
        live = admin_q.live_batches_like(con, f"merge-{source_id}-")
        if live:
            items = labels_q.undo_batch(con, live[0], user=user, undo_batch_id=str(uuid.uuid4()))
        admin_q.set_merged_into(con, source_id, None)
    return items


def class_table(service: LabelingService) -> pd.DataFrame:
    """Every class with its current label count: active classes first, then merged ones.

    Returns
    -------
    pandas.DataFrame
        Columns ``class``, ``labels`` (items whose current label is the class), ``merged_into``
        (name, or None for an active class), ``created_by``, ``created_at``; active classes
        first, each group in creation order.
    """
    with service.project.db.session() as con:
        rows = admin_q.class_rows(con)
        counts = dict(admin_q.label_counts(con))
    names = {i: n for i, n, *_ in rows}
    table = pd.DataFrame(
        [{"class": n, "labels": counts.get(i, 0), "merged_into": names.get(m) if m is not None else None,
          "created_by": u, "created_at": t} for i, n, m, u, t in rows],
        columns=["class", "labels", "merged_into", "created_by", "created_at"])
    order = table["merged_into"].notna().astype(int)
    return table.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


# ---- statistics --------------------------------------------------------------------------------
def disk_usage(path: str | os.PathLike[str]) -> int:
    """Bytes in the regular files under ``path`` (links not followed; 0 when missing)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # removed while walking (a cache swap)
                continue
            total += st.st_size
    return total


def project_stats(service: LabelingService) -> dict:
    """Counts that describe a project.

    Returns
    -------
    dict
        ``items`` (dict: ``ok``, ``unreadable``, ``duplicate``, ``total``), ``labeled``,
        ``skipped`` (items whose current state is skip/unsure), ``unlabeled`` (readable items with
        neither), ``per_class`` (DataFrame ``class``, ``labels`` over active classes, most first),
        ``by_annotator`` (DataFrame ``annotator``, ``labels``), ``by_source`` (DataFrame
        ``source``, ``labels``), ``rounds`` (dict of counts per status plus ``total`` and
        ``latest`` finished id or None), ``backbone`` and ``vector_dim`` (None before embedding),
        ``disk_bytes`` (``.quorum`` folder) and ``database_bytes``.
    """
    project = service.project
    with project.db.session() as con:
        counts = items_q.counts(con)
        state = admin_q.state_counts(con)
        per_class_ids = dict(admin_q.label_counts(con))
        active = labels_q.classes(con)
        by_user = admin_q.counts_by(con, "user_name")
        by_source = admin_q.counts_by(con, "source")
        rounds = admin_q.round_counts(con)
        latest = rounds_q.latest_finished(con)
        backbone = rounds_q.get_setting(con, "backbone")
        dim = rounds_q.get_setting(con, "vector_dim")
    items = {k: int(counts.get(k, 0)) for k in ("ok", "unreadable", "duplicate")}
    items["total"] = sum(items.values())
    per_class = pd.DataFrame([{"class": n, "labels": per_class_ids.get(i, 0)} for i, n in active],
                             columns=["class", "labels"])
    per_class = per_class.sort_values("labels", ascending=False, kind="stable").reset_index(drop=True)
    labeled, skipped = state.get("label", 0), state.get("skip", 0)
    db_file = project.root / "quorum.duckdb"
    return {
        "items": items,
        "labeled": labeled,
        "skipped": skipped,
        "unlabeled": max(0, items["ok"] - labeled - skipped),
        "per_class": per_class,
        "by_annotator": pd.DataFrame(by_user, columns=["annotator", "labels"]),
        "by_source": pd.DataFrame(by_source, columns=["source", "labels"]),
        "rounds": {**rounds, "total": sum(rounds.values()), "latest": None if latest is None else latest["id"]},
        "backbone": backbone,
        "vector_dim": None if dim is None else int(dim),
        "disk_bytes": disk_usage(project.data_dir),
        "database_bytes": db_file.stat().st_size if db_file.exists() else 0,
    }


def unreadable_files(service: LabelingService) -> pd.DataFrame:
    """Recorded files that are not usable items (unreadable or duplicate), with the reason.

    Returns
    -------
    pandas.DataFrame
        Columns ``uri``, ``status``, ``reason``, in import order.
    """
    with service.project.db.session() as con:
        rows = items_q.skipped_items(con)
    return pd.DataFrame(rows, columns=["uri", "status", "reason"])


# ---- import, embed, export ---------------------------------------------------------------------
def resolve_in_project(service: LabelingService, path: str | os.PathLike[str], *, what: str = "path") -> Path:
    """A path given relative to the project root (or absolute), required to lie inside it.

    Raises
    ------
    ValueError
        The path is empty or resolves outside the project folder.
    """
    text = str(path).strip()
    if not text:
        raise ValueError(f"give a {what}")
    root = service.project.root
    candidate = Path(text).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{what} {text!r} is outside the project folder {root}; images and manifests must "
                         "live inside the project (copy or move them there first)")
    return resolved


def run_import(service: LabelingService, src: str | os.PathLike[str] | None = None, *,
               labels_from_folders: bool = False, manifest: str | os.PathLike[str] | None = None,
               user: str = "import", progress: Progress | None = None) -> dict:
    """Import a folder and/or a manifest, both inside the project folder.

    Parameters
    ----------
    service : LabelingService
    src : path, optional
        A folder, relative to the project root or absolute inside it.
    labels_from_folders : bool, default False
        Give images in ``src/<class>/…`` the initial label ``<class>``.
    manifest : path, optional
        A CSV/TSV/Parquet manifest (``path[,label]``) inside the project folder.
    user : str, default "import"
        Recorded on initial labels.
    progress : callable, optional
        ``progress(done, total)`` per recorded chunk of each import.

    Returns
    -------
    dict
        :meth:`ImportSummary.to_dict` of the folder and manifest imports combined.

    Raises
    ------
    ValueError
        Neither a folder nor a manifest, a path outside the project, a folder that does not exist,
        or an unreadable manifest (``ManifestError``).
    OSError
        The manifest cannot be read from disk.
    """
    if not str(src or "").strip() and not str(manifest or "").strip():
        raise ValueError("give a folder to import, a manifest, or both")
    quiet = progress if progress is not None else False
    parts = []
    if str(src or "").strip():
        parts.append(_import_folder_part(service, src, labels_from_folders, user, quiet))
    if str(manifest or "").strip():
        parts.append(_import_manifest_part(service, manifest, user, quiet))
    return _merge_summaries(parts)


def _import_folder_part(service: LabelingService, src, labels_from_folders: bool, user: str, quiet) -> dict:
    folder = resolve_in_project(service, src, what="folder")
    if not folder.is_dir():
        raise ProjectError(f"folder {str(src).strip()!r} does not exist in the project ({folder})")
    return import_folder(service.project, folder, labels_from_folders=labels_from_folders, user=user,
                         progress=quiet).to_dict()


def _import_manifest_part(service: LabelingService, manifest, user: str, quiet) -> dict:
    path = resolve_in_project(service, manifest, what="manifest")
    if not path.is_file():
        raise ProjectError(f"manifest {str(manifest).strip()!r} does not exist in the project ({path})")
    return import_manifest(service.project, path, user=user, progress=quiet).to_dict()


def _merge_summaries(parts: list[dict]) -> dict:
    """The first import summary, with the counts and lists of the others added (new classes once each)."""
    out = parts[0]
    for more in parts[1:]:
        for key in ("added", "already_present", "labels"):
            out[key] += more[key]
        for key in ("new_classes", "duplicates", "skipped", "problems"):
            out[key] = out[key] + [v for v in more[key] if key != "new_classes" or v not in out[key]]
    return out


def run_embed(service: LabelingService, *, backbone: str | None = None, device: str = "auto",
              progress: Progress | None = None) -> dict:
    """Embed every readable item that has no vector yet (the project's backbone by default).

    Raises
    ------
    ValueError
        The backbone cannot be loaded offline (``BackboneUnavailable``) or the device is not
        available (``DeviceUnavailableError``).
    """
    return embed_project(service.project, backbone=backbone or None, device=device,
                         progress=progress if progress is not None else False)


def export_target(service: LabelingService, name: str) -> Path:
    """Where a browser export named ``name`` goes: ``exports/<name>`` inside the project, nowhere else.

    ``name`` is a plain file or folder name (letters, digits, ``-``, ``_``, ``.`` and spaces, at most 100
    characters, not hidden): a browser user never types a path on the server.
    """
    text = str(name).strip()
    if not text:
        raise ValueError("give the export a name, e.g. labels.csv")
    if not _EXPORT_NAME.fullmatch(text) or text in (".", ".."):
        raise ValueError(f"{text[:60]!r} is not a plain name: use letters, digits, '-', '_' and '.', "
                         f"e.g. labels.csv (exports go to {EXPORTS_DIR}/ inside the project)")
    return service.project.root / EXPORTS_DIR / text


def run_export(service: LabelingService, fmt: str, name: str, *, labeled_only: bool = False,
               link: bool = False, overwrite: bool = False) -> dict:
    """Export the labels to ``exports/<name>`` inside the project (see :func:`export_target`).

    Returns
    -------
    dict
        ``format``, ``out`` (absolute path), ``name`` (relative to the project) and ``rows``.

    Raises
    ------
    ValueError
        Unknown format, a name that is not a plain name, or an existing export without ``overwrite``
        (``ExportError``).
    OSError
        The file cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    target = export_target(service, name)
    result = export(service.project, fmt, target, labeled_only=labeled_only, link=link, overwrite=overwrite)
    return {**result, "name": f"{EXPORTS_DIR}/{target.name}"}


def export_payload(result: dict) -> tuple[bytes, str, str]:
    """``(bytes, file name, mime type)`` of an export, for a download: the file itself, or a tree as a zip."""
    path = Path(result["out"])
    if result["format"] not in FILE_FORMATS:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted(path.rglob("*")):
                if f.is_file():
                    zf.write(f, Path(path.name) / f.relative_to(path))
        return buf.getvalue(), f"{path.name}.zip", "application/zip"
    mime = {"jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet",
            "coco": "application/json"}.get(
        result["format"], mimetypes.guess_type(path.name)[0] or "text/csv")
    return path.read_bytes(), path.name, mime


def run_label_import(service: LabelingService, path: str | os.PathLike[str], *, user: str) -> dict:
    """Import a label file (CSV, JSONL, Parquet, COCO JSON, HF metadata.jsonl) from inside the project.

    The path is taken from the project root and may not leave it: a page must not read other files of
    the server's machine. Labels keep the source ``import``; the acting person is recorded as the user.
    """
    from labeling.data.formats import import_labels

    text = str(path).strip()
    if not text:
        raise ValueError("give the path of a label file")
    root = service.project.root.resolve()
    target = Path(text).expanduser()
    target = (target if target.is_absolute() else root / target).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{text} is outside the project folder; copy the label file into {root} first")
    return import_labels(service, target, user=user)
