"""Label files other tools leave behind: Label Studio (JSON, JSON_MIN, CSV), CVAT for images 1.1 (XML
tags) and FiftyOne (``FiftyOneImageClassificationDataset`` folders and CSV with ``filepath`` and
``<field>.label``). CVAT's ImageNet export and FiftyOne's ``ImageClassificationDirectoryTree`` are class
folders, read as ``imagefolder``.

A file is recognised by its content, not by its name alone (:func:`sniff`), and one that looks like a
known format but does not parse is refused with the reason, never read as another format. Rows come out
as :func:`labeling.data.formats.read_labels` gives them: ``file_name``, ``label`` and ``where``, plus
``annotator`` and ``created_at`` when the file has them.
"""
from __future__ import annotations

import csv
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from labeling.data.scan import IMAGE_EXTENSIONS

FOREIGN_FORMATS = ("labelstudio", "labelstudio-csv", "cvat", "fiftyone", "fiftyone-csv")
LS_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement"})
"""Columns of a Label Studio JSON_MIN / CSV row that are not the task's data or a choice."""
LS_IMAGE_KEYS = ("image", "img", "image_url", "url")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


class ForeignFormatError(ValueError):
    """A file that looks like a known tool's export but cannot be read as one (the message says why)."""


# ---- recognising a file by its content -----------------------------------------------------------------
def sniff(path: Path) -> str | None:
    """The foreign format ``path`` holds, by its content; None when it is none of them."""
    if path.is_dir():  # a labels.json makes a folder FiftyOne's, never an ImageFolder tree of a class "data"
        return "fiftyone" if (path / "labels.json").is_file() else None
    suffix = path.suffix.lower()
    if suffix == ".xml":
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
        return "cvat" if "<annotations" in head else None
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","), [])
        if "filepath" in header:
            return "fiftyone-csv"
        if any(k in header for k in LS_IMAGE_KEYS) and {"annotation_id", "annotator"} & set(header):
            return "labelstudio-csv"
        return None
    if suffix == ".json":
        doc = _json(path)
        if isinstance(doc, dict) and "labels" in doc and ("classes" in doc or path.name == "labels.json"):
            return "fiftyone"
        if isinstance(doc, list) and doc and all(isinstance(t, dict) for t in doc[:20]):
            first = doc[0]
            if "data" in first and ("annotations" in first or "predictions" in first):
                return "labelstudio"
            if any(k in first for k in LS_IMAGE_KEYS) and ({"annotation_id", "annotator"} & set(first)):
                return "labelstudio"
    return None


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForeignFormatError(f"{path.name}: not valid JSON ({exc})") from None


def read_foreign(path: Path, fmt: str) -> tuple[list[dict], list[str], Path]:
    """``(rows, problems, base)`` of a foreign label file (see the module's docstring)."""
    readers = {"labelstudio": _read_ls_json, "labelstudio-csv": _read_ls_csv, "cvat": _read_cvat,
               "fiftyone": _read_fiftyone, "fiftyone-csv": _read_fiftyone_csv}
    return readers[fmt](path)


