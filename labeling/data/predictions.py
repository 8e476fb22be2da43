"""Predictions of a person's own model, imported as suggestions (never as human labels).

Accepted files (the format told by the content, then the name):

- **a table** (CSV/TSV, JSONL, Parquet) naming each image as label files do (``item_id``, ``uri``,
  ``file_name``/``filepath``/``path``/``image``), with either
  - a predicted class (``label``, ``prediction``, ``predicted_label``, ``class``) and an optional
    ``score`` (``confidence``, ``probability``); several rows of one image add up its classes (top-k
    lists), and the mass a row leaves (1 - score) is spread evenly over the model's other classes; or
  - one probability column per class (``prob_cat``, ``p_cat``, ``proba_cat``, ``probability_cat``,
    ``score_cat``, or plain class names when no label column is present), or one column holding a
    ``{class: probability}`` object (``probabilities``, ``probs``, ``scores``); rows are normalised;
- **Label Studio predictions**: the tasks list Label Studio imports and exports, each task's
  ``predictions[].result[]`` choices with their ``score``.

The imported model's distribution over its classes is stored as ``.quorum/models/<name>.npz`` and
joins the next rounds as an ensemble member (:mod:`labeling.model.external`). Classes the model names
that the project lacks are created (as ``import --classes`` would).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from labeling.data.foreign import _choice, _image_of, sniff
from labeling.data.matching import RowMatcher
from labeling.data.formats import (LabelFileError, PATH_ALIASES, _cell, _line_of, _pick, _read_table,
                                   guess_format)
from labeling.project import Project
from storage import external_models as models_q
from storage import labels as labels_q

PREDICTION_FORMATS = ("csv", "jsonl", "parquet", "labelstudio")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LABEL_COLUMNS = ("label", "prediction", "predicted_label", "predicted", "pred", "class", "category")
SCORE_COLUMNS = ("score", "confidence", "probability", "prob")
DICT_COLUMNS = ("probabilities", "probs", "scores", "probas")
PROB_PREFIXES = ("probability_", "proba_", "prob_", "score_", "p_")
ID_COLUMNS = ("item_id", "uri", *PATH_ALIASES, "filepath", "id", "width", "height", "model", "model_version")


class PredictionFileError(ValueError):
    """A predictions file that cannot be used (the message says why; nothing was stored)."""


def check_model_name(name: str) -> str:
    """A model name as stored: letters, digits, ``-``, ``_`` and ``.``, at most 64, not starting with a dot."""
    name = str(name).strip()
    if name == "zero-shot":
        raise PredictionFileError("model name 'zero-shot' is the CLIP backbone's own member; choose another")
    if not NAME_RE.match(name):
        raise PredictionFileError(f"model name {name[:40]!r}: use letters, digits, '-', '_' and '.' "
                                  "(at most 64, starting with a letter or digit)")
    return name


def default_name(path: Path) -> str:
    """A model name from a file's name: ``resnet50 preds.csv`` gives ``resnet50-preds``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-._") or "model"
    return stem[:64]


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _wide_columns(header: list[str], has_label: bool) -> dict[str, str]:
    """Column as written -> class name, for a table with one probability column per class."""
    out = {}
    for col in header:
        low = str(col).strip().lower()
        prefix = next((p for p in PROB_PREFIXES if low.startswith(p) and len(low) > len(p)), None)
        if prefix is not None:
            out[col] = str(col).strip()[len(prefix):]
        elif not has_label and low not in ID_COLUMNS and low not in SCORE_COLUMNS and low not in DICT_COLUMNS:
            out[col] = str(col).strip()
    return out


def _table(path: Path, fmt: str) -> tuple[list[dict], list[str]]:
    header, records, problems = _read_table(path, fmt)
    names = {}
    for col in header:
        names.setdefault(str(col).strip().lower(), col)
    id_col, uri_col = names.get("item_id"), names.get("uri")
    file_col = _pick(names, (*PATH_ALIASES, "filepath"))
    if id_col is None and uri_col is None and file_col is None:
        raise PredictionFileError(f"{path.name}: needs a column naming the image ('file_name', 'filepath', 'path', "
                                  f"'uri' or 'item_id'); found {sorted(map(str, header))}")
    label_col, score_col = _pick(names, LABEL_COLUMNS), _pick(names, SCORE_COLUMNS)
    dict_col = _pick(names, DICT_COLUMNS)
    wide = _wide_columns(header, label_col is not None or dict_col is not None)
    plain = [col for col, cls in wide.items() if str(col).strip() == cls]
    if plain and records and any(_number(records[0][1].get(col)) is None for col in plain):
        wide = {}  # columns named like classes must hold numbers: these are something else
    if label_col is None and dict_col is None and not wide:
        raise PredictionFileError(f"{path.name}: needs a predicted class ('label', 'prediction', 'predicted_label') "
                                  "or one probability column per class ('prob_<class>'); found "
                                  f"{sorted(map(str, header))}")
    rows = []
    for where, rec in records:
        row = {"item_id": _cell(rec, id_col), "uri": _cell(rec, uri_col), "file_name": _cell(rec, file_col),
               "where": where}
        if wide and not (dict_col and isinstance(rec.get(dict_col), (dict, str)) and rec.get(dict_col)):
            probs = {cls: _number(rec.get(col)) for col, cls in wide.items()}
            bad = [cls for cls, p in probs.items() if p is None or p < 0]
            if bad:
                problems.append(f"{where}: the probability of {bad[0]!r} is not a number >= 0, row ignored")
                continue
            row["probs"], row["kind"] = probs, "wide"
        elif dict_col is not None:
            value = rec.get(dict_col)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = None
            if not isinstance(value, dict) or any(_number(p) is None or _number(p) < 0 for p in value.values()):
                problems.append(f"{where}: {dict_col!r} is not an object of class: probability, row ignored")
                continue
            row["probs"], row["kind"] = {str(k): _number(p) for k, p in value.items()}, "wide"
        else:
            label = _cell(rec, label_col)
            if label is None:
                continue  # an image the model left without a prediction
            score = 1.0 if score_col is None or _cell(rec, score_col) is None else _number(rec.get(score_col))
            if score is None or not 0 <= score <= 1:
                problems.append(f"{where}: the score {rec.get(score_col)!r} is not a number in [0, 1], row ignored")
                continue
            row["probs"], row["kind"] = {label: score}, "long"
        rows.append(row)
    return rows, problems


