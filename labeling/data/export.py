"""Export the current labels (with provenance and the newest round's pseudo-labels)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from labeling.project import Project
from labeling.model.round_files import latest_predictions
from storage import classes_admin as admin_q
from storage import items as items_q
from storage import labels as labels_q

FORMATS = ("csv", "jsonl", "parquet", "imagefolder", "coco", "hf", "fiftyone", "labelstudio")
TREE_FORMATS = ("imagefolder", "hf", "fiftyone")
"""Formats that write a folder of images (copied or linked) rather than one file."""
PROVENANCE = ("annotator", "source", "created_at", "model_round", "n_votes", "n_agree", "adjudicated_by")


CLASS_MAP = "classes.json"
"""Written inside an ImageFolder export: which folder holds which class (names made safe for a folder
can differ from the class: ``CAT`` may live in ``cat-2``). Reading the tree back uses it."""
_TEXT, _WHOLE, _TIME = pa.string(), pa.int64(), pa.timestamp("us", tz="UTC")
LABEL_SCHEMA = pa.schema([
    ("item_id", _WHOLE), ("uri", _TEXT), ("label", _TEXT), ("status", _TEXT), ("annotator", _TEXT),
    ("source", _TEXT), ("created_at", _TIME), ("model_round", _WHOLE), ("n_votes", _WHOLE), ("n_agree", _WHOLE),
    ("adjudicated_by", _TEXT), ("event_id", _WHOLE), ("pseudo_label", _TEXT), ("confidence", pa.float64()),
    ("round_id", _WHOLE)])
"""The label table's columns and types, the same in every export (a column with no value yet keeps its
type, so two exports taken at different times concatenate); times are UTC timestamps."""
HISTORY_SCHEMA = pa.schema([
    ("event_id", _WHOLE), ("item_id", _WHOLE), ("uri", _TEXT), ("kind", _TEXT), ("label", _TEXT), ("user", _TEXT),
    ("source", _TEXT), ("batch_id", _TEXT), ("revokes", _TEXT), ("model_round", _WHOLE), ("created_at", _TIME),
    ("undone", pa.bool_())])


class ExportError(ValueError):
    """The export could not be written where asked."""


def safe_name(name: str) -> str:
    """A folder name for a class: no separators, no '..', nothing hidden."""
    cleaned = re.sub(r"[^\w\-. ]+", "_", name, flags=re.UNICODE).strip(" .")
    return cleaned or "_"


def _pseudo_labels(project: Project, names: dict) -> tuple[dict, dict, int | None]:
    """(item -> pseudo-label name, item -> confidence, the round's id) of the newest round; empty before one."""
    got = latest_predictions(project)
    pseudo, conf, round_id = {}, {}, None
    if got is not None:
        rnd, p = got
        round_id = rnd["id"]
        for i, c, f in zip(p.item_ids.tolist(), p.pseudo.tolist(), p.confidence.tolist()):
            pseudo[i] = names.get(c)
            conf[i] = f
    return pseudo, conf, round_id


def _label_row(item_id: int, uri: str, s: labels_q.Provenance | None, names: dict, pseudo: dict, conf: dict,
               round_id) -> dict:
    """One item's row of the label table; ``s`` is its current-provenance row, None when never labeled."""
    label = names.get(s.class_id) if s is not None and s.kind == "label" else None
    return {"item_id": item_id, "uri": uri, "label": label,
            "status": "labeled" if label else ("skipped" if s is not None else "unlabeled"),
            "annotator": s.user_name if s else None, "source": s.source if s else None,
            "created_at": s.created_at if s else None, "model_round": s.model_round if s else None,
            "n_votes": s.n_votes if s else None, "n_agree": s.n_agree if s else None,
            "adjudicated_by": s.user_name if s and s.source == "adjudication" else None,
            "event_id": s.event_id if s else None, "pseudo_label": pseudo.get(item_id),
            "confidence": conf.get(item_id), "round_id": round_id}


def label_table(project: Project) -> pd.DataFrame:
    """One row per readable item: its current label and provenance, and the newest pseudo-label."""
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
        names = dict(labels_q.classes(con))
        state = {int(r.item_id): r for r in labels_q.current_provenance(con)}
    pseudo, conf, round_id = _pseudo_labels(project, names)
    rows = [_label_row(item_id, uri, state.get(item_id), names, pseudo, conf, round_id)
            for item_id, uri in zip(ids.tolist(), uris)]
    return _typed(pd.DataFrame(rows, columns=LABEL_SCHEMA.names), LABEL_SCHEMA)


def _typed(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Whole numbers with gaps as ``Int64``, times as UTC timestamps (stored naive in UTC), the rest as is."""
    for field in schema:
        if field.type == _WHOLE:
            frame[field.name] = frame[field.name].astype("Int64")
        elif field.type == _TIME:
            frame[field.name] = pd.to_datetime(frame[field.name], utc=True)
    return frame


class _Placer:
    """Puts images into an export tree: copies, or symbolic links when asked.

    Where the filesystem refuses a link (no permission, no link support), the image is copied instead
    and the first refusal is kept as a note; after one refusal the rest are copied without trying.
    """

    def __init__(self, link: bool) -> None:
        self.link = link
        self.linked = 0
        self.copied = 0
        self.refused: str | None = None

    def __call__(self, src: Path, dest: Path) -> None:
        if self.link and self.refused is None:
            try:
                dest.symlink_to(src.resolve())
                self.linked += 1
                return
            except OSError as exc:
                self.refused = exc.strerror or type(exc).__name__
        shutil.copy2(src, dest)
        self.copied += 1

    def report(self) -> dict:
        notes = []
        if self.link and self.refused is not None:
            notes.append(f"the filesystem refused links ({self.refused}); {self.copied} images were copied instead")
        return {"linked": self.linked, "copied": self.copied, "link_refused": self.copied if self.link else 0,
                "notes": notes}


def _partial(out: Path) -> Path:
    """The temporary name an export is written under before it is renamed into place: beside ``out``,
    hidden, marked partial, so an interrupted export never looks complete."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


TREE_MARK = ".quorum-export"
"""The file every tree export holds: only a folder that has it may be replaced by ``overwrite``."""


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """An existing file (or non-empty folder) is replaced only when asked, and a folder only when it is
    an earlier tree export (so ``overwrite`` can never delete a folder of images or anything else)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise ExportError(f"{out} exists; choose a new name or pass --overwrite")
    if out.is_dir() and not (out / TREE_MARK).is_file():
        raise ExportError(f"{out} is a folder that is not an earlier export; choose a new name")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out``: a file atomically, a folder by moving any old one aside first."""
    if tmp.is_dir() and out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, out)


def _plain_value(v):
    """A JSON-ready value: missing values as None, numpy scalars as Python numbers, times as ISO 8601 with
    their zone."""
    if v is None or (not isinstance(v, (list, dict, str)) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v


def _records(table) -> list[dict]:
    return [{k: _plain_value(v) for k, v in rec.items()} for rec in table.to_dict(orient="records")]


def _class_folders(labels, out: Path) -> tuple[dict[str, Path], list[str]]:
    """A folder inside ``out`` for each class; classes whose safe names collide get their own folders."""
    folders: dict[str, Path] = {}
    taken: dict[str, str] = {}
    notes = []
    for label in sorted(set(labels)):
        name = safe_name(label)
        if name.casefold() in taken:
            k = 2
            while f"{name}-{k}".casefold() in taken:
                k += 1
            notes.append(f"class {label!r} is in folder {name}-{k}: {name!r} already holds "
                         f"{taken[name.casefold()]!r}")
            name = f"{name}-{k}"
        taken[name.casefold()] = label
        folder = (out / name).resolve()
        if not folder.is_relative_to(out):
            raise ExportError(f"class name {label!r} would leave {out}")
        folders[label] = folder
    return folders, notes


def history_table(project: Project) -> pd.DataFrame:
    """Every label event in order, undone ones included: the full provenance behind the current labels.

    Columns: event_id, item_id, uri, kind (label, skip, undo), label, user, source, batch_id, revokes (the
    batch an undo revokes), model_round (the round the person saw), created_at, undone (whether a later
    undo revoked the event's batch).
    """
    with project.db.session() as con:
        events = labels_q.all_events(con)
        names = {row.id: row.name for row in admin_q.class_rows(con)}
        uri_of = {item_id: uri for uri, (item_id, _sha, _status) in items_q.known_uris(con).items()}
    revoked = {e.revokes for e in events if e.kind == "undo" and e.revokes is not None}
    frame = pd.DataFrame(
        [{"event_id": e.id, "item_id": e.item_id, "uri": uri_of.get(e.item_id), "kind": e.kind,
          "label": names.get(e.class_id) if e.class_id is not None else None, "user": e.user_name,
          "source": e.source, "batch_id": e.batch_id, "revokes": e.revokes, "model_round": e.model_round,
          "created_at": e.created_at, "undone": e.batch_id in revoked} for e in events],
        columns=HISTORY_SCHEMA.names)
    return _typed(frame, HISTORY_SCHEMA)


def _write_table(table: pd.DataFrame, out: Path, kind: str) -> None:
    """Write a table as csv, jsonl or parquet under a temporary name, then rename it into place; Parquet
    with the table's fixed schema (:data:`LABEL_SCHEMA`, :data:`HISTORY_SCHEMA`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(out)
    try:
        if kind == "csv":
            table.to_csv(tmp, index=False)
        elif kind == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in _records(table):
                    fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        else:
            import pyarrow.parquet as pq

            schema = LABEL_SCHEMA if list(table.columns) == LABEL_SCHEMA.names else HISTORY_SCHEMA
            pq.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def history_path(fmt: str, out: Path) -> Path:
    """Where ``--history`` writes the event log: inside a tree export, beside a file export."""
    if fmt in TREE_FORMATS:
        return out / "events.jsonl"
    kind = fmt if fmt in ("csv", "jsonl", "parquet") else "jsonl"
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.events.{kind}")


def _export_tree(project: Project, fmt: str, table: pd.DataFrame, out: Path, link: bool,
                 history: bool = False) -> dict:
    """Write an ImageFolder or Hugging Face tree as ``out`` (built under a temporary name, then renamed
    into place): what was linked, copied, noted."""
    tmp = _partial(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        result = _fill_tree(project, fmt, table, tmp, link)
        (tmp / TREE_MARK).write_text(json.dumps({"format": fmt, "project": project.root.name}) + "\n")
        if history:
            events = history_table(project)
            _write_table(events, history_path(fmt, tmp), "jsonl")
            result.update(history=str(history_path(fmt, out)), events=int(len(events)))
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result


def _fill_tree(project: Project, fmt: str, table: pd.DataFrame, out: Path, link: bool) -> dict:
    place = _Placer(link)
    notes: list[str] = []
    if fmt == "imagefolder":
        folders, notes = _class_folders(table["label"], out)
        (out / CLASS_MAP).write_text(json.dumps({"folders": {f.name: label for label, f in sorted(folders.items())}},
                                                ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        for row in table.itertuples():
            folder = folders[row.label]
            folder.mkdir(exist_ok=True)
            src = project.resolve_uri(row.uri)
            place(src, folder / f"{row.item_id}_{safe_name(src.name)}")
    elif fmt == "fiftyone":  # FiftyOneImageClassificationDataset: data/<id>.<ext> and labels.json
        (out / "data").mkdir()
        classes = sorted(set(table["label"]))
        labels = {}
        for row in table.itertuples():
            src = project.resolve_uri(row.uri)
            stem = f"{row.item_id:08d}"
            place(src, out / "data" / f"{stem}{src.suffix.lower()}")
            labels[stem] = classes.index(row.label)
        (out / "labels.json").write_text(json.dumps({"classes": classes, "labels": labels}, ensure_ascii=False),
                                         encoding="utf-8")
    else:
        with open(out / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for rec in _records(table):
                src = project.resolve_uri(rec["uri"])
                name = f"{rec['item_id']}_{safe_name(src.name)}"
                place(src, out / name)
                fh.write(json.dumps({"file_name": name, **{k: v for k, v in rec.items() if k != "status"}},
                                    ensure_ascii=False, default=str) + "\n")
    placed = place.report()
    return {**placed, "notes": notes + placed["notes"]}


def _export_coco(project: Project, table: pd.DataFrame, out: Path) -> None:
    """Write a COCO-style classification JSON to ``out`` (under a temporary name, then renamed)."""
    with project.db.session() as con:
        sizes = items_q.items_by_ids(con, table["item_id"].tolist())
    categories = sorted(set(table["label"]))
    cat_id = {c: k for k, c in enumerate(categories, start=1)}
    doc = {"info": {"description": f"Quorum labels of {project.root.name}", "project": project.root.name,
                    "version": "1.0", "date_created": pd.Timestamp.now(tz="UTC").isoformat(),
                    "round_id": _plain_value(table["round_id"].iloc[0]) if len(table) else None},
           "licenses": [],
           "categories": [{"id": cat_id[c], "name": c, "supercategory": ""} for c in categories],
           "images": [{"id": int(r["item_id"]), "file_name": r["uri"], "uri": r["uri"],
                       "width": sizes[int(r["item_id"])]["width"], "height": sizes[int(r["item_id"])]["height"],
                       "pseudo_label": r["pseudo_label"], "confidence": r["confidence"]}
                      for r in _records(table)],
           # a whole-image box, so that COCO tools (pycocotools) load it; the label is the category
           "annotations": [{"id": k, "image_id": int(r["item_id"]), "category_id": cat_id[r["label"]],
                            **_whole_image(sizes[int(r["item_id"])]), **{c: r[c] for c in PROVENANCE},
                            "event_id": r["event_id"]}
                           for k, r in enumerate(_records(table), start=1)]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(out)
    try:
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _whole_image(size: dict) -> dict:
    w, h = int(size["width"] or 0), int(size["height"] or 0)
    return {"bbox": [0, 0, w, h], "area": w * h, "iscrowd": 0}


def refuse_project_files(project: Project, out: Path) -> None:
    """Refuse an export onto or into the project's own files: its database, the database's write-ahead
    log, or anything under ``.quorum/`` (one would lose the project, the other its caches)."""
    from labeling.project import DB_NAME

    root = project.root.resolve()
    db = root / DB_NAME
    own = {db, db.with_name(db.name + ".wal")}
    if out in own or out.is_relative_to(root / project.data_dir.name) or root.is_relative_to(out):
        raise ExportError(f"{out} is one of the project's own files; export to another path (e.g. exports/)")


def export(project: Project, fmt: str, out: str | Path, *, labeled_only: bool = False, link: bool = False,
           history: bool = False, overwrite: bool = False) -> dict:
    """Write the label table as csv, jsonl, parquet, an ImageFolder tree, a COCO-style classification JSON
    or a Hugging Face ``imagefolder`` (images plus ``metadata.jsonl``).

    ``link`` makes the image folders out of symbolic links instead of copies (falling back to copies, with
    a note, where the filesystem refuses links). ``history`` also writes every label event (see
    :func:`history_table`) to :func:`history_path`. Nothing is written outside ``out`` (a tree export) or
    the folder of ``out`` (a file export). An existing ``out`` is refused unless ``overwrite``; the
    project's own files always are. Everything is written under a temporary name and renamed into place.

    Returns ``format``, ``out``, ``rows``; tree exports add ``linked``, ``copied``, ``link_refused`` and
    ``notes``; ``history`` adds ``history`` (the path) and ``events``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out).expanduser().resolve()
    refuse_project_files(project, out)
    _refuse_existing(out, overwrite)
    if history:
        refuse_project_files(project, history_path(fmt, out))
        if fmt not in TREE_FORMATS:
            _refuse_existing(history_path(fmt, out), overwrite)
    table = label_table(project)
    if labeled_only or fmt in ("imagefolder", "coco", "hf", "fiftyone"):
        table = table[table["label"].notna()]
    result: dict = {"format": fmt, "out": str(out), "rows": int(len(table))}
    if fmt in TREE_FORMATS:
        return {**result, **_export_tree(project, fmt, table, out, link, history)}
    if fmt == "coco":
        _export_coco(project, table, out)
    elif fmt == "labelstudio":  # annotations + the newest round's suggestions as predictions
        from labeling.data import export_labelstudio

        out.parent.mkdir(parents=True, exist_ok=True)
        export_labelstudio.write(table, out, _partial(out))
        with project.db.session() as con:
            result["label_config"] = export_labelstudio.label_config([c.name for c in labels_q.classes(con)])
    else:
        _write_table(table, out, fmt)
    if history:
        events = history_table(project)
        where = history_path(fmt, out)
        _write_table(events, where, where.suffix.lstrip("."))
        result.update(history=str(where), events=int(len(events)))
    return result
