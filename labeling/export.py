"""Export the current labels (with provenance and the newest round's pseudo-labels)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd

from labeling.project import Project
from labeling.rounds import latest_predictions
from storage import items as items_q
from storage import labels as labels_q

FORMATS = ("csv", "jsonl", "parquet", "imagefolder", "coco", "hf")
PROVENANCE = ("annotator", "source", "created_at", "model_round", "n_votes", "n_agree", "adjudicated_by")


class ExportError(ValueError):
    """The export could not be written where asked."""


def safe_name(name: str) -> str:
    """A folder name for a class: no separators, no '..', nothing hidden."""
    cleaned = re.sub(r"[^\w\-. ]+", "_", name, flags=re.UNICODE).strip(" .")
    return cleaned or "_"


def label_table(project: Project) -> pd.DataFrame:
    """One row per readable item: its current label and provenance, and the newest pseudo-label."""
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
        names = dict(labels_q.classes(con))
        state = {int(r[0]): r for r in labels_q.current_provenance(con)}
    got = latest_predictions(project)
    pseudo, conf, round_id = {}, {}, None
    if got is not None:
        rnd, p = got
        round_id = rnd["id"]
        for i, c, f in zip(p.item_ids.tolist(), p.pseudo.tolist(), p.confidence.tolist()):
            pseudo[i] = names.get(c)
            conf[i] = f
    rows = []
    for item_id, uri in zip(ids.tolist(), uris):
        s = state.get(item_id)
        label = names.get(s[1]) if s is not None and s[2] == "label" else None
        rows.append({"item_id": item_id, "uri": uri, "label": label,
                     "status": "labeled" if label else ("skipped" if s is not None else "unlabeled"),
                     "annotator": s[3] if s else None, "source": s[4] if s else None,
                     "created_at": str(s[8]) if s else None, "model_round": s[9] if s else None,
                     "n_votes": s[6] if s else None, "n_agree": s[7] if s else None,
                     "adjudicated_by": s[3] if s and s[4] == "adjudication" else None,
                     "event_id": s[5] if s else None, "pseudo_label": pseudo.get(item_id),
                     "confidence": conf.get(item_id), "round_id": round_id})
    frame = pd.DataFrame(rows)
    for col in ("model_round", "n_votes", "n_agree", "event_id", "round_id"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")  # whole numbers, with gaps
    return frame


def _place(src: Path, dest: Path, link: bool) -> bool:
    """Copy, or link when asked; returns False when a link was asked but the filesystem refused (copied)."""
    if link:
        try:
            dest.symlink_to(src.resolve())
            return True
        except OSError:
            pass
    shutil.copy2(src, dest)
    return not link


def _new_folder(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)


def _plain_value(v):
    """A JSON-ready value: missing values as None, numpy scalars as Python numbers."""
    if v is None or (not isinstance(v, (list, dict, str)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _records(table) -> list[dict]:
    return [{k: _plain_value(v) for k, v in rec.items()} for rec in table.to_dict(orient="records")]


def export(project: Project, fmt: str, out: str | Path, *, labeled_only: bool = False, link: bool = False) -> dict:
    """Write the label table as csv, jsonl, parquet, an ImageFolder tree, a COCO-style classification JSON
    or a Hugging Face ``imagefolder`` (images plus ``metadata.jsonl``). ``link`` makes the image folders
    out of symbolic links instead of copies (falling back to copies where links are refused)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out).expanduser().resolve()
    table = label_table(project)
    if labeled_only or fmt in ("imagefolder", "coco", "hf"):
        table = table[table["label"].notna()]
    copied = 0
    if fmt == "imagefolder":
        _new_folder(out)
        for row in table.itertuples():
            folder = (out / safe_name(row.label)).resolve()
            if not folder.is_relative_to(out):
                raise ExportError(f"class name {row.label!r} would leave {out}")
            folder.mkdir(exist_ok=True)
            src = project.resolve_uri(row.uri)
            copied += not _place(src, folder / f"{row.item_id}_{safe_name(src.name)}", link)
        return {"format": fmt, "out": str(out), "rows": int(len(table)), "link_refused": copied if link else 0}
    if fmt == "hf":
        _new_folder(out)
        with open(out / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for rec in _records(table):
                src = project.resolve_uri(rec["uri"])
                name = f"{rec['item_id']}_{safe_name(src.name)}"
                copied += not _place(src, out / name, link)
                fh.write(json.dumps({"file_name": name, **{k: v for k, v in rec.items() if k != "status"}},
                                    ensure_ascii=False, default=str) + "\n")
        return {"format": fmt, "out": str(out), "rows": int(len(table)), "link_refused": copied if link else 0}
    if fmt == "coco":
        with project.db.session() as con:
            sizes = items_q.items_by_ids(con, table["item_id"].tolist())
        categories = sorted(set(table["label"]))
        cat_id = {c: k for k, c in enumerate(categories, start=1)}
        doc = {"info": {"description": f"Quorum labels of {project.root.name}", "version": "1.0",
                        "date_created": pd.Timestamp.now(tz="UTC").isoformat()},
               "categories": [{"id": cat_id[c], "name": c} for c in categories],
               "images": [{"id": int(r["item_id"]), "file_name": r["uri"], "uri": r["uri"],
                           "width": sizes[int(r["item_id"])]["width"], "height": sizes[int(r["item_id"])]["height"]}
                          for r in _records(table)],
               "annotations": [{"id": k, "image_id": int(r["item_id"]), "category_id": cat_id[r["label"]],
                                **{c: r[c] for c in PROVENANCE}}
                               for k, r in enumerate(_records(table), start=1)]}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, out)
        return {"format": fmt, "out": str(out), "rows": int(len(table))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "csv":
        table.to_csv(tmp, index=False)
    elif fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in _records(table):
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    else:
        table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return {"format": fmt, "out": str(out), "rows": int(len(table))}
