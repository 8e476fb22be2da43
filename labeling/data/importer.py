"""Import images into a project: a folder tree or a CSV/Parquet manifest.

Every file is probed (hash, size, a full decode) outside any transaction, a thumbnail is made
once per content hash, and items are recorded in chunks of short transactions. Unreadable files
are recorded with their reason and skipped; a file whose content is already in the project is
recorded as a duplicate. Re-importing adds only new files. Nothing a bad file does stops the import.

Each file is read once: its hash, its checks and its thumbnail come from one read and one full
decode (:func:`labeling.data.thumbnails.probe_and_thumbnail`), in a few threads, while the previous chunk
is written to the database with one multi-row insert.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from labeling.data.images import ProbeResult
from labeling.data.scan import relative_uri, relative_uris, scan_folder
from labeling.data.thumbnails import probe_and_thumbnail
from labeling.data.manifest import read_manifest
from labeling.project import Project, ProjectError
from storage import items as items_q
from storage import labels as labels_q

LOG = logging.getLogger(__name__)

CHUNK = 256
"""Items recorded per transaction: big enough to amortise the open, small enough to keep locks short."""


@dataclass
class ImportSummary:
    added: int = 0
    already_present: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    labels: int = 0
    new_classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "added": self.added, "already_present": self.already_present, "labels": self.labels,
            "new_classes": self.new_classes,
            "duplicates": [{"path": p, "same_as": s} for p, s in self.duplicates],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "problems": self.problems,
        }


def _probe_and_thumb(project: Project, path: Path) -> tuple[ProbeResult, str | None]:
    return probe_and_thumbnail(path, project.thumb_path)


def _probed(pool: ThreadPoolExecutor, project: Project, chunks: list[list[tuple[Path, str, str | None]]]):
    """Each chunk's probe results in turn; the next chunk is probed while the caller records this one.

    Closing the generator cancels the probes not yet started."""
    def submit(k: int) -> list:
        return [pool.submit(_probe_and_thumb, project, t[0]) for t in chunks[k]] if k < len(chunks) else []

    pending = submit(0)
    try:
        for k in range(len(chunks)):
            results = [f.result() for f in pending]
            pending = submit(k + 1)
            yield results
    finally:
        for f in pending:
            f.cancel()


@dataclass
class _ImportContext:
    """What one import knows about the project and where it records what it did."""

    summary: ImportSummary
    by_hash: dict[str, int]
    """Item id of each content hash already in the project (``-1``: claimed by the current chunk)."""
    uri_of: dict[int, str]
    """URI of each readable item, for duplicate reports."""
    existing_classes: set[str]
    user: str
    batch_id: str = ""
    claimed_by: dict[str, str] = field(default_factory=dict)
    """URI of the file of this import that claimed each content hash, for duplicate reports."""


def _split_known(
    project: Project, files: Sequence[tuple[Path, str | None]], known: dict, summary: ImportSummary,
) -> tuple[list[tuple[Path, str, str | None]], list[tuple[int, str, str]]]:
    """Files still to import as ``(path, uri, label)``, and ``(item id, uri, label)`` of labeled files
    already imported; files outside the project root are recorded as skipped."""
    todo: list[tuple[Path, str, str | None]] = []
    present_labels: list[tuple[int, str, str]] = []  # (item id, uri, label) of items already imported
    uris = relative_uris(project.root, [path for path, _label in files])
    for (path, label), uri in zip(files, uris):
        if uri is None:
            summary.skipped.append((str(path), "outside the project root"))
            continue
        if uri in known and known[uri].status == "ok":
            summary.already_present += 1
            if label:
                present_labels.append((known[uri].id, uri, label))
            continue
        todo.append((path, uri, label))
    return todo, present_labels


def _new_item(ctx: _ImportContext, uri: str, probe: ProbeResult, thumb_problem: str | None) -> items_q.NewItem:
    """The item to record for one probed file: unreadable, duplicate or ok (which claims its hash)."""
    summary = ctx.summary
    if not probe.ok:
        summary.skipped.append((uri, probe.reason or "unreadable"))
        return items_q.NewItem(uri, probe.sha256, None, None, "unreadable", probe.reason)
    if probe.sha256 in ctx.by_hash:
        same = (ctx.uri_of.get(ctx.by_hash[probe.sha256]) or ctx.claimed_by.get(probe.sha256)
                or "another item")
        summary.duplicates.append((uri, same))
        return items_q.NewItem(uri, probe.sha256, probe.width, probe.height, "duplicate",
                               f"same content as {same}")
    if thumb_problem:
        summary.problems.append(f"{uri}: {thumb_problem}")
    ctx.by_hash[probe.sha256] = -1  # claimed by this chunk; real id below
    ctx.claimed_by[probe.sha256] = uri
    return items_q.NewItem(uri, probe.sha256, probe.width, probe.height, "ok")


def _store_items(con, new_items: list[items_q.NewItem]) -> list[int]:
    """Insert new items and refresh those recorded earlier (as unreadable/duplicate); their ids in order."""
    known_now = items_q.ids_of_uris(con, [it.uri for it in new_items])
    fresh = [it for it in new_items if it.uri not in known_now]
    fresh_ids = iter(items_q.insert_items(con, fresh))
    ids = []
    for it in new_items:
        if it.uri in known_now:  # recorded earlier as unreadable/duplicate: refresh it
            items_q.update_item(con, known_now[it.uri], it)
            ids.append(known_now[it.uri])
        else:
            ids.append(next(fresh_ids))
    return ids


def _record_chunk(project: Project, ctx: _ImportContext, chunk: list[tuple[Path, str, str | None]],
                  results: list[tuple[ProbeResult, str | None]]) -> None:
    """Record one chunk of probed files, and the initial labels of its readable new items, in one session."""
    new_items = [_new_item(ctx, uri, probe, thumb_problem)
                 for (_path, uri, _label), (probe, thumb_problem) in zip(chunk, results)]
    labels_for = [label if it.status == "ok" else None for (_p, _u, label), it in zip(chunk, new_items)]
    with project.db.session() as con:
        ids = _store_items(con, new_items)
        for it, item_id in zip(new_items, ids):
            if it.status == "ok":
                ctx.by_hash[it.sha256] = item_id
                ctx.uri_of[item_id] = it.uri
                ctx.summary.added += 1
        _record_labels(con, [(i, lab) for i, lab, it in zip(ids, labels_for, new_items)
                             if lab and it.status == "ok"],
                       ctx.summary, ctx.existing_classes, user=ctx.user, batch_id=ctx.batch_id)


def import_paths(
    project: Project,
    files: Sequence[tuple[Path, str | None]],
    *,
    user: str = "import",
    summary: ImportSummary | None = None,
    progress: bool | Callable[[int, int], None] = True,
    workers: int = 4,
) -> ImportSummary:
    """Import files (each with an optional initial label) that lie inside the project root.

    A label that cannot be a class name refuses the whole import (:class:`ProjectError`, naming the
    file) before anything is written."""
    for path, label in files:
        _check_label(label, lambda p=path: relative_or_str(project, Path(p)))
    summary = summary or ImportSummary()
    with project.db.session() as con:
        known = items_q.known_uris(con)
        ctx = _ImportContext(
            summary=summary,
            by_hash=items_q.ids_by_hash(con),
            uri_of={i: u for u, (i, _s, st) in known.items() if st == "ok"},
            existing_classes={n for _i, n in labels_q.classes(con)},
            user=user,
        )
    todo, present_labels = _split_known(project, files, known, summary)
    ctx.batch_id = f"import-{uuid.uuid4()}"
    if present_labels:
        _label_present(project, present_labels, summary, ctx.existing_classes, user=user, batch_id=ctx.batch_id)
    bar = tqdm(total=len(todo), desc="import", unit="img", disable=progress is not True)
    done = 0
    chunks = [todo[start:start + CHUNK] for start in range(0, len(todo), CHUNK)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            contextlib.closing(_probed(pool, project, chunks)) as probed:
        for chunk, results in zip(chunks, probed):
            _record_chunk(project, ctx, chunk, results)
            done += len(chunk)
            bar.update(len(chunk))
            if callable(progress):
                progress(done, len(todo))
    bar.close()
    return summary


def _check_label(label: str | None, where: Callable[[], str]) -> None:
    """Raise :class:`ProjectError` (one line, naming ``where()``) when ``label`` cannot be a class name."""
    problem = None if label is None else labels_q.name_problem(label)
    if problem is not None:
        raise ProjectError(f"{where()}: {problem}; nothing imported")


def _label_present(project: Project, present: list[tuple[int, str, str]], summary: ImportSummary,
                   existing_classes: set[str], *, user: str, batch_id: str) -> None:
    """Initial labels given for items already in the project: applied where the item has no label or
    skip yet; where it has another one, that is kept (a person's decision outranks a file's) and the
    difference is reported."""
    with project.db.session() as con:
        names = dict(labels_q.classes(con))
        state = {int(r.item_id): (names.get(r.class_id) if r.kind == "label" else None)
                 for r in labels_q.current_state(con, [i for i, _u, _l in present])}
        apply = [(i, lab) for i, _u, lab in present if i not in state]
        for i, uri, lab in present:
            if i in state and state[i] != lab:
                now = f"labeled {state[i]!r}" if state[i] else "skipped"
                summary.problems.append(f"{uri}: already {now} in the project; kept that, not {lab!r} "
                                        "(relabel it in the app, or with import-labels)")
        _record_labels(con, apply, summary, existing_classes, user=user, batch_id=batch_id)


def _record_labels(con, labels: list[tuple[int, str]], summary: ImportSummary, existing_classes: set[str], *,
                   user: str, batch_id: str) -> None:
    """Store (item id, class name) initial labels as ``import`` events, creating missing classes."""
    if not labels:
        return
    names = sorted({lab for _i, lab in labels})
    class_ids = labels_q.ensure_classes(con, names, user=user)
    summary.new_classes.extend(n for n in names if n not in existing_classes)
    existing_classes.update(names)
    labels_q.append_events(con, [labels_q.Event(i, class_ids[lab]) for i, lab in labels], user=user,
                           source="import", batch_id=batch_id, model_round=None)
    summary.labels += len(labels)


def import_folder(
    project: Project, src: str | Path, *, labels_from_folders: bool = False, user: str = "import",
    progress: bool | Callable[[int, int], None] = True,
) -> ImportSummary:
    """Import every image under ``src`` (which must lie inside the project root).

    With ``labels_from_folders``, an image in ``src/<class>/...`` gets ``<class>`` as its initial
    label (source ``import``); images directly in ``src`` get none.
    """
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise ProjectError(f"{src} is not a folder")
    if not src.is_relative_to(project.root):
        raise ProjectError(
            f"{src} is outside the project folder {project.root}; images must live inside the project "
            "(use the image folder itself, or a parent of it, as the project folder)"
        )
    scan = scan_folder(project.root, src)
    summary = ImportSummary()
    summary.skipped.extend((relative_or_str(project, p), reason) for p, reason in scan.skipped)
    files = []
    for path in scan.files:
        label = None
        if labels_from_folders:
            rel = path.relative_to(src)
            label = rel.parts[0] if len(rel.parts) > 1 else None
        files.append((path, label))
    return import_paths(project, files, user=user, summary=summary, progress=progress)


def import_manifest(project: Project, manifest: str | Path, *, user: str = "import",
                    progress: bool | Callable[[int, int], None] = True) -> ImportSummary:
    """Import the files a CSV/Parquet manifest lists (``path[,label]``)."""
    parsed = read_manifest(Path(manifest), root=project.root)
    for row in parsed.rows:
        unit = "row" if Path(manifest).suffix.lower() == ".parquet" else "line"
        _check_label(row.label, lambda r=row: f"{Path(manifest).name} {unit} {r.line}")
    summary = ImportSummary(problems=list(parsed.problems))
    files = [(row.path, row.label) for row in parsed.rows]
    return import_paths(project, files, user=user, summary=summary, progress=progress)


def relative_or_str(project: Project, path: Path) -> str:
    try:
        return relative_uri(project.root, path)
    except ValueError:
        return str(path)


def parse_class_list(text: str) -> list[str]:
    """``"cat, dog,bird"`` → ``["cat", "dog", "bird"]``: commas or new lines, blanks dropped, first
    occurrence kept; every name checked as a class name (one-line :class:`ValueError` naming it)."""
    out: list[str] = []
    for raw in str(text).replace("\n", ",").split(","):
        name = raw.strip()
        if name and name not in out:
            labels_q.check_class_name(name)
            out.append(name)
    return out


def declare_classes(project: Project, names: Sequence[str], *, user: str = "import") -> dict:
    """Create the classes a project labels with, before any label, in the order given (their keys on the
    Label page follow it); names that exist already are kept as they are. Returns the names created and
    the names already there."""
    names = [labels_q.check_class_name(str(n).strip()) for n in names]
    with project.db.session() as con:
        before = {c.name for c in labels_q.classes(con)}
        labels_q.ensure_classes(con, names, user=user)
    return {"created": [n for n in names if n not in before], "existing": [n for n in names if n in before]}