# ---- paths as other tools write them ----------------------------------------------------------------------
def local_path(value: object) -> str | None:
    """The file a tool's image reference names, as a path to match: Label Studio's
    ``/data/local-files/?d=images/a.png`` gives ``images/a.png``, its uploads
    ``/data/upload/3/8f2a1c3e-a.png`` give ``a.png`` (the upload prefix dropped), a URL its path, and an
    absolute path from another machine stays whole (matched by its file name when it leads nowhere)."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.path.endswith("/data/local-files/") or parts.path.endswith("/data/local-files"):
        found = parse_qs(parts.query).get("d")
        return unquote(found[0]) if found else None
    if "/data/upload/" in parts.path:
        name = unquote(parts.path.rsplit("/", 1)[-1])
        return _UPLOAD_PREFIX.sub("", name)
    if parts.scheme in ("http", "https", "s3", "gs", "azure-blob", "file"):
        return unquote(parts.path.lstrip("/")) or None
    return text


def _choice(value: object) -> tuple[str | None, str | None]:
    """(the one class a Label Studio choice value names, a problem): ``"cat"``, ``["cat"]`` or
    ``{"choices": ["cat"]}``; several choices are a problem (one class per image here)."""
    if isinstance(value, dict):
        value = value.get("choices", value.get("labels"))
    if isinstance(value, str):
        try:  # a CSV cell holds JSON for multiple choices
            value = json.loads(value) if value.strip().startswith(("{", "[")) else value
        except json.JSONDecodeError:
            pass
        if isinstance(value, dict):
            value = value.get("choices")
    if isinstance(value, list):
        if len(value) > 1:
            return None, f"{len(value)} choices ({', '.join(map(str, value))}); one class per image here"
        value = value[0] if value else None
    return (str(value) if value is not None and str(value).strip() else None), None


def read_tree(folder: Path) -> tuple[list[dict], list[str]]:
    """Rows of an ImageFolder tree: ``<class>/.../<image>``; hidden files and folders are skipped. A
    ``classes.json`` that Quorum's export writes beside the class folders names each folder's class."""
    rows: list[dict] = []
    problems: list[str] = []
    class_of = {}
    if (folder / "classes.json").is_file():
        doc = _json(folder / "classes.json")
        class_of = doc.get("folders", {}) if isinstance(doc, dict) else {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = (Path(dirpath) / name).relative_to(folder)
            if len(rel.parts) < 2:
                problems.append(f"{rel.as_posix()}: not inside a class folder, ignored")
                continue
            rows.append({"item_id": None, "uri": None, "file_name": rel.as_posix(),
                         "label": str(class_of.get(rel.parts[0], rel.parts[0])), "where": rel.as_posix()})
    return rows, problems


# ---- Label Studio ------------------------------------------------------------------------------------------
def _image_of(data: dict) -> str | None:
    for key in LS_IMAGE_KEYS:
        if data.get(key):
            return local_path(data[key])
    found = [v for v in data.values() if isinstance(v, str) and re.search(r"\.(png|jpe?g|webp|bmp|gif|tiff?)\b", v, re.I)]
    return local_path(found[0]) if found else None


def _ls_results(results: list, where: str, problems: list[str]) -> str | None:
    labels = []
    for res in results or []:
        if isinstance(res, dict) and res.get("type", "choices") == "choices":
            label, problem = _choice(res.get("value"))
            if problem:
                problems.append(f"{where}: {problem}, skipped")
                return None
            if label is not None:
                labels.append(label)
    if len(set(labels)) > 1:
        problems.append(f"{where}: {len(labels)} choices ({', '.join(labels)}); one class per image here, skipped")
        return None
    return labels[0] if labels else None


def _read_ls_json(path: Path) -> tuple[list[dict], list[str], Path]:
    doc = _json(path)
    if not isinstance(doc, list):
        raise ForeignFormatError(f"{path.name}: a Label Studio export is a list of tasks")
    if doc and "data" not in doc[0]:
        return _ls_min_rows(doc, path)
    rows, problems = [], []
    for k, task in enumerate(doc, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ForeignFormatError(f"{path.name}: task {k} has no 'data' object: not a Label Studio export")
        where = f"task {task.get('id', k)}"
        image = _image_of(task["data"])
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            label = _ls_results(ann.get("result"), where, problems)
            if label is not None:
                rows.append({"item_id": None, "uri": None, "file_name": image, "label": label, "where": where,
                             "annotator": _annotator(ann.get("completed_by")), "created_at": ann.get("created_at")})
    return rows, problems, path.parent


def _annotator(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("email") or value.get("username") or value.get("id")
    return None if value is None else str(value)


def _ls_min_rows(records: list, path: Path) -> tuple[list[dict], list[str], Path]:
    """JSON_MIN and CSV: one record per annotated task, the choice under its control's name."""
    rows, problems = [], []
    for k, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise ForeignFormatError(f"{path.name}: record {k} is not an object")
        where = f"task {rec.get('id', k)}"
        image = _image_of(rec)
        choices = [key for key in rec if key not in LS_META and key not in LS_IMAGE_KEYS]
        if len(choices) != 1:
            problems.append(f"{where}: cannot tell the choice column among {sorted(choices)}, skipped")
            continue
        label, problem = _choice(rec[choices[0]])
        if problem:
            problems.append(f"{where}: {problem}, skipped")
        elif label is not None:
            rows.append({"item_id": None, "uri": None, "file_name": image, "label": label, "where": where,
                         "annotator": _annotator(rec.get("annotator")), "created_at": rec.get("created_at")})
    return rows, problems, path.parent


