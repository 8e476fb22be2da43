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

FORMATS = ("csv", "jsonl", "parquet", "imagefolder")


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
        state = {int(r[0]): r for r in labels_q.current_state(con)}
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
                     "event_id": s[5] if s else None, "pseudo_label": pseudo.get(item_id),
                     "confidence": conf.get(item_id), "round_id": round_id})
    return pd.DataFrame(rows)


def export(project: Project, fmt: str, out: str | Path, *, labeled_only: bool = False) -> dict:
    """Write the label table as csv, jsonl, parquet, or an ImageFolder tree (copies)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out).expanduser().resolve()
    table = label_table(project)
    if labeled_only or fmt == "imagefolder":
        table = table[table["label"].notna()]
    if fmt == "imagefolder":
        if out.exists() and any(out.iterdir()):
            raise ExportError(f"{out} exists and is not empty; choose a new folder")
        out.mkdir(parents=True, exist_ok=True)
        for row in table.itertuples():
            folder = (out / safe_name(row.label)).resolve()
            if not folder.is_relative_to(out):
                raise ExportError(f"class name {row.label!r} would leave {out}")
            folder.mkdir(exist_ok=True)
            src = project.resolve_uri(row.uri)
            shutil.copy2(src, folder / f"{row.item_id}_{safe_name(src.name)}")
        return {"format": fmt, "out": str(out), "rows": int(len(table))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "csv":
        table.to_csv(tmp, index=False)
    elif fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in table.to_dict(orient="records"):
                fh.write(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()},
                                    ensure_ascii=False, default=str) + "\n")
    else:
        table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return {"format": fmt, "out": str(out), "rows": int(len(table))}
