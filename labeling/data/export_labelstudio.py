"""The Label Studio export: the tasks list Label Studio imports, so a team can hand work back and forth.

Each item is a task whose ``data.image`` is ``/data/local-files/?d=<path in the project>`` (serve the
project folder as Label Studio's local-files document root). A human label is an annotation (a single
``choices`` result, ``completed_by`` naming the annotator, ``created_at`` in UTC); the newest round's
suggestion is a prediction (``model_version`` ``quorum-round-<id>``, ``score`` its confidence), so Label
Studio shows it as a pre-annotation. ``import-labels`` reads the annotations back (annotators and times
kept) and ``import-predictions`` the predictions.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

FROM_NAME, TO_NAME = "choice", "image"


def label_config(classes: list[str]) -> str:
    """The labeling config a Label Studio project needs to show these tasks (one choice per image)."""
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"<Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View><Image name="{TO_NAME}" value="$image"/>'
            f'<Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single">{choices}</Choices></View>')


def _result(label: str) -> list[dict]:
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}]


def _time(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat().replace("+00:00", "Z")


def tasks(table: pd.DataFrame) -> list[dict]:
    """One task per row of the label table (``labeling.data.export.label_table``)."""
    out = []
    for row in table.to_dict("records"):
        task = {"id": int(row["item_id"]), "data": {"image": f"/data/local-files/?d={quote(str(row['uri']))}"},
                "meta": {"quorum_item_id": int(row["item_id"])}, "annotations": [], "predictions": []}
        if isinstance(row.get("label"), str):
            task["annotations"].append({"result": _result(row["label"]), "was_cancelled": False, "ground_truth": False,
                                        "completed_by": {"username": row["annotator"]},
                                        "created_at": _time(row.get("created_at")),
                                        "quorum_source": row.get("source")})
        if isinstance(row.get("pseudo_label"), str):
            confidence = row.get("confidence")
            task["predictions"].append({"model_version": f"quorum-round-{int(row['round_id'])}",
                                        "score": None if pd.isna(confidence) else round(float(confidence), 6),
                                        "result": _result(row["pseudo_label"])})
        out.append(task)
    return out


def write(table: pd.DataFrame, out: Path, partial: Path) -> None:
    """Write the tasks to ``partial`` and rename it onto ``out``."""
    try:
        partial.write_text(json.dumps(tasks(table), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