def _label_studio(path: Path, model: str | None) -> tuple[list[dict], list[str], str | None]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictionFileError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(doc, list):
        raise PredictionFileError(f"{path.name}: Label Studio predictions are a list of tasks")
    rows, problems, versions = [], [], []
    for k, task in enumerate(doc, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise PredictionFileError(f"{path.name}: task {k} has no 'data' object: not a Label Studio file")
        where = f"task {task.get('id', k)}"
        preds = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
        if model is not None:
            preds = [p for p in preds if str(p.get("model_version", "")) == model] or preds
        if not preds:
            continue
        pred = preds[0]
        versions.append(pred.get("model_version"))
        probs: dict[str, float] = {}
        for res in pred.get("result") or []:
            if not isinstance(res, dict) or res.get("type", "choices") != "choices":
                continue
            label, problem = _choice(res.get("value"))
            score = _number(res.get("score", pred.get("score", 1.0)))
            if problem or label is None or score is None or not 0 <= score <= 1:
                problems.append(f"{where}: {problem or 'no usable choice and score'}, skipped")
                continue
            probs[label] = probs.get(label, 0.0) + score
        if probs:
            rows.append({"item_id": None, "uri": None, "file_name": _image_of(task["data"]), "where": where,
                         "probs": probs, "kind": "long"})
    named = next((str(v) for v in versions if v), None)
    return rows, problems, named


def read_predictions(path: str | Path, fmt: str = "auto") -> tuple[list[dict], list[str], Path, str | None]:
    """``(rows, problems, base, model name the file gives)``: each row names its image as label rows do
    and holds ``probs`` ({class: score}) and ``kind`` (``long``: one class of a top-k list; ``wide``: a
    whole distribution). Raises :class:`PredictionFileError` for a file that cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PredictionFileError(f"{path}: no such file")
    try:
        if fmt == "auto":
            fmt = "labelstudio" if sniff(path) == "labelstudio" else guess_format(path)
        if fmt == "labelstudio":
            rows, problems, named = _label_studio(path, None)
            return rows, problems, path.parent, named
        if fmt not in ("csv", "jsonl", "parquet"):
            raise PredictionFileError(f"{path.name}: predictions are read from {', '.join(PREDICTION_FORMATS)} files")
        rows, problems = _table(path, fmt)
    except LabelFileError as exc:
        raise PredictionFileError(str(exc)) from None
    return rows, sorted(problems, key=_line_of), path.parent, None


def _distributions(rows: list[dict], matcher: RowMatcher, problems: list[str]) -> dict[int, dict[str, float]]:
    """item id -> {class: score}: a top-k list's rows added up, a second whole distribution a problem."""
    out: dict[int, dict[str, float]] = {}
    wide_seen: dict[int, str] = {}
    for row in rows:
        item, named, problem = matcher.match(row, row["where"])
        if problem is not None:
            problems.append(problem)
            continue
        for cls in row["probs"]:
            bad = labels_q.name_problem(str(cls).strip())
            if bad is not None:
                raise PredictionFileError(f"{row['where']}: {bad}; nothing imported")
        if row["kind"] == "wide":
            if item in out:
                problems.append(f"{row['where']}: {named!r} repeats {wide_seen.get(item, 'an earlier row')}, ignored")
                continue
            wide_seen[item] = row["where"]
            out[item] = {str(c).strip(): float(p) for c, p in row["probs"].items()}
        else:
            got = out.setdefault(item, {})
            for c, p in row["probs"].items():
                got[str(c).strip()] = got.get(str(c).strip(), 0.0) + float(p)
    return out


def _matrix(dists: dict[int, dict[str, float]], kinds_long: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(item ids, class names in first-seen order, (n, C) rows summing to 1)."""
    classes: dict[str, int] = {}
    for d in dists.values():
        for c in d:
            classes.setdefault(c, len(classes))
    ids = np.fromiter(dists, dtype=np.int64, count=len(dists))
    probs = np.zeros((len(ids), len(classes)), dtype=np.float64)
    for r, d in enumerate(dists.values()):
        for c, p in d.items():
            probs[r, classes[c]] = p
    total = probs.sum(axis=1, keepdims=True)
    if kinds_long and len(classes) > 1:
        # a top-k list leaves 1 - its scores for the model's other classes: spread it evenly over them
        rest = np.clip(1.0 - total, 0.0, None)
        others = (probs == 0).sum(axis=1, keepdims=True)
        probs = np.where(probs == 0, rest / np.maximum(others, 1), probs)
        total = probs.sum(axis=1, keepdims=True)
    keep = total[:, 0] > 0
    probs = probs[keep] / total[keep]
    return ids[keep], list(classes), probs.astype(np.float32)


def models_dir(project: Project) -> Path:
    return project.data_dir / "models"


def import_predictions(project: Project, path: str | Path, *, name: str | None = None, fmt: str = "auto",
                       user: str = "import") -> dict:
    """Store a model's predictions for the next rounds; no label is written.

    Returns ``model``, ``items`` (images with a prediction), ``rows`` (rows read), ``classes`` (the model's),
    ``new_classes`` (created in the project) and ``problems`` (one line each).
    """
    path = Path(path).expanduser()
    rows, problems, base, named = read_predictions(path, fmt)
    model = check_model_name(name or named or default_name(path))
    dists = _distributions(rows, RowMatcher(project, base), problems)
    if not dists:
        first = f" ({problems[0]})" if problems else ""
        raise PredictionFileError(f"{path.name}: no row names an image of the project{first}; nothing imported")
    ids, class_names, probs = _matrix(dists, any(r["kind"] == "long" for r in rows))
    with project.db.session() as con:
        before = {c.name for c in labels_q.classes(con)}
        by_name = labels_q.ensure_classes(con, class_names, user=user)
    class_ids = np.array([by_name[c] for c in class_names], dtype=np.int64)
    folder = models_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model}.npz"
    tmp = folder / f".{model}.partial-{os.getpid()}.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, item_ids=ids, class_ids=class_ids, probs=probs)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    with project.db.session() as con:
        models_q.record(con, name=model, file=target.name, n_items=len(ids), n_classes=len(class_ids),
                        source=path.name, user=user)
    return {"model": model, "items": int(len(ids)), "rows": len(rows), "classes": class_names,
            "new_classes": [c for c in class_names if c not in before], "problems": sorted(problems, key=_line_of)}


def list_models(project: Project) -> list[dict]:
    with project.db.session() as con:
        return models_q.list_models(con)


def set_model_weight(project: Project, name: str, weight: str | float | None) -> dict:
    """``weight``: ``"auto"``/None (learned each round), ``"off"`` (left out) or a share in [0, 1]."""
    with project.db.session() as con:
        if models_q.get(con, name) is None:
            raise LookupError(f"no imported model named {name!r}")
        if weight in (None, "auto"):
            models_q.set_weight(con, name, weight=None, enabled=True)
        elif weight == "off":
            models_q.set_weight(con, name, weight=None, enabled=False)
        else:
            share = _number(weight)
            if share is None or not 0 <= share <= 1:
                raise ValueError(f"a model's weight is auto, off or a share in [0, 1], not {weight!r}")
            models_q.set_weight(con, name, weight=share, enabled=True)
        return models_q.get(con, name)


def describe_weight(model: dict) -> str:
    """``auto`` / ``off`` / ``0.30``: how a model joins the rounds, as the CLI and the Model page say it."""
    if not model["enabled"]:
        return "off"
    return "auto" if model["weight"] is None else f"{model['weight']:.2f}"



def models_table(project: Project) -> list[dict]:
    """Each imported model with its setting and what the newest round made of it: its share of the mean
    and its accuracy on the human labels it was checked on."""
    from storage import rounds as rounds_q

    with project.db.session() as con:
        models = models_q.list_models(con)
        latest = rounds_q.latest_finished(con)
    in_round = {m["model"]: m for m in (latest or {}).get("metrics", {}).get("models", [])}
    out = []
    for m in models:
        got = in_round.get(m["name"], {})
        out.append({"model": m["name"], "items": m["n_items"], "classes": m["n_classes"], "source": m["source"],
                    "imported_by": m["imported_by"], "imported_at": m["imported_at"], "weight": describe_weight(m),
                    "share": got.get("share"), "accuracy": got.get("accuracy"), "checked_on": got.get("checked_on"),
                    "round_id": latest["id"] if latest and got else None})
    return out


def save_upload(project: Project, file_name: str, data: bytes) -> Path:
    """An uploaded predictions file saved under ``.quorum/models/sources/`` with a plain name."""
    from labeling.data.upload import plain_name

    folder = models_dir(project) / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / plain_name(file_name)
    target.write_bytes(data)
    return target