def _read_ls_csv(path: Path) -> tuple[list[dict], list[str], Path]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        records = list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    return _ls_min_rows([{k: v for k, v in r.items() if v not in (None, "")} for r in records], path)


# ---- CVAT for images 1.1 ---------------------------------------------------------------------------------
def _read_cvat(path: Path) -> tuple[list[dict], list[str], Path]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ForeignFormatError(f"{path.name}: XML with a DOCTYPE or entities is not read")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ForeignFormatError(f"{path.name}: not a CVAT XML file ({exc})") from None
    if root.tag != "annotations":
        raise ForeignFormatError(f"{path.name}: a CVAT export's root is <annotations>, not <{root.tag}>")
    rows, problems = [], []
    for k, image in enumerate(root.iter("image"), start=1):
        where = f"image {image.get('id', k)}"
        tags = [t.get("label") for t in image.findall("tag") if t.get("label")]
        if len(set(tags)) > 1:
            problems.append(f"{where}: {len(tags)} tags ({', '.join(tags)}); one class per image here, skipped")
        elif tags:
            rows.append({"item_id": None, "uri": None, "file_name": image.get("name"), "label": tags[0],
                         "where": where, "annotator": None, "created_at": None})
    return rows, problems, path.parent


# ---- FiftyOne --------------------------------------------------------------------------------------------
def _read_fiftyone(path: Path) -> tuple[list[dict], list[str], Path]:
    folder = path if path.is_dir() else path.parent
    labels_file = folder / "labels.json" if path.is_dir() else path
    doc = _json(labels_file)
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise ForeignFormatError(f"{labels_file.name}: a FiftyOne labels.json has a 'labels' object")
    classes = doc.get("classes")
    data = folder / "data"
    if not data.is_dir():
        raise ForeignFormatError(f"{folder.name}: a FiftyOne dataset keeps its images in data/ beside labels.json")
    files = {p.stem: p for p in data.iterdir() if p.is_file()}
    rows, problems = [], []
    for uuid, target in doc["labels"].items():
        where = f"sample {uuid}"
        if isinstance(target, dict):
            target = target.get("label")
        if target is None:
            continue
        if isinstance(target, int) and not isinstance(target, bool):
            if not isinstance(classes, list) or not 0 <= target < len(classes):
                problems.append(f"{where}: class index {target} without a class list, skipped")
                continue
            target = classes[target]
        image = files.get(uuid)
        if image is None:
            problems.append(f"{where}: no image named {uuid}.* in data/, skipped")
            continue
        rows.append({"item_id": None, "uri": None, "file_name": image.relative_to(folder).as_posix(),
                     "label": str(target), "where": where, "annotator": None, "created_at": None})
    return rows, problems, folder


def _read_fiftyone_csv(path: Path) -> tuple[list[dict], list[str], Path]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = reader.fieldnames or []
        fields = [h for h in header if h.endswith(".label")]
        if not fields:
            raise ForeignFormatError(f"{path.name}: a FiftyOne CSV has a '<field>.label' column beside 'filepath'")
        field = "ground_truth.label" if "ground_truth.label" in fields else fields[0]
        rows = []
        for k, rec in enumerate(reader, start=2):
            label = (rec.get(field) or "").strip()
            if label:
                rows.append({"item_id": None, "uri": None, "file_name": local_path(rec.get("filepath")),
                             "label": label, "where": f"line {k}", "annotator": None, "created_at": None})
    return rows, [], path.parent
